"""torchvision's GoogLeNet (V1 with BatchNorm) adapted to 32×32 inputs.

The ImageNet stem (7×7 stride-2 convolution, then a stride-2 max-pool) would shrink a CIFAR image
to 8×8 before the first Inception block. Here the stem convolution is 3×3 with stride 1 and the
first max-pool is dropped, so Inception 3 runs at 16×16, 4 at 8×8 and 5 at 4×4. The auxiliary
heads are left out, so the training-mode forward returns plain logits like every other model.
Everything else is torchvision's module (including its 3×3 "5×5" branch kept for weight
compatibility, pytorch/vision issue 906).
"""

from __future__ import annotations

from torch import nn


def googlenet_cifar(num_classes: int) -> nn.Module:
    """A freshly initialised GoogLeNet for 32×32 images returning logits."""
    from torchvision.models import GoogLeNet
    from torchvision.models.googlenet import BasicConv2d

    model = GoogLeNet(num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=True)
    model.conv1 = BasicConv2d(3, 64, kernel_size=3, stride=1, padding=1)
    nn.init.trunc_normal_(model.conv1.conv.weight, mean=0.0, std=0.01, a=-2, b=2)
    model.maxpool1 = nn.Identity()
    return model
