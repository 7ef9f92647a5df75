"""Batched strong augmentation of uint8 image batches (IEG's strong view for CIFAR-like tasks)."""

from __future__ import annotations

import pytest
import torch

from benchsuite.strong_augment import (
    CUTOUT,
    FILL,
    autoaugment,
    cifar_strong_view,
    cutout,
    draw_autoaugment,
    pad_crop,
)


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


def test_pad_crop_offsets():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.uint8).view(2, 1, 5, 5)
    out = pad_crop(x, torch.tensor([4, 0]), torch.tensor([4, 8]), pad=4)
    assert torch.equal(out[0], x[0])  # offset (pad, pad): the original
    # offset (0, 2·pad): shifted down-left by pad, so only the top-right corner is kept
    assert torch.equal(out[1, 0, 4:, :1], x[1, 0, :1, 4:])
    assert (out[1, 0, :4] == FILL).all() and (out[1, 0, :, 1:] == FILL).all()


def test_cutout_square_clipped_at_borders():
    x = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    out = cutout(x, torch.tensor([16, 0]), torch.tensor([16, 31]))
    assert (out[0] == FILL).sum().item() == 3 * CUTOUT * CUTOUT
    assert (out[0, :, 8:24, 8:24] == FILL).all()
    assert (out[1] == FILL).sum().item() == 3 * (CUTOUT // 2) * (CUTOUT // 2 + 1)


def test_rejects_float_batches_with_a_clear_message():
    with pytest.raises(ValueError, match="uint8 image batch"):
        cifar_strong_view(torch.rand(2, 3, 32, 32), torch.Generator())
