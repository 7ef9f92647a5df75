"""Time to read a CIFAR-N label file with benchsuite's restricted reader, divided by that of
``torch.load(weights_only=False)`` (the release's own loader, which unpickles anything).

Both read the same file from the page cache, alternately, ``--repeats`` times each in this one
process; the ratio of median times is printed. Our reader also hashes the file (SHA-256, recorded
with each run) and checks the label arrays; the cache of the task is bypassed.

    python benchmarks/cifar_n_load.py PATH/CIFAR-10_human.pt [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from benchsuite_plugins.cifar.cifar_n import CIFAR10N, CIFAR100N, _read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    release = CIFAR100N if "100" in args.path.name else CIFAR10N
    ours, theirs = [], []
    for _ in range(args.repeats):
        _read.cache_clear()
        start = time.perf_counter()
        labels = _read(release, args.path.resolve(), 0, 0)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        torch.load(args.path, weights_only=False)
        theirs.append(time.perf_counter() - start)
    rates = {key: round(labels.noise_rate(key, release.clean_key), 5) for key in release.variants.values()}
    print(f"{release.title} file {args.path.name}: realised noise rates {rates}")
    print(f"restricted reader {statistics.median(ours) * 1e3:.1f} ms, torch.load {statistics.median(theirs) * 1e3:.1f} ms, "
          f"ratio {statistics.median(ours) / statistics.median(theirs):.2f}")


if __name__ == "__main__":
    main()
