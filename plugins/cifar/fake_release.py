"""Tiny stand-ins for the CIFAR releases, in the official on-disk layout, for tests and dry runs.

The real archives cannot be fetched on an offline machine; these files exercise exactly the code
path of the real ones (same folder, file names, pickle keys and dtypes, real class names and the
real CIFAR-100 fine → coarse table). Each class has its own smooth colour pattern plus pixel
noise, so a network can learn them and a short run shows whether training works.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .cifar_n import CIFAR10N, CIFAR100N
from .release import RELEASES, Which, read_cifar

CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

CIFAR100_FINE_NAMES = tuple(
    """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
    castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
    elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster
    man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck
    pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk
    skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
    tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()
)

CIFAR100_COARSE_NAMES = tuple(
    """aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices
    household_furniture insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes
    large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles small_mammals trees
    vehicles_1 vehicles_2""".split()
)

#: The superclass of each fine class, as the real pickles' coarse_labels give it.
CIFAR100_COARSE_OF_FINE = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)  # fmt: skip


def _images(labels: np.ndarray, patterns: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0, 24, size=(len(labels), 3, 32, 32))
    return np.clip(patterns[labels] + noise, 0, 255).astype(np.uint8).reshape(len(labels), 3 * 32 * 32)


def _dump(path: Path, content: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=2)


def write_fake_cifar(
    root: str | Path, which: Which, train_per_class: int = 5, test_per_class: int = 2, seed: int = 0
) -> Path:
    """Write a tiny ``which`` release under ``root``; returns its folder."""
    release = RELEASES[which]
    rng = np.random.default_rng(seed)
    classes = release.num_classes
    coarse_pattern = rng.uniform(40, 215, size=(classes, 3, 4, 4))
    patterns = np.kron(coarse_pattern, np.ones((8, 8)))  # smooth 32×32 colour blocks per class
    folder = Path(root) / release.folder
    folder.mkdir(parents=True, exist_ok=True)

    def split(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.repeat(np.arange(classes), per_class))
        return labels, _images(labels, patterns, rng)

    train_labels, train_data = split(train_per_class)
    test_labels, test_data = split(test_per_class)
    if which == "cifar10":
        parts = np.array_split(np.arange(len(train_labels)), len(release.train_files))
        for name, idx in zip(release.train_files, parts):
            _dump(folder / name, _cifar10_batch(name, train_data[idx], train_labels[idx]))
        _dump(folder / release.test_file, _cifar10_batch("testing batch 1 of 1", test_data, test_labels))
        _dump(folder / release.meta_file, {"label_names": list(CIFAR10_NAMES), "num_cases_per_batch": 10000, "num_vis": 3072})
        return folder
    coarse_of = np.asarray(CIFAR100_COARSE_OF_FINE)
    for name, labels, data in (("train", train_labels, train_data), ("test", test_labels, test_data)):
        _dump(
            folder / name,
            {
                "filenames": [f"fake_{i}.png" for i in range(len(labels))],
                "batch_label": f"{name}ing batch 1 of 1",
                "fine_labels": labels.tolist(),
                "coarse_labels": coarse_of[labels].tolist(),
                "data": data,
            },
        )
    _dump(folder / release.meta_file, {"fine_label_names": list(CIFAR100_FINE_NAMES), "coarse_label_names": list(CIFAR100_COARSE_NAMES)})
    return folder


def _cifar10_batch(label: str, data: np.ndarray, labels: np.ndarray) -> dict:
    return {
        "batch_label": label,
        "labels": labels.tolist(),
        "data": data,
        "filenames": [f"fake_{i}.png" for i in range(len(labels))],
    }


#: Noise rate of each label key in the fake CIFAR-N files (exact: floor(rate · N) labels change).
FAKE_HUMAN_RATES = {
    "aggre_label": 0.1,
    "random_label1": 0.2,
    "random_label2": 0.2,
    "random_label3": 0.3,
    "worse_label": 0.4,
    "noisy_label": 0.4,
}


def write_fake_cifar_n(path: str | Path, root: str | Path, which: Which, seed: int = 0) -> Path:
    """Write a fake CIFAR-N file at ``path`` over the fake ``which`` release under ``root``, in the
    release's format: ``torch.save`` of a dict of int64 numpy arrays (CIFAR-100N's coarse labels
    as lists), with the keys of the real file. Each noisy key changes exactly floor(rate · N)
    labels (``FAKE_HUMAN_RATES``) to another class, drawn from ``seed``."""
    import torch

    release = CIFAR10N if which == "cifar10" else CIFAR100N
    clean = read_cifar(which, root).y_train
    rng = np.random.default_rng(seed)
    content: dict[str, object] = {release.clean_key: clean.copy()}
    for key in release.variants.values():
        noisy = clean.copy()
        changed = rng.choice(len(clean), size=int(FAKE_HUMAN_RATES[key] * len(clean) + 1e-9), replace=False)
        noisy[changed] = (clean[changed] + rng.integers(1, release.num_classes, size=len(changed))) % release.num_classes
        content[key] = noisy
    if which == "cifar100":
        coarse = np.asarray(CIFAR100_COARSE_OF_FINE)
        content["clean_coarse_label"] = coarse[clean].tolist()
        content["noisy_coarse_label"] = coarse[content["noisy_label"]].tolist()
    path = Path(path)
    torch.save(content, path)
    return path
