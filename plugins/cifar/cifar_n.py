"""CIFAR-10N and CIFAR-100N (Wei et al. 2022, ICLR): human re-annotations of the CIFAR training
sets, as noise kinds of the cifar10 and cifar100 tasks.

The release (github.com/UCSC-REAL/cifar-10-100n, ``data/``) ships one file per data set,
``CIFAR-10_human.pt`` and ``CIFAR-100_human.pt``: ``torch.save`` of a dict of numpy arrays, one
entry per training image in the order of the CIFAR python batches. CIFAR-10N holds
``clean_label``, ``aggre_label`` (majority vote of three annotators), ``random_label1``–``3``
(one annotator each) and ``worse_label`` (a wrong one of the three when there is one);
CIFAR-100N holds ``clean_label`` and ``noisy_label`` (fine classes; its coarse labels are
lists). These key names and the pairing with the training order are those of the release's
loader (``data/cifar.py``), which also asserts that ``clean_label`` equals the training labels;
the names of the kinds follow its ``--noise_type`` choices.

The files are read from a path the user gives, never downloaded. ``torch.save`` writes a zip
whose ``<name>/data.pkl`` is a pickle; we unpickle it with the release reader's restricted
unpickler (containers, numbers and numpy arrays only; no persistent ids, so no tensors), so a
file from elsewhere cannot run code, and ``torch`` is not needed to read it.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from benchsuite.noise import GivenLabels, NoiseKind
from benchsuite.toolkit.datasets import DatasetError

from .release import _ArrayUnpickler

RELEASE_URL = "https://github.com/UCSC-REAL/cifar-10-100n"


@dataclass(frozen=True, eq=False)
class HumanLabelRelease:
    """One CIFAR-N file: what it is called, which CIFAR release it annotates, and its label keys.
    (Compared and hashed by identity: there is one of each.)"""

    title: str
    file_name: str
    cifar: str
    num_classes: int
    #: Kind-name prefix (``cifar10n``) and, per variant, the file's key.
    prefix: str
    variants: dict[str, str]
    clean_key: str = "clean_label"

    @property
    def input_name(self) -> str:
        """The noise input under which the task hands the file's labels to the kinds."""
        return f"{self.prefix}_labels"

    def kind_names(self) -> tuple[str, ...]:
        return tuple(f"{self.prefix}:{variant}" for variant in self.variants)

    def noise_kinds(self) -> dict[str, NoiseKind]:
        return {
            f"{self.prefix}:{variant}": GivenLabels(
                source=self.input_name,
                key=key,
                doc=f"{self.title} human labels {key!r} (Wei et al. 2022), from the file given as human_labels",
                inputs={
                    "train_index": "position of every label in the CIFAR training set",
                    self.input_name: f"the arrays of {self.file_name}, checked against the release's training labels",
                },
                num_classes=self.num_classes,
            )
            for variant, key in self.variants.items()
        }


CIFAR10N = HumanLabelRelease(
    "CIFAR-10N",
    "CIFAR-10_human.pt",
    "cifar10",
    10,
    "cifar10n",
    {
        "aggregate": "aggre_label",
        "random1": "random_label1",
        "random2": "random_label2",
        "random3": "random_label3",
        "worst": "worse_label",
    },
)
CIFAR100N = HumanLabelRelease("CIFAR-100N", "CIFAR-100_human.pt", "cifar100", 100, "cifar100n", {"noisy": "noisy_label"})


@dataclass(frozen=True)
class HumanLabels:
    """The label arrays of one CIFAR-N file (int64, one per training image) and its identity."""

    arrays: dict[str, np.ndarray]
    sha256: str

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def noise_rate(self, key: str, clean_key: str = "clean_label") -> float:
        """Fraction of the training images whose ``key`` label differs from the clean one."""
        return float((self.arrays[key] != self.arrays[clean_key]).mean())


def how_to_get(release: HumanLabelRelease) -> str:
    return (
        f"{release.file_name} is in the data/ folder of the CIFAR-N release, {RELEASE_URL}; "
        f"set the task parameter human_labels to its path (benchsuite never downloads it)"
    )


def human_labels_path(release: HumanLabelRelease, path: str | Path | None) -> Path:
    """The file the user gave, or a message that says what to set."""
    if path is None:
        raise DatasetError(f"the {release.title} noise kinds read {release.file_name}: {how_to_get(release)}")
    file = Path(path).expanduser()
    if not file.is_file():
        raise DatasetError(f"no {release.title} file at {file}: {how_to_get(release)}")
    return file


def read_human_labels(release: HumanLabelRelease, path: str | Path | None, clean_train: np.ndarray) -> HumanLabels:
    """The file's labels, refused unless its clean labels are ``clean_train`` (the training labels
    of the CIFAR release the task read). Cached per process by path, size and modification time."""
    file = human_labels_path(release, path).resolve()
    stat = file.stat()
    labels = _read(release, file, stat.st_size, stat.st_mtime_ns)
    clean = labels[release.clean_key]
    if clean.shape != clean_train.shape:
        raise DatasetError(
            f"{file}: {release.clean_key!r} has {len(clean)} labels but the {release.cifar} training set under root "
            f"has {len(clean_train)}: the file does not annotate this release"
        )
    differ = np.flatnonzero(clean != clean_train)
    if len(differ):
        raise DatasetError(
            f"{file}: {release.clean_key!r} differs from the {release.cifar} training labels under root at "
            f"{len(differ)} of {len(clean)} images (first at index {differ[0]}): the file does not annotate this "
            "release, or the release's training batches are not the official ones"
        )
    return labels


@lru_cache(maxsize=4)
def _read(release: HumanLabelRelease, file: Path, size: int, mtime_ns: int) -> HumanLabels:
    raw = file.read_bytes()
    content = _unpickle_torch_zip(raw, file, release)
    if not isinstance(content, dict):
        raise DatasetError(f"{file} holds a {type(content).__name__}, not the dict of the {release.title} release")
    arrays = {}
    for key in (release.clean_key, *release.variants.values()):
        arrays[key] = _label_array(content, key, file, release)
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) != 1:
        raise DatasetError(f"{file}: the label arrays differ in length ({sorted(lengths)})")
    return HumanLabels(arrays, hashlib.sha256(raw).hexdigest())


def _unpickle_torch_zip(raw: bytes, file: Path, release: HumanLabelRelease) -> Any:
    """The object ``torch.save`` wrote to ``file``, unpickled without running foreign code."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile:
        raise DatasetError(
            f"{file} is not a {release.title} file: the release's files are torch zip archives; {how_to_get(release)}"
        ) from None
    pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise DatasetError(f"{file}: expected one <name>/data.pkl in the torch archive, found {pickles or 'none'}")
    try:
        return _ArrayUnpickler(io.BytesIO(archive.read(pickles[0])), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DatasetError(
            f"{file} is not readable as {release.title} labels ({exc}); only dicts of numpy arrays are loaded"
        ) from exc


def _label_array(content: dict[str, Any], key: str, file: Path, release: HumanLabelRelease) -> np.ndarray:
    if key not in content:
        raise DatasetError(f"{file} has no {key!r} entry (it has: {', '.join(map(str, content))}); is it {release.file_name}?")
    array = np.asarray(content[key])
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DatasetError(f"{file}: {key!r} must be a 1-d integer array, got {array.dtype} of shape {array.shape}")
    if len(array) and (array.min() < 0 or array.max() >= release.num_classes):
        raise DatasetError(f"{file}: {key!r} holds labels outside [0, {release.num_classes})")
    return array.astype(np.int64)
