"""Time of torchvision's per-sample pad-crop-flip through a DataLoader divided by ours, batched.

Both make one epoch of augmented uint8 batches from the same 50,000 random CIFAR-size images:
torchvision as a CIFAR training script does it (PIL image per sample, ``RandomCrop(32,
padding=4)``, ``RandomHorizontalFlip()``, ``PILToTensor()``, collated by a ``DataLoader``); ours as
the CIFAR tasks do it (shuffle the uint8 tensor, ``random_crop_flip`` per batch). They run
alternately, ``--repeats`` times each, in this one process, with the same thread count; the
ratio of median epoch times is printed. Target: >= 10.

    python benchmarks/augment.py [--images 50000] [--batch-size 128] [--repeats 3] [--threads 1] [--workers 0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from benchsuite.toolkit.augment import random_crop_flip


def ours(images: torch.Tensor, batch_size: int, generator: torch.Generator) -> float:
    tic = time.perf_counter()
    order = torch.randperm(len(images), generator=generator)
    for start in range(0, len(images), batch_size):
        random_crop_flip(images[order[start : start + batch_size]], generator)
    return time.perf_counter() - tic


def torchvision_loader(images_hwc: np.ndarray, batch_size: int, workers: int) -> float:
    from PIL import Image
    from torchvision import transforms

    transform = transforms.Compose(
        [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.PILToTensor()]
    )

    class Images(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(images_hwc)

        def __getitem__(self, i: int) -> torch.Tensor:
            return transform(Image.fromarray(images_hwc[i]))

    loader = torch.utils.data.DataLoader(Images(), batch_size=batch_size, shuffle=True, num_workers=workers)
    tic = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - tic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes for torchvision")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images_hwc = np.random.default_rng(0).integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    images = torch.from_numpy(images_hwc).permute(0, 3, 1, 2).contiguous()
    generator = torch.Generator().manual_seed(0)
    batched, per_sample = [], []
    for _ in range(args.repeats):  # alternate, so that machine noise hits both alike
        batched.append(ours(images, args.batch_size, generator))
        per_sample.append(torchvision_loader(images_hwc, args.batch_size, args.workers))
    b, p = statistics.median(batched), statistics.median(per_sample)
    print(f"images={args.images} batch={args.batch_size} threads={args.threads} workers={args.workers} repeats={args.repeats}")
    print(f"torchvision per-sample + DataLoader: {p:7.3f} s/epoch")
    print(f"benchsuite batched random_crop_flip: {b:7.3f} s/epoch")
    print(f"ratio torchvision/batched: {p / b:.1f}x  (target >= 10)")


if __name__ == "__main__":
    main()
