"""animal10n: ANIMAL-10N (Song et al. 2019, SELFIE, ICML): 50,000 training images labelled by
people, with their mistakes, and 5,000 test images whose label matches the search keyword, 64×64
RGB, 10 animals in five confusable pairs.

Where the facts come from:

* class indices and names, the 50,000 / 5,000 split and why the test set is clean: the release's
  page, dm.kaist.ac.kr/datasets/animal-10n (0 cat, 1 lynx, 2 wolf, 3 coyote, 4 cheetah,
  5 jaguar, 6 chimpanzee, 7 orangutan, 8 hamster, 9 guinea pig);
* 64×64 resolution, the ≈8% noise rate (estimated by the authors; the release has no clean
  training labels, so it cannot be measured here) and the training protocol: the README of the
  official code, github.com/kaist-dmlab/SELFIE (VGG-19 with batch normalisation, batch 128,
  momentum 0.9, lr 0.1 divided by 5 at 50% and 75% of 100 epochs, no augmentation), and weight
  decay 5e-4 from that code's VGG-19 definition;
* the layout of the image version, ``training/`` and ``testing/`` holding ``<label>_<id>.jpg``
  (the label is the file name's prefix): the loaders public code uses for the release; we could
  not read it in the release's own text, so the reader checks it and names any file that does not
  fit.

Deviations: the network ends in global average pooling and one linear layer, without the
SELFIE code's dropout 0.2; VGG-11 is offered as a smaller network. Pixels are scaled to [-1, 1]
(per-channel mean and std 0.5), since the protocol states no normalisation.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchsuite import Metric, Param, Preset, Recipe, Task, hookimpl
from benchsuite.task import ClassificationEval, PreparedData, PrepareRequest, TensorTrainSource, evaluate_classification
from benchsuite.toolkit.augment import CropFlip
from benchsuite.toolkit.datasets import DatasetError
from benchsuite.toolkit.labels import split_labels

if TYPE_CHECKING:
    import torch
    from torch import nn

CLASS_NAMES = ("cat", "lynx", "wolf", "coyote", "cheetah", "jaguar", "chimpanzee", "orangutan", "hamster", "guinea pig")
SPLITS = {"train": "training", "test": "testing"}
IMAGE_SIZE = 64
RELEASE_PAGE = "https://dm.kaist.ac.kr/datasets/animal-10n"
FILE_NAME = re.compile(r"^(\d+)_[^/]+\.jpg$")

RECIPES = {
    # SELFIE README + code: batch 128, momentum 0.9, lr 0.1 ÷5 at 50% and 75% of 100 epochs, wd 5e-4.
    "selfie_100ep": Recipe(
        epochs=100, batch_size=128, lr=0.1, weight_decay=5e-4, schedule="multistep", milestones=(0.5, 0.75), gamma=0.2
    ),
    # A minute-scale check of the whole pipeline, not a result.
    "smoke": Recipe(epochs=1, iterations=50, batch_size=64, lr=0.05, schedule="multistep", milestones=(0.5,), gamma=0.2),
}
MODELS = {"vgg19_bn": 19, "vgg11_bn": 11}


@dataclass(frozen=True)
class Animal10NData:
    """The release in memory: uint8 images (N, 3, 64, 64), int64 labels, and the file names."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_files: tuple[str, ...]


def how_to_get(root: object) -> str:
    return (
        f"download the image version from {RELEASE_PAGE} and extract it so that {root}/training/ and "
        f"{root}/testing/ hold the <label>_<id>.jpg files"
    )


def split_folders(root: str | Path | None) -> dict[str, Path]:
    """The two image folders under ``root``, or a message that says what is missing and where."""
    if root is None:
        raise DatasetError(
            "animal10n needs a data root: set the task parameter root to the folder that contains training/ "
            f"and testing/ (e.g. -t \"animal10n{{root = '/data/animal10n'}}\"); to get the data, {how_to_get('root')}"
        )
    base = Path(root).expanduser()
    folders = {split: base / name for split, name in SPLITS.items()}
    missing = [str(f) for f in folders.values() if not f.is_dir()]
    if missing:
        raise DatasetError(f"no ANIMAL-10N at {base}: missing {', '.join(missing)}; {how_to_get(base)}")
    for folder in folders.values():
        with os.scandir(folder) as entries:
            if not any(e.name.endswith(".jpg") for e in entries):
                raise DatasetError(f"ANIMAL-10N folder {folder} holds no .jpg files; {how_to_get(base)}")
    return folders


