"""clothing1m: 14 clothing classes with real, unknown label noise (Xiao et al. 2015).

Reads the official release under ``root``: ``category_names_eng.txt``, ``noisy_label_kv.txt``,
``clean_label_kv.txt``, ``noisy_train_key_list.txt``, ``clean_train_key_list.txt``,
``clean_val_key_list.txt``, ``clean_test_key_list.txt`` and the ``images/`` tree. Every line is
split on whitespace only (file names contain commas); keys are resolved relative to the root, with
or without their leading ``images/`` (copies that keep the image folders directly under the root,
as DivideMix expects, work too).

* Training: the 1M noisy training images with their noisy labels. The noise is real, so there is
  no synthetic noise (noise kind ``none``) and the noise mask is unknown — except where an image
  of the noisy training set also has a clean label in ``clean_label_kv.txt``: there the clean
  label is the truth (``truth_known``), the memorisation metrics are measured on that overlap
  only, and the noise rate realised on the overlap is recorded.
* Each epoch trains on a fresh, seeded, class-balanced subset of ``samples_per_epoch`` images
  (DivideMix's rule, the usual PyTorch rendering of Tanaka et al.'s pseudo-balanced sampling:
  shuffle the noisy set, walk it, accept an image while its noisy class has fewer than N/14
  accepted and fewer than N are accepted in total; shuffle the result).
* ``val_acc`` on the clean validation set (for selecting epochs and hyper-parameters) and
  ``test_acc`` on the clean test set, every epoch.
* The clean training subset (clean labels) is offered as the trusted set of methods that need
  one (IEG): ``trusted_per_class`` images of every class, drawn with the run's seed; the noisy
  training set is left whole.
* Images are decoded, resized, cropped and flipped in DataLoader workers, as uint8; the model's
  first layer scales and normalises them on the device (ImageNet statistics, those of the
  pretrained weights). Each image's crop and flip come from a seed drawn for it from the run's
  generator, so results do not depend on ``num_workers``.
* Model and recipe of the DM paper (§4.2.3, following Tanaka et al. 2018): ImageNet-pretrained
  ResNet-50 from torchvision (weights read from disk, never downloaded), resize to 256×256,
  random 224 crop and horizontal flip; SGD momentum 0.9, weight decay 2e-5, lr 0.01 divided by
  10 at 10k and 15k of 20k iterations. The paper does not state the batch size; 64 is the one
  its authors' GR paper uses for the same Clothing1M setting.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchsuite import Metric, Param, PreparedData, Preset, Recipe, Task, hookimpl
from benchsuite.needs import CLEAN_VALIDATION, TRUSTED_SET
from benchsuite.task import PrepareRequest
from benchsuite.toolkit.labels import split_labels

if TYPE_CHECKING:
    import torch
    from torch import nn

    from benchsuite_plugins.clothing1m.images import ClothingEval, ImageFiles

NUM_CLASSES = 14
CLASS_NAMES = "category_names_eng.txt"
NOISY_KV = "noisy_label_kv.txt"
CLEAN_KV = "clean_label_kv.txt"
KEY_LISTS = {
    "noisy_train": "noisy_train_key_list.txt",
    "clean_train": "clean_train_key_list.txt",
    "clean_val": "clean_val_key_list.txt",
    "clean_test": "clean_test_key_list.txt",
}
RELEASE_FILES = (CLASS_NAMES, NOISY_KV, CLEAN_KV, *KEY_LISTS.values())
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_PREFIX = "images/"


def _strip(key: str) -> str:
    return key[len(_PREFIX) :] if key.startswith(_PREFIX) else key


def read_kv(path: Path) -> dict[str, int]:
    """``key label`` lines → {key without ``images/``: label}, checked."""
    labels: dict[str, int] = {}
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) >= NUM_CLASSES:
                raise ValueError(f"{path}:{line_no}: expected '<image key> <label 0-13>', got {line.strip()!r}")
            labels[_strip(fields[0])] = int(fields[1])
    return labels


def read_keys(path: Path) -> list[str]:
    """One key per line (whitespace-trimmed; commas are part of file names) → keys without ``images/``."""
    with open(path, encoding="utf-8") as handle:
        keys = [_strip(line.strip()) for line in handle if line.strip()]
    if not keys:
        raise ValueError(f"{path} lists no image keys")
    return keys


@dataclass
class Release:
    """The parsed release: where the images are, class names, and each split's keys and labels."""

    image_dir: Path
    class_names: list[str]
    keys: dict[str, list[str]]
    labels: dict[str, np.ndarray]
    #: Clean label of each noisy training image where the release has one, else -1.
    noisy_train_truth: np.ndarray


