"""The images of clothing1m as torch reads them: the DataLoader datasets and training source, the
evaluation splits and the network's input layer. A module of its own, imported when a cell
prepares its data or builds its model, so that loading the plugin (whose classes subclass torch's
``Dataset``, ``Sampler`` and ``nn.Module``) imports no torch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from benchsuite.task import Batch


def class_balanced_subset(labels: np.ndarray, size: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """DivideMix's per-epoch subset, vectorised: walk a random permutation, accept an example while
    its class has fewer than ``size / num_classes`` accepted and fewer than ``size`` are accepted in
    total; return the accepted indices in a fresh random order."""
    order = rng.permutation(len(labels))
    ordered = labels[order]
    counts = np.bincount(ordered, minlength=num_classes)
    by_class = np.argsort(ordered, kind="stable")  # positions grouped by class, in walk order
    rank = np.empty(len(order), dtype=np.int64)
    rank[by_class] = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
    accepted = order[rank < size / num_classes][:size]
    return accepted[rng.permutation(len(accepted))]


def balanced_subset_size(labels: np.ndarray, size: int, num_classes: int) -> int:
    """How many examples ``class_balanced_subset`` returns (it does not depend on the draw)."""
    per_class_cap = math.ceil(size / num_classes)
    return min(size, int(np.minimum(np.bincount(labels, minlength=num_classes), per_class_cap).sum()))


class ImageFiles(Dataset):
    """Decodes ``image_dir/key`` to a uint8 tensor (3, crop, crop).

    An item is ``index`` (evaluation: resize, centre crop) or ``(index, seed)`` (training: resize,
    random crop and horizontal flip drawn from ``seed``). Returns ``(image, index)``.
    """

    def __init__(self, image_dir: Path, keys: Sequence[str], resize: int, crop: int) -> None:
        self.image_dir = str(image_dir)
        self.keys = keys
        self.resize, self.crop = resize, crop

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        from PIL import Image

        index, seed = (item, None) if isinstance(item, int) else item
        path = f"{self.image_dir}/{self.keys[index]}"
        try:
            with Image.open(path) as img:
                img.draft("RGB", (self.resize, self.resize))  # JPEG: decode at reduced scale when large
                img = img.convert("RGB").resize((self.resize, self.resize), Image.BILINEAR)
        except (OSError, ValueError) as exc:
            raise OSError(f"cannot read Clothing1M image {path}: {exc}") from exc
        pixels = np.asarray(img)
        margin = self.resize - self.crop
        if seed is None:
            top = left = margin // 2
            flip = False
        else:
            rng = np.random.default_rng(seed)
            top, left = rng.integers(0, margin + 1, size=2)
            flip = bool(rng.random() < 0.5)
        pixels = pixels[top : top + self.crop, left : left + self.crop]
        if flip:
            pixels = pixels[:, ::-1]
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))), index


class _Items(torch.utils.data.Sampler):
    """A sampler whose items are replaced every epoch (it lives in the main process, so this works
    with persistent workers)."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def image_loader(dataset: Dataset, sampler: Any, batch_size: int, num_workers: int, device: torch.device, persistent: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=persistent and num_workers > 0,
        # the loader draws its worker base seed from this generator, not torch's global one
        generator=torch.Generator().manual_seed(0),
    )


class ImageTrainSource:
    """Training images read by a DataLoader, decoded in workers, batches moved to ``device``.

    ``subset_size``: train each epoch on a fresh class-balanced subset of that many images (the
    epoch's draw comes from the engine's generator), balanced over ``num_classes`` classes;
    ``None``: every image, reshuffled.
    """

    def __init__(
        self,
        dataset: ImageFiles,
        labels: np.ndarray,
        batch_size: int,
        device: torch.device,
        num_workers: int,
        subset_size: int | None = None,
        drop_last: bool = True,
        *,
        num_classes: int,
    ) -> None:
        self.dataset = dataset
        self.labels = labels
        self.y = torch.as_tensor(labels, dtype=torch.long, device=device)
        self.device = device
        self.num_workers = num_workers
        self.subset_size = subset_size
        self.num_classes = num_classes
        per_epoch = len(labels) if subset_size is None else balanced_subset_size(labels, subset_size, num_classes)
        self.batch_size = min(batch_size, per_epoch)
        self.num_batches = per_epoch // self.batch_size if drop_last else math.ceil(per_epoch / self.batch_size)
        self._sampler = _Items()
        self._train_loader: DataLoader | None = None

    def __len__(self) -> int:
        return self.num_batches

    def batches(self, generator: torch.Generator) -> Iterator[Batch]:
        epoch_seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
        rng = np.random.default_rng(epoch_seed)
        if self.subset_size is None:
            order = rng.permutation(len(self.labels))
        else:
            order = class_balanced_subset(self.labels, self.subset_size, self.num_classes, rng)
        order = order[: self.num_batches * self.batch_size]
        seeds = rng.integers(0, 2**63, size=len(order))
        self._sampler.items = list(zip(order.tolist(), seeds.tolist()))
        if self._train_loader is None:
            self._train_loader = image_loader(self.dataset, self._sampler, self.batch_size, self.num_workers, self.device, True)
        for images, index in self._train_loader:
            index = index.to(self.device, non_blocking=True)
            yield Batch(x=images.to(self.device, non_blocking=True), y=self.y[index], index=index)

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        loader = image_loader(self.dataset, range(len(self.labels)), batch_size, self.num_workers, self.device, False)
        for images, index in loader:
            index = index.to(self.device, non_blocking=True)
            yield Batch(x=images.to(self.device, non_blocking=True), y=self.y[index], index=index)


@dataclass
class ClothingEval:
    """The clean validation and test sets, read on demand."""

    val: ImageFiles
    val_labels: torch.Tensor
    test: ImageFiles
    test_labels: torch.Tensor
    batch_size: int
    num_workers: int


class ImageNormalize(nn.Module):
    """uint8 images → floats in [0, 1] → normalised per channel (done on the device)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        return (x - self.mean) / self.std


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the last linear layer of a torchvision classifier (``fc``, ``classifier``, ``heads``,
    ``head``) for a fresh one with ``num_classes`` outputs."""
    for attr in ("fc", "classifier", "heads", "head"):
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Linear(head.in_features, num_classes))
            return model
        if isinstance(head, nn.Sequential) and isinstance(head[-1], nn.Linear):
            head[-1] = nn.Linear(head[-1].in_features, num_classes)
            return model
    raise ValueError(f"cannot find the classification head of {type(model).__name__} (looked for fc, classifier, heads, head)")


def accuracy(model: nn.Module, files: ImageFiles, labels: torch.Tensor, splits: ClothingEval, device: torch.device) -> float:
    loader = image_loader(files, range(len(files)), splits.batch_size, splits.num_workers, device, False)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for images, index in loader:
        predicted = model(images.to(device, non_blocking=True)).argmax(1)
        correct += (predicted == labels[index.to(device)]).sum()
    return correct.item() / len(files)