def _read_split(folder: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from PIL import Image

    names = sorted(e.name for e in os.scandir(folder) if e.is_file())
    labels = []
    for name in names:
        match = FILE_NAME.match(name)
        if match is None or int(match.group(1)) >= len(CLASS_NAMES):
            raise DatasetError(
                f"{folder / name}: ANIMAL-10N files are named <label>_<id>.jpg with a label in 0–9; "
                "remove other files from the folder"
            )
        labels.append(int(match.group(1)))
    images = np.empty((len(names), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i, name in enumerate(names):
        with Image.open(folder / name) as image:
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise DatasetError(f"{folder / name} is {image.size[0]}×{image.size[1]}; ANIMAL-10N images are 64×64")
            images[i] = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
    return images, np.asarray(labels, dtype=np.int64), tuple(names)


@lru_cache(maxsize=1)
def read_animal10n(root: str) -> Animal10NData:
    """Decode both splits (cached per process by resolved root)."""
    folders = split_folders(root)
    x_train, y_train, train_files = _read_split(folders["train"])
    x_test, y_test, _ = _read_split(folders["test"])
    return Animal10NData(x_train, y_train, x_test, y_test, train_files)


class Animal10N(Task):
    name = "animal10n"
    summary = "ANIMAL-10N (10 animals, 50k human-labelled / 5k clean test, 64×64): real label noise, about 8%"
    num_classes = 10
    input_kind = "image"
    noise_kinds = ("none",)
    default_noise = ("none", (0.0,))
    metrics = {"test_acc": Metric("top-1 accuracy on the test set (labels match the search keyword)")}
    primary_metric = "test_acc"
    parameters = {
        "root": Param(None, "folder that contains training/ and testing/", type=str, nullable=True, identity=False),
        "model": Param("vgg19_bn", "network (the paper's VGG-19 with BN, or the smaller VGG-11 with BN)", choices=tuple(MODELS)),
        "training": Param("selfie_100ep", "training recipe", choices=tuple(RECIPES)),
        "augment": Param(False, "random crop of the 4-pixel zero-padded image + horizontal flip (the paper uses none)"),
        "channels_last": Param(True, "NHWC activations (faster convolutions on CPU)", identity=False),
    }
    presets = {
        "selfie_vgg19": Preset(
            {"model": "vgg19_bn", "training": "selfie_100ep", "augment": False},
            "Song et al. 2019 (ICML) §5; official SELFIE README (schedule) and VGG-19 code (weight decay 5e-4)",
            "VGG-19 with BN, batch 128, SGD momentum 0.9, wd 5e-4, lr 0.1 ÷5 at 50 and 75 of 100 epochs, no augmentation",
        ),
        "smoke": Preset({"model": "vgg11_bn", "training": "smoke"}, "", "VGG-11 with BN, 50 iterations: a pipeline check"),
    }

    def check_data(self) -> None:
        split_folders(self.root)

    def prepare(self, request: PrepareRequest) -> PreparedData:
        import torch

        if request.noise_kind != "none":
            raise ValueError(
                f"animal10n carries real label noise; synthetic {request.noise_kind!r} noise does not apply: "
                "run it with noise kind 'none'"
            )
        if request.trusted_per_class:
            raise ValueError("animal10n has no clean training labels to draw a trusted set from")
        data = read_animal10n(str(Path(self.root).expanduser().resolve()))
        # the training labels are the annotators': which of them are wrong is unknown
        split = split_labels(
            request,
            data.y_train,
            self.num_classes,
            truth=np.full(len(data.y_train), -1),
            truth_source="real (ANIMAL-10N): the release has no clean training labels, so the rate is not measured",
        )
        x_train, device = torch.from_numpy(data.x_train), request.device
        val = None
        if split.val is not None:
            val = (x_train[torch.as_tensor(split.val)].to(device), torch.as_tensor(data.y_train[split.val]).to(device))
        noisy = torch.as_tensor(split.noisy, dtype=torch.long)
        return PreparedData(
            train=TensorTrainSource(
                x_train[torch.as_tensor(split.train)].to(device),
                noisy.to(device),
                batch_size=request.batch_size,
                augment=CropFlip(4) if self.augment else None,
            ),
            noisy_labels=noisy,
            true_labels=torch.as_tensor(split.clean, dtype=torch.long),
            truth_known=torch.as_tensor(split.truth_known),
            noise=split.noise,
            info={
                "class_names": list(CLASS_NAMES),
                "num_train_files": len(data.y_train),
                "num_test": len(data.y_test),
                "noise_rate_estimate": 0.08,
                "noise_rate_source": "Song et al. 2019, by cross-validation; the release has no clean training labels",
                "validation_labels": "a validation split, when asked, carries the human (noisy) labels",
                **split.info,
            },
            eval_data=ClassificationEval(
                test=(torch.from_numpy(data.x_test).to(device), torch.as_tensor(data.y_test, dtype=torch.long).to(device)),
                val=val,
            ),
        )

    def build_model(self) -> nn.Module:
        from benchsuite.toolkit.models.normalize import Normalized
        from benchsuite_plugins.animal10n.vgg import VGG

        return Normalized(VGG(MODELS[self.model], self.num_classes), (0.5,) * 3, (0.5,) * 3, channels_last=self.channels_last)

    def recipe(self) -> Recipe:
        return RECIPES[self.training]

    def evaluate(self, model: nn.Module, data: PreparedData, device: torch.device) -> dict[str, float]:
        return evaluate_classification(model, data, batch_size=self.recipe().eval_batch_size)


@hookimpl
def register_tasks(register):
    register(Animal10N)
