"""CIFAR networks: parameter counts from their definitions, plain-logit outputs, input layer."""

from __future__ import annotations

import pytest
import torch
import torchvision

from benchsuite.toolkit.models.normalize import Normalized
from benchsuite_plugins.cifar.models import build_cifar_model


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name, classes, expected",
    [
        ("resnet20", 10, 269_722),
        ("resnet32", 10, 464_154),
        ("resnet44", 10, 658_586),
        ("resnet56", 10, 853_018),
        ("resnet20", 100, 275_572),
        ("resnet32", 100, 470_004),
        ("resnet44", 100, 664_436),
        ("resnet56", 100, 858_868),
    ],
)
def test_resnet_option_a_parameter_counts(name, classes, expected):
    assert count(build_cifar_model(name, classes)) == expected


def test_resnet_option_b_adds_two_projections():
    # 1×1 convs 16→32 and 32→64 with their BN scale and shift
    extra = 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    assert count(build_cifar_model("resnet20", 10, "B")) == 269_722 + extra


def test_wrn28_10_as_ieg_defines_it():
    stem = 3 * 16 * 9
    total = stem
    for c_in, c_out in ((16, 160), (160, 320), (320, 640)):
        total += 2 * c_in + c_in * c_out * 9 + 2 * c_out + c_out * c_out * 9  # first block (shortcut has no weights)
        total += 3 * (2 * c_out + c_out * c_out * 9 + 2 * c_out + c_out * c_out * 9)
    total += 2 * 640 + 640 * 10 + 10  # final BN and classifier
    assert total == 36_220_634
    model = build_cifar_model("wrn28_10", 10)
    assert count(model) == total
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_googlenet_is_torchvisions_with_a_32x32_stem_and_plain_logits():
    imagenet = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1.meta["num_params"]  # no auxiliary heads
    expected = imagenet - (1024 * 1000 + 1000) + (1024 * 10 + 10) - 64 * 3 * 7 * 7 + 64 * 3 * 3 * 3
    model = build_cifar_model("googlenet", 10)
    assert count(model) == expected == 5_602_474
    model.train()
    out = model(torch.randn(4, 3, 32, 32))
    assert type(out) is torch.Tensor and out.shape == (4, 10)


def test_unknown_model_is_named():
    with pytest.raises(ValueError, match="unknown CIFAR model 'resnet18'; known: resnet20"):
        build_cifar_model("resnet18", 10)


def test_normalized_takes_uint8_or_unit_floats_and_channels_last_matches():
    torch.manual_seed(0)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    net = build_cifar_model("resnet20", 10).eval()
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    unit = x.float() / 255
    manual = net((unit - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    model = Normalized(net, mean, std).eval()
    torch.testing.assert_close(model(x), manual)
    torch.testing.assert_close(model(unit), manual)
    fast = Normalized(build_cifar_model("resnet20", 10), mean, std, channels_last=True).eval()
    fast.net.load_state_dict(net.state_dict())
    assert fast.net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast(x), manual, rtol=1e-4, atol=1e-4)
