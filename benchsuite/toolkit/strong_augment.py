"""Strong augmentation of uint8 image batches on the device (the strong view of IEG-style methods).

``cifar_strong_view(x, generator)`` follows IEG's strong view (``docs/reference.md``
§5), applied to the weak view: AutoAugment with the CIFAR-10 policy, one sub-policy drawn *per
image*, then pad 4 and a random crop back to size, a horizontal flip with probability ½, and
Cutout 16×16 centred uniformly in the image (clipped at the borders). Every fill — outside a
rotated, sheared or translated image, the padding and the cutout — is mid-grey (128), the value
the reference's [−1, 1] pipeline fills with (0 there). Crop, flip and cutout are
``benchsuite.toolkit.augment``'s.

AutoAugment uses torchvision.transforms.v2's policy table, magnitude bins and operations; draws
come from the run's generator rather than the global RNG, so a view is a function of (batch,
generator state). Images that drew the same operation at the same magnitude and sign go through
torchvision in one batched call, so a batch of 128 costs a few dozen calls, not 256. The
magnitudes are torchvision's (e.g. translation up to 150/331 of the width), which differ
slightly from the TF code's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import AutoAugment, AutoAugmentPolicy, InterpolationMode

from .augment import cutout, random_crop_flip

#: Mid-grey: the reference fills with 0 in its [−1, 1] pixel space.
FILL = 128
PAD = 4
CUTOUT = 16
NUM_BINS = 10

_AUTOAUGMENT = AutoAugment(AutoAugmentPolicy.CIFAR10, interpolation=InterpolationMode.NEAREST, fill=FILL)
try:  # torchvision's table and operations (private names; torchvision is pinned in pyproject.toml)
    _POLICIES = _AUTOAUGMENT._policies
    _SPACE = _AUTOAUGMENT._AUGMENTATION_SPACE
    _apply_op = _AUTOAUGMENT._apply_image_or_video_transform
except AttributeError as exc:  # pragma: no cover - depends on the installed torchvision
    raise ImportError(
        "benchsuite.toolkit.strong_augment uses torchvision.transforms.v2.AutoAugment's policy table, which this "
        f"torchvision version lays out differently ({exc}); install a torchvision within pyproject.toml's pins"
    ) from exc

#: Distinct (operation, magnitude bin) pairs of the policy, and each sub-policy's pair id and
#: probability per slot.
_OPS: list[tuple[str, int | None]] = sorted({(name, b) for sub in _POLICIES for name, _, b in sub}, key=str)
_OP_ID = torch.tensor([[_OPS.index((name, b)) for name, _, b in sub] for sub in _POLICIES])
_OP_PROB = torch.tensor([[p for _, p, _ in sub] for sub in _POLICIES])


@dataclass(frozen=True)
class AutoAugmentPlan:
    """Per-image AutoAugment draws: sub-policy, whether each of its two operations fires, and
    whether a signed operation is negated. Tensors of shape (N,), (N, 2), (N, 2)."""

    policy: torch.Tensor
    apply: torch.Tensor
    negate: torch.Tensor

    def __getitem__(self, index: slice) -> "AutoAugmentPlan":
        return AutoAugmentPlan(self.policy[index], self.apply[index], self.negate[index])


def draw_autoaugment(n: int, generator: torch.Generator) -> AutoAugmentPlan:
    """Draw an independent CIFAR-10 sub-policy (and its coin flips) for each of ``n`` images."""
    device = generator.device
    policy = torch.randint(len(_POLICIES), (n,), generator=generator, device=device)
    apply = torch.rand(n, 2, generator=generator, device=device) <= _OP_PROB.to(device)[policy]
    negate = torch.rand(n, 2, generator=generator, device=device) <= 0.5
    return AutoAugmentPlan(policy, apply, negate)


def autoaugment(x: torch.Tensor, plan: AutoAugmentPlan) -> torch.Tensor:
    """Apply ``plan`` to the uint8 batch ``x`` (N, C, H, W), one batched call per distinct operation."""
    height, width = x.shape[-2:]
    out = x.clone()
    policy = plan.policy.to(x.device)
    for slot in range(2):
        # key = 2·(operation id) + negated; -1 where the operation does not fire
        key = 2 * _OP_ID.to(x.device)[policy, slot] + plan.negate[:, slot].to(x.device).long()
        key = torch.where(plan.apply[:, slot].to(x.device), key, -1)
        for k in torch.unique(key).tolist():
            if k < 0:
                continue
            name, bin_ = _OPS[k // 2]
            magnitudes_fn, signed = _SPACE[name]
            magnitudes = magnitudes_fn(NUM_BINS, height, width)
            magnitude = 0.0 if magnitudes is None else float(magnitudes[bin_])
            if signed and k % 2:
                magnitude = -magnitude
            index = (key == k).nonzero().squeeze(1)
            out[index] = _apply_op(out[index], name, magnitude, interpolation=InterpolationMode.NEAREST, fill=_AUTOAUGMENT._fill)
    return out


def cifar_strong_view(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """IEG's strong view of a uint8 batch (N, C, H, W): AutoAugment (CIFAR-10 policy, per image),
    pad-4 random crop, horizontal flip, Cutout 16. Same shape, dtype and device."""
    if x.dtype != torch.uint8 or x.dim() != 4:
        raise ValueError(
            f"cifar_strong_view expects a uint8 image batch of shape (N, C, H, W), got {x.dtype} {tuple(x.shape)}; "
            "apply it before converting images to float"
        )
    out = autoaugment(x, draw_autoaugment(len(x), generator))
    out = random_crop_flip(out, generator, padding=PAD, fill=FILL)
    return cutout(out, generator, size=CUTOUT, fill=FILL)
