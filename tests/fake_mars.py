"""A tiny MARS release on disk, in the official layout (for the mars task's tests).

Identities are colour-coded (each id a distinct colour, each camera a slight tint, each frame a
little noise), so that even an untrained CNN retrieves them; tracklets are a few 256×128 JPEGs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

TRAIN = {1: [1, 2], 3: [1, 3], 5: [2, 3], 7: [1, 2]}  # training pid -> cameras (one tracklet each)
# Test rows: pid, camera. Junk (-1) first, then distractors (0), then the ids, as in the release.
TEST = [(-1, 1), (-1, 2), (0, 1), (0, 3), (2, 1), (2, 2), (2, 2), (4, 1), (4, 3), (6, 2), (6, 3), (6, 3), (8, 1), (8, 1)]
QUERIES = [4, 5, 7, 8, 9, 10, 12]  # 0-based rows: one per (id, camera); id 8 has one camera only
COLOURS = {p: c for p, c in zip(range(1, 9), [(220, 30, 30), (30, 200, 30), (30, 30, 220), (220, 220, 30),
                                              (200, 30, 200), (30, 200, 200), (240, 240, 240), (110, 60, 10)])}


@dataclass
class FakeMars:
    root: Path
    train_lengths: list[int] = field(default_factory=list)
    test_lengths: list[int] = field(default_factory=list)
    query_rows: list[int] = field(default_factory=lambda: list(QUERIES))


def _frame(pid: int, cam: int, rng: np.random.Generator) -> Image.Image:
    colour = np.array(COLOURS.get(pid, tuple(rng.integers(0, 256, 3))), dtype=np.float64)
    pixels = colour + 12 * cam + rng.normal(0, 8, (256, 128, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _write_split(root: Path, folder: str, rows: list[tuple[int, int]], rng: np.random.Generator) -> tuple[list[str], np.ndarray, list[int]]:
    names, table, lengths = [], [], []
    tracklet_no: dict[int, int] = {}
    for pid, cam in rows:
        tracklet_no[pid] = tracklet_no.get(pid, 0) + 1
        length = int(rng.integers(2, 6))
        ident = "00-1" if pid == -1 else f"{pid:04d}"
        (root / folder / ident).mkdir(parents=True, exist_ok=True)
        first = len(names) + 1
        for f in range(1, length + 1):
            name = f"{ident}C{cam}T{tracklet_no[pid]:04d}F{f:03d}.jpg"
            _frame(pid, cam, rng).save(root / folder / ident / name, quality=90)
            names.append(name)
        table.append((first, len(names), pid, cam))
        lengths.append(length)
    return names, np.array(table, dtype=np.int32), lengths


def make_fake_mars(root: Path, seed: int = 0) -> FakeMars:
    rng = np.random.default_rng(seed)
    fake = FakeMars(root)
    (root / "info").mkdir(parents=True, exist_ok=True)
    train_rows = [(pid, cam) for pid, cams in TRAIN.items() for cam in cams]
    for folder, rows, names_file, mat_file, var in (
        ("bbox_train", train_rows, "train_name.txt", "tracks_train_info.mat", "track_train_info"),
        ("bbox_test", TEST, "test_name.txt", "tracks_test_info.mat", "track_test_info"),
    ):
        names, table, lengths = _write_split(root, folder, rows, rng)
        (root / "info" / names_file).write_bytes("".join(n + "\r\n" for n in names).encode())  # as info_mars.m writes
        savemat(root / "info" / mat_file, {var: table})
        (fake.train_lengths if folder == "bbox_train" else fake.test_lengths).extend(lengths)
    savemat(root / "info" / "query_IDX.mat", {"query_IDX": np.array([QUERIES], dtype=np.uint16) + 1})
    return fake
