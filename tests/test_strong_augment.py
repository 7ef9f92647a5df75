"""Batched strong augmentation of uint8 image batches (IEG's strong view for CIFAR-like tasks)."""

from __future__ import annotations

import pytest
import torch

from benchsuite.toolkit.augment import random_crop_flip
from benchsuite.toolkit.strong_augment import FILL, autoaugment, cifar_strong_view, draw_autoaugment


def images(n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_shape_dtype_device_preserved():
    x = images()
    y = cifar_strong_view(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == torch.uint8 and y.device == x.device
    assert torch.equal(x, images()), "the input batch must not be modified in place"


def test_deterministic_per_generator_seed_and_different_across_seeds():
    x = images()
    a = cifar_strong_view(x, torch.Generator().manual_seed(3))
    b = cifar_strong_view(x, torch.Generator().manual_seed(3))
    c = cifar_strong_view(x, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert (a != c).float().mean() > 0.5


def test_each_image_gets_its_own_augmentation():
    x = images(1).expand(48, -1, -1, -1).contiguous()  # one image, 48 times
    y = cifar_strong_view(x, torch.Generator().manual_seed(0))
    distinct = {bytes(img.flatten().tolist()) for img in y}
    assert len(distinct) == 48
    # and every view differs from the original (crop offset, flip, cutout)
    assert all(not torch.equal(img, x[0]) for img in y)


def test_grouped_autoaugment_equals_per_image_application():
    x = images(96, seed=1)
    plan = draw_autoaugment(96, torch.Generator().manual_seed(7))
    assert plan.apply.any(1).float().mean() > 0.3  # the plan does fire operations
    batched = autoaugment(x, plan)
    single = torch.cat([autoaugment(x[i : i + 1], plan[i : i + 1]) for i in range(96)])
    assert torch.equal(batched, single)
    changed = (batched != x).flatten(1).any(1)
    assert torch.equal(changed[~plan.apply.any(1)], torch.zeros_like(changed[~plan.apply.any(1)]))


def test_autoaugment_draws_cover_the_policy():
    plan = draw_autoaugment(20_000, torch.Generator().manual_seed(0))
    counts = torch.bincount(plan.policy, minlength=25)
    assert counts.min() > 600 and counts.max() < 1000  # 800 expected per sub-policy
    assert abs(plan.negate.float().mean().item() - 0.5) < 0.02


def test_padding_is_mid_grey():
    x = torch.zeros(64, 3, 8, 8, dtype=torch.uint8)
    out = random_crop_flip(x, torch.Generator().manual_seed(0), padding=4, fill=FILL)
    assert set(out.unique().tolist()) == {0, FILL}
    assert torch.equal(random_crop_flip(x, torch.Generator().manual_seed(0), padding=4), x)  # zeros by default


def test_rejects_float_batches_with_a_clear_message():
    with pytest.raises(ValueError, match="uint8 image batch"):
        cifar_strong_view(torch.rand(2, 3, 32, 32), torch.Generator())
