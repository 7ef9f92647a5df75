"""A small reader of the official CIFAR-10/100 python-pickle releases.

Why our own: torchvision's loader checks the MD5 of every file (so it cannot read test fixtures)
and never exposes CIFAR-100's coarse labels, which the true-superclass noise and Vehicles-10 need.

Layouts (as in the official archives)::

    ROOT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    ROOT/cifar-100-python/{train, test, meta}

Each data file is a pickled dict: ``data`` (uint8, N × 3072, the R, G, B planes of a 32×32 image
one after the other), ``labels`` (CIFAR-10) or ``fine_labels`` and ``coarse_labels``
(CIFAR-100). Unpickling is restricted to plain containers and numpy arrays, so a file from
elsewhere cannot run code.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np

from benchsuite.toolkit.datasets import DatasetError

Which = Literal["cifar10", "cifar100"]


@dataclass(frozen=True)
class Release:
    title: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int
    archive: str
    url: str
    md5: str


RELEASES: dict[str, Release] = {
    "cifar10": Release(
        "CIFAR-10",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
        "labels",
        "label_names",
        10,
        "cifar-10-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": Release(
        "CIFAR-100",
        "cifar-100-python",
        ("train",),
        "test",
        "meta",
        "fine_labels",
        "fine_label_names",
        100,
        "cifar-100-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
    ),
}
NUM_COARSE = 20


@dataclass(frozen=True)
class CifarData:
    """One release in memory. Images are uint8 (N, 3, 32, 32); labels int64.

    For CIFAR-100, ``coarse_of[f]`` is the superclass of fine class ``f`` (from the pickles'
    ``coarse_labels``) and ``coarse_names`` the 20 superclass names; both ``None`` for CIFAR-10.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    coarse_of: np.ndarray | None = None
    coarse_names: tuple[str, ...] | None = None


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only what the CIFAR files hold: containers, strings, numbers, numpy arrays."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy") and name == "_reconstruct":
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own, wherever it lives
        return super().find_class(module, name)


def how_to_get(which: Which, root: str | Path | None = None) -> str:
    release = RELEASES[which]
    where = f"into {root}" if root is not None else "into a folder and set root to it"
    return (
        f"download {release.url} and extract it {where} (so that {release.folder}/ sits inside root), "
        "or set download = true to fetch it with torchvision (needs network)"
    )


def release_folder(which: Which, root: str | Path | None, download: bool = False) -> Path:
    """The release's folder under ``root``, downloaded first when asked and missing."""
    release = RELEASES[which]
    if root is None:
        raise DatasetError(
            f"{release.title} needs a data root: set the task parameter root to the folder that contains "
            f"{release.folder}/ (e.g. -t \"{which}{{root = '/data'}}\"); to get the data, {how_to_get(which)}"
        )
    root = Path(root).expanduser()
    folder = root / release.folder
    expected = [*release.train_files, release.test_file, release.meta_file]
    missing = [name for name in expected if not (folder / name).is_file()]
    if missing and download:
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(release.url, download_root=str(root), filename=release.archive, md5=release.md5)
        missing = [name for name in expected if not (folder / name).is_file()]
    if missing:
        hint = ""
        if all((root / name).is_file() for name in expected):
            hint = f" root points inside the release; set root = {str(root.parent)!r} instead."
        raise DatasetError(
            f"no {release.title} at {root}: expected {folder}/ with {', '.join(expected)} "
            f"(missing: {', '.join(missing)}).{hint} To get it, {how_to_get(which, root)}"
        )
    return folder


def _load(path: Path, title: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            content = _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as exc:  # truncated, not a pickle, foreign objects
        raise DatasetError(f"{title} file {path} is not a readable CIFAR pickle ({exc}); re-extract the official archive") from exc
    if not isinstance(content, dict):
        raise DatasetError(f"{title} file {path} holds a {type(content).__name__}, not the dict of the official release")
    return content


def _field(content: dict[str, Any], key: str, path: Path, title: str) -> Any:
    if key not in content:
        raise DatasetError(f"{title} file {path} has no {key!r} entry (it has: {', '.join(map(str, content))})")
    return content[key]


def _read_split(path: Path, release: Release, with_coarse: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    title = release.title
    content = _load(path, title)
    data = np.asarray(_field(content, "data", path, title))
    labels = np.asarray(_field(content, release.label_key, path, title))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"{title} file {path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{title} file {path}: {len(data)} images but {release.label_key!r} has shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= release.num_classes):
        raise DatasetError(f"{title} file {path}: labels outside [0, {release.num_classes})")
    coarse = None
    if with_coarse:
        coarse = np.asarray(_field(content, "coarse_labels", path, title)).astype(np.int64)
        if coarse.shape != labels.shape or (len(coarse) and (coarse.min() < 0 or coarse.max() >= NUM_COARSE)):
            raise DatasetError(f"{title} file {path}: 'coarse_labels' must be {len(labels)} ints in [0, {NUM_COARSE})")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64), coarse


def _coarse_map(fine: np.ndarray, coarse: np.ndarray, folder: Path) -> np.ndarray:
    """Superclass of every fine class; each fine class must belong to exactly one superclass."""
    coarse_of = np.full(RELEASES["cifar100"].num_classes, -1, dtype=np.int64)
    pairs = np.unique(np.stack([fine, coarse], axis=1), axis=0)
    fine_ids, counts = np.unique(pairs[:, 0], return_counts=True)
    if (counts > 1).any():
        raise DatasetError(f"CIFAR-100 at {folder}: fine classes {fine_ids[counts > 1].tolist()} have several coarse labels")
    coarse_of[pairs[:, 0]] = pairs[:, 1]
    if (coarse_of < 0).any():
        raise DatasetError(f"CIFAR-100 at {folder}: fine classes {np.flatnonzero(coarse_of < 0).tolist()} never appear")
    return coarse_of


def _names(folder: Path, release: Release, key: str, count: int) -> tuple[str, ...]:
    path = folder / release.meta_file
    names = _field(_load(path, release.title), key, path, release.title)
    if not isinstance(names, list) or len(names) != count:
        raise DatasetError(f"{release.title} file {path}: {key!r} must list {count} names")
    return tuple(str(n) for n in names)


def read_cifar(which: Which, root: str | Path | None, download: bool = False) -> CifarData:
    """Read a release from ``root`` (cached per process by resolved path)."""
    folder = release_folder(which, root, download)
    return _read_folder(which, folder.resolve())


@lru_cache(maxsize=2)
def _read_folder(which: Which, folder: Path) -> CifarData:
    release = RELEASES[which]
    with_coarse = which == "cifar100"
    parts = [_read_split(folder / name, release, with_coarse) for name in release.train_files]
    x_test, y_test, coarse_test = _read_split(folder / release.test_file, release, with_coarse)
    y_train = np.concatenate([p[1] for p in parts])
    data = CifarData(
        x_train=np.concatenate([p[0] for p in parts]),
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=_names(folder, release, release.names_key, release.num_classes),
    )
    if not with_coarse:
        return data
    coarse_train = np.concatenate([p[2] for p in parts])
    coarse_of = _coarse_map(np.concatenate([y_train, y_test]), np.concatenate([coarse_train, coarse_test]), folder)
    return replace(data, coarse_of=coarse_of, coarse_names=_names(folder, release, "coarse_label_names", NUM_COARSE))
