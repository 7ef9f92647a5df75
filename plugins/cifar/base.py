"""What the CIFAR task family (CIFAR-10, CIFAR-100, Vehicles-10) shares: parameters, networks,
training recipes and ``prepare``.

The images stay uint8 on the device; the weak view (pad-4 random crop + horizontal flip) runs
batched on each training batch, and normalisation is the model's first layer. Recipes are the
papers' iteration budgets; milestones are fractions of the total, so a shorter ``--iterations``
or ``--epochs`` keeps the schedule's shape.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from benchsuite.needs import CLEAN_VALIDATION, STRONG_VIEW, TRUSTED_SET
from benchsuite.params import Param
from benchsuite.task import (
    Metric,
    PreparedData,
    PrepareRequest,
    Recipe,
    Task,
    ViewFn,
    evaluate_classification,
    prepare_in_memory,
)
from benchsuite.toolkit.augment import CropFlip

from .cifar_n import HumanLabelRelease, human_labels_path, read_human_labels
from .models import CIFAR_MODELS, build_cifar_model
from .release import CifarData, Which, release_folder

if TYPE_CHECKING:
    import torch
    from torch import nn

_SGD = dict(lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="multistep", epochs=1)

#: Training recipes by name (``training`` parameter of the CIFAR tasks).
RECIPES: dict[str, Recipe] = {
    # He et al. 2016 §4.2: batch 128, lr 0.1 ÷10 at 32k and 48k, stop at 64k (the IMAE T study).
    "he_64k": Recipe(batch_size=128, iterations=64_000, milestones=(0.5, 0.75), **_SGD),
    # Same drops, run to 100k iterations (the GR/DM ResNet training curves).
    "he_100k": Recipe(batch_size=128, iterations=100_000, milestones=(0.32, 0.48), **_SGD),
    # DM §4.2.1 (after SL): batch 256, lr 0.1 ÷10 at 15k and 22k, 30k iterations.
    "dm_30k": Recipe(batch_size=256, iterations=30_000, milestones=(0.5, 22 / 30), **_SGD),
    # CIFAR-N's CE baseline (official starter code main.py): batch 128, SGD momentum 0.9, weight decay
    # 5e-4, lr 0.1 for 60 epochs then 0.01 for 40 (100 epochs).
    "cifar_n_100ep": Recipe(
        batch_size=128, epochs=100, lr=0.1, weight_decay=5e-4, schedule="multistep", milestones=(0.6,)
    ),
    # A minute-scale check of the whole pipeline, not a result.
    "smoke": Recipe(batch_size=128, iterations=200, milestones=(0.5, 0.75), **_SGD),
}

#: Per-channel mean and standard deviation of the training images, in [0, 1] units.
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


def cifar_parameters(
    model: str, training: str, folder: str, human_labels: HumanLabelRelease | None = None
) -> dict[str, Param]:
    """The parameters of a CIFAR-family task, with its default network and recipe (and, for a
    task with a CIFAR-N release, the path of its file of human labels)."""
    extra = {}
    if human_labels is not None:
        extra["human_labels"] = Param(
            None,
            f"path of {human_labels.file_name} (CIFAR-N release), read by the {human_labels.prefix}:* noise kinds",
            type=str,
            nullable=True,
            identity=False,
        )
    return extra | {
        "root": Param(None, f"folder that contains {folder}/", type=str, nullable=True, identity=False),
        "download": Param(False, "fetch the release with torchvision when root lacks it (needs network)", identity=False),
        "model": Param(model, "network", choices=CIFAR_MODELS),
        "shortcut": Param("A", "ResNet shortcut where shapes change: A zero-pads (He et al.), B projects", choices=("A", "B")),
        "training": Param(training, "training recipe (optimiser, schedule, iterations)", choices=tuple(RECIPES)),
        "augment": Param(True, "random crop of the zero-padded image + horizontal flip on every training batch"),
        "crop_padding": Param(4, "zero padding before the random crop (He et al. 4; IEG's weak view 2)", low=0, high=16),
        "channels_last": Param(True, "NHWC activations (faster convolutions on CPU)", identity=False),
    }


class CifarTask(Task):
    """Base of the CIFAR-family tasks: subclasses say how to load their arrays."""

    input_kind = "image"
    provides = frozenset({TRUSTED_SET, STRONG_VIEW, CLEAN_VALIDATION})
    metrics = {"test_acc": Metric("top-1 accuracy on the test set")}
    primary_metric = "test_acc"
    #: (mean, std) per channel for the model's input normalisation.
    stats: ClassVar[tuple[tuple[float, ...], tuple[float, ...]]] = CIFAR10_STATS

    #: Which official release the task reads ("cifar10" or "cifar100").
    release: ClassVar[Which]
    #: The CIFAR-N file that annotates this task's training set, if any (its kinds need it).
    human_release: ClassVar[HumanLabelRelease | None] = None

    @abc.abstractmethod
    def load(self) -> CifarData:
        """The task's images and labels (the class names and, where known, superclasses too)."""

    def check_data(self) -> None:
        if not self.download:
            release_folder(self.release, self.root)

    def check_noise(self, kind: str) -> None:
        if self.human_release is not None and kind in self.human_release.kind_names():
            human_labels_path(self.human_release, self.human_labels)

    def human_noise_inputs(self, kind: str, y_train: np.ndarray, info: dict[str, Any]) -> dict[str, Any]:
        """The file's labels when ``kind`` is a CIFAR-N kind (checked against ``y_train``), and the
        file's identity and realised noise rate over the whole training set in ``info``."""
        release = self.human_release
        if release is None or kind not in release.kind_names():
            return {}
        labels = read_human_labels(release, self.human_labels, y_train)
        key = release.variants[kind.partition(":")[2]]
        info["human_labels"] = {
            "file": release.file_name,
            "sha256": labels.sha256,
            "key": key,
            "file_noise_rate": labels.noise_rate(key, release.clean_key),
        }
        return {release.input_name: labels}

    def strong_view(self) -> ViewFn | None:
        """The strong augmentation handed to consistency-based methods (IEG): AutoAugment's CIFAR-10
        policy drawn per image, then crop, flip and Cutout 16 (``benchsuite.toolkit.strong_augment``)."""
        from benchsuite.toolkit.strong_augment import cifar_strong_view

        return cifar_strong_view

    def prepare(self, request: PrepareRequest) -> PreparedData:
        import torch

        if request.noise_kind not in self.noise_kinds:
            raise ValueError(
                f"task {self.name!r} does not take noise kind {request.noise_kind!r}; it takes: {', '.join(self.noise_kinds)}"
            )
        data = self.load()
        info: dict[str, Any] = {"class_names": list(data.class_names), "num_test": len(data.y_test)}
        noise_inputs = self.human_noise_inputs(request.noise_kind, data.y_train, info)
        if data.coarse_of is not None:
            noise_inputs["coarse_of"] = data.coarse_of
        return prepare_in_memory(
            request,
            torch.from_numpy(data.x_train),
            data.y_train,
            torch.from_numpy(data.x_test),
            data.y_test,
            self.num_classes,
            augment=CropFlip(self.crop_padding) if self.augment else None,
            strong_view=self.strong_view(),
            info=info,
            noise_inputs=noise_inputs,
        )

    def build_model(self) -> nn.Module:
        from benchsuite.toolkit.models.normalize import Normalized

        net = build_cifar_model(self.model, self.num_classes, self.shortcut)
        return Normalized(net, *self.stats, channels_last=self.channels_last)

    def recipe(self) -> Recipe:
        return RECIPES[self.training]

    def evaluate(self, model: nn.Module, data: PreparedData, device: torch.device) -> dict[str, float]:
        return evaluate_classification(model, data, batch_size=self.recipe().eval_batch_size)
