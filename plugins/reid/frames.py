"""The frames of MARS tracklets as a DataLoader reads them, in a module of its own so that loading the
plugin imports no torch (``FrameBatches`` subclasses torch's ``Dataset``); imported when a cell
reads frames."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from benchsuite_plugins.reid.mars import Tracklets


class FrameBatches(Dataset):
    """Item ``i``: the frames at ``lines[i]`` (an int array of any shape), decoded to uint8
    ``(*lines[i].shape, 3, H, W)``. A DataLoader with ``batch_size=None`` decodes whole batches
    in its workers."""

    def __init__(self, tracks: Tracklets, lines: list[np.ndarray], size: tuple[int, int]) -> None:
        self.tracks, self.lines, self.size = tracks, lines, size

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, i: int) -> torch.Tensor:
        lines = self.lines[i]
        frames = [self.tracks.frame(j, self.size) for j in lines.ravel()]
        return torch.stack(frames).view(*lines.shape, 3, *self.size)