@lru_cache(maxsize=2)
def load_release(root: str) -> Release:
    """Parse and check the release under ``root`` (once per process)."""
    base = Path(root)
    missing = [name for name in RELEASE_FILES if not (base / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{base} is not a Clothing1M release: missing {', '.join(missing)}. Expected the official layout: "
            f"{', '.join(RELEASE_FILES)} and the images/ tree, all in the folder passed as root."
        )
    class_names = [line.strip() for line in (base / CLASS_NAMES).read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(class_names) != NUM_CLASSES:
        raise ValueError(f"{base / CLASS_NAMES} names {len(class_names)} classes, expected {NUM_CLASSES}")
    noisy_kv, clean_kv = read_kv(base / NOISY_KV), read_kv(base / CLEAN_KV)
    keys = {split: read_keys(base / name) for split, name in KEY_LISTS.items()}
    labels: dict[str, np.ndarray] = {}
    for split, split_keys in keys.items():
        kv, kv_name = (noisy_kv, NOISY_KV) if split == "noisy_train" else (clean_kv, CLEAN_KV)
        absent = [k for k in split_keys if k not in kv]
        if absent:
            raise ValueError(f"{len(absent)} keys of {KEY_LISTS[split]} have no label in {kv_name}, e.g. {absent[0]!r}")
        labels[split] = np.fromiter((kv[k] for k in split_keys), dtype=np.int64, count=len(split_keys))
    truth = np.fromiter((clean_kv.get(k, -1) for k in keys["noisy_train"]), dtype=np.int64, count=len(keys["noisy_train"]))
    return Release(_image_dir(base, keys), class_names, keys, labels, truth)


def _image_dir(base: Path, keys: dict[str, list[str]]) -> Path:
    """``root/images`` or ``root``: whichever holds the first image of every list."""
    for candidate in (base / "images", base):
        if all((candidate / split_keys[0]).is_file() for split_keys in keys.values()):
            return candidate
    first = keys["noisy_train"][0]
    raise FileNotFoundError(
        f"Clothing1M images not found: the first key of {KEY_LISTS['noisy_train']} should be at "
        f"{base / 'images' / first} (or {base / first}); check that images/ was unpacked under {base}"
    )


class Clothing1M(Task):
    name = "clothing1m"
    summary = "Clothing1M: 1M web images of 14 clothing classes with real label noise, ResNet-50 (DM recipe)"
    num_classes = NUM_CLASSES
    input_kind = "image"
    #: ``clean_validation``: the release's own clean validation set (``val_acc``), whatever fraction is asked.
    provides = frozenset({TRUSTED_SET, CLEAN_VALIDATION})
    noise_kinds = ("none",)
    default_noise = ("none", (0.0,))
    metrics = {
        "test_acc": Metric("top-1 accuracy on the 10,526 clean test images"),
        "val_acc": Metric("top-1 accuracy on the 14,313 clean validation images (for model selection)"),
    }
    primary_metric = "test_acc"
    leaderboard_metrics = ("test_acc", "val_acc")
    parameters = {
        "root": Param(
            None,
            "the Clothing1M release folder (the seven .txt files and images/)",
            type=str,
            nullable=True,
            identity=False,
        ),
        "arch": Param("resnet50", "torchvision classification architecture"),
        "weights": Param(
            "imagenet",
            "'imagenet' (torchvision's weights from the torch hub cache), a state-dict path, or 'random'",
        ),
        "resize": Param(256, "images are resized to resize × resize pixels", low=8),
        "crop": Param(224, "side of the (random when training, central when testing) square crop", low=8),
        "samples_per_epoch": Param(64_000, "size N of each epoch's class-balanced subset of the noisy set", low=NUM_CLASSES),
        "num_workers": Param(4, "DataLoader worker processes decoding images", low=0, identity=False),
    }
    presets = {
        "dm": Preset(
            {"arch": "resnet50", "weights": "imagenet", "resize": 256, "crop": 224, "samples_per_epoch": 64_000},
            "DM §4.2.3 (following Tanaka et al. 2018); per-epoch subset as DivideMix",
            "ImageNet-pretrained ResNet-50, 256×256 resize, random 224 crop + flip; the recipe is the task's",
        )
    }

    def check_data(self) -> None:
        self.release()

    def release(self) -> Release:
        if self.root is None:
            raise FileNotFoundError(
                "clothing1m needs the Clothing1M release (obtained from its authors): pass the folder holding "
                f"{', '.join(RELEASE_FILES)} and images/, e.g. -t \"clothing1m{{root = '/data/clothing1m'}}\""
            )
        return load_release(str(Path(self.root).expanduser().resolve()))

    def prepare(self, request: PrepareRequest) -> PreparedData:
        if request.noise_kind != "none":
            raise ValueError(
                f"clothing1m carries real label noise; synthetic {request.noise_kind!r} noise does not apply: "
                "run it with noise kind 'none'"
            )
        if self.crop > self.resize:
            raise ValueError(f"clothing1m: crop = {self.crop} is larger than resize = {self.resize}")
        import torch

        from benchsuite_plugins.clothing1m.images import ClothingEval, ImageFiles, ImageTrainSource

        release = self.release()
        device = request.device
        # the label pipeline on the real noisy labels: no synthetic noise, the trusted set drawn
        # from the release's clean training subset, no validation split carved from noisy labels
        # (the release has a clean validation set of its own, which evaluate() reports), and the
        # noise measured where the release knows a clean label; the noisy set stays whole
        asked = {name: params for name, params in request.needs.items() if name != CLEAN_VALIDATION}
        split = split_labels(
            replace(request, needs=asked),
            release.labels["noisy_train"],
            NUM_CLASSES,
            trusted_pool=release.labels["clean_train"],
            truth=release.noisy_train_truth,
            truth_source="real (Clothing1M); rate measured where a clean label is known",
        )
        noisy, known = split.noisy, split.truth_known

        def files(split: str) -> ImageFiles:
            return ImageFiles(release.image_dir, release.keys[split], self.resize, self.crop)

        provided: dict[str, Any] = {}
        info: dict[str, Any] = {
            "image_dir": str(release.image_dir),
            "num_noisy_train": len(noisy),
            "num_clean_train": len(release.keys["clean_train"]),
            "num_val": len(release.keys["clean_val"]),
            "num_test": len(release.keys["clean_test"]),
            "num_truth_known": int(known.sum()),
            "truth_known": "noisy training images that also have a clean label in clean_label_kv.txt",
            "samples_per_epoch": self.samples_per_epoch,
            "per_class_cap": self.samples_per_epoch / NUM_CLASSES,
            "normalisation": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
        }
        if split.trusted is not None:
            clean_labels = release.labels["clean_train"]
            picked = split.trusted
            provided[TRUSTED_SET] = ImageTrainSource(
                ImageFiles(release.image_dir, [release.keys["clean_train"][i] for i in picked], self.resize, self.crop),
                clean_labels[picked],
                batch_size=request.batch_size,
                device=device,
                num_workers=self.num_workers,
                drop_last=False,
                num_classes=NUM_CLASSES,
            )
            info.update(split.info)  # trusted_indices: into clean_train_key_list.txt
        return PreparedData(
            train=ImageTrainSource(
                files("noisy_train"),
                noisy,
                batch_size=request.batch_size,
                device=device,
                num_workers=self.num_workers,
                subset_size=self.samples_per_epoch,
                num_classes=NUM_CLASSES,
            ),
            noisy_labels=torch.as_tensor(noisy),
            # where the truth is unknown this repeats the noisy label; truth_known masks it out
            true_labels=torch.as_tensor(split.clean),
            truth_known=torch.as_tensor(known),
            noise=split.noise,
            provided=provided,
            info=info,
            eval_data=ClothingEval(
                val=files("clean_val"),
                val_labels=torch.as_tensor(release.labels["clean_val"], device=device),
                test=files("clean_test"),
                test_labels=torch.as_tensor(release.labels["clean_test"], device=device),
                batch_size=self.recipe().eval_batch_size,
                num_workers=self.num_workers,
            ),
        )

    def build_model(self) -> nn.Module:
        from torch import nn

        from benchsuite.toolkit.models.pretrained import torchvision_backbone
        from benchsuite_plugins.clothing1m.images import ImageNormalize, replace_head

        weights = None if self.weights == "random" else self.weights
        backbone = replace_head(torchvision_backbone(self.arch, weights), NUM_CLASSES)
        return nn.Sequential(ImageNormalize(IMAGENET_MEAN, IMAGENET_STD), backbone)

    def recipe(self) -> Recipe:
        return Recipe(
            epochs=20,  # 20 × (64,000 / 64) = 20,000 iterations; ``iterations`` rules
            iterations=20_000,
            batch_size=64,
            lr=0.01,
            momentum=0.9,
            weight_decay=2e-5,
            schedule="multistep",
            milestones=(0.5, 0.75),
            gamma=0.1,
            eval_batch_size=256,
        )

    def evaluate(self, model: nn.Module, data: PreparedData, device: torch.device) -> dict[str, float]:
        import torch

        from benchsuite_plugins.clothing1m.images import accuracy

        splits: ClothingEval = data.eval_data
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return {
                    "val_acc": accuracy(model, splits.val, splits.val_labels, splits, device),
                    "test_acc": accuracy(model, splits.test, splits.test_labels, splits, device),
                }
        finally:
            model.train(was_training)


@hookimpl
def register_tasks(register):
    register(Clothing1M)
