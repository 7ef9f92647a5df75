"""Batched augmentation: every output is a padded crop (maybe mirrored) of its input; cutout."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchsuite.toolkit.augment import CropFlip, cutout, random_crop_flip


def candidates(image: torch.Tensor, padding: int) -> list[tuple[int, int, bool, torch.Tensor]]:
    """Every crop of the zero-padded image, plain and mirrored (the per-sample definition)."""
    h, w = image.shape[-2:]
    padded = F.pad(image, (padding,) * 4)
    out = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            out += [(dy, dx, False, crop), (dy, dx, True, crop.flip(-1))]
    return out


def test_each_output_is_one_crop_of_its_own_image_and_all_offsets_occur():
    n = 400
    x = torch.arange(n * 3 * 8 * 8, dtype=torch.int64).view(n, 3, 8, 8) + 1  # all values distinct, none zero
    out = random_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    assert out.shape == x.shape and out.dtype == x.dtype
    seen = set()
    for i in range(n):
        matches = [(dy, dx, f) for dy, dx, f, c in candidates(x[i], 2) if torch.equal(c, out[i])]
        assert len(matches) == 1, f"image {i} is not a crop of its input"
        seen.add(matches[0])
    assert len(seen) > 40  # of the 5 × 5 × 2 = 50 (offset, mirror) choices
    assert {f for _, _, f in seen} == {False, True}


def test_uint8_in_uint8_out_deterministic_per_generator():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    a = random_crop_flip(x, torch.Generator().manual_seed(7))
    b = CropFlip()(x, torch.Generator().manual_seed(7))
    c = random_crop_flip(x, torch.Generator().manual_seed(8))
    assert a.dtype == torch.uint8 and torch.equal(a, b) and not torch.equal(a, c)
    mirrored = random_crop_flip(x, torch.Generator().manual_seed(7), padding=0)
    assert all(torch.equal(m, i) or torch.equal(m, i.flip(-1)) for m, i in zip(mirrored, x))
    assert torch.equal(random_crop_flip(x, torch.Generator(), padding=0, flip=False), x)


def test_cutout_fills_one_clipped_square_per_image():
    x = torch.full((200, 3, 32, 32), 200, dtype=torch.uint8)
    out = cutout(x, torch.Generator().manual_seed(0), size=16, fill=128)
    assert out.dtype == torch.uint8
    for image in out:
        mask = image[0] == 128
        assert torch.equal(image[1] == 128, mask) and set(image.unique().tolist()) <= {128, 200}
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert int(mask.sum()) == len(rows) * len(cols)  # a rectangle
        assert 8 <= len(rows) <= 16 and 8 <= len(cols) <= 16  # centre inside, clipped at borders
    areas = (out[:, 0] == 128).flatten(1).sum(1)
    assert (areas == 256).any() and (areas < 256).any()
