"""DivideMix's predictor: both networks as one module, in a module of its own so that loading the
plugin (an ``nn.Module`` subclass needs torch to be defined) imports no torch; ``DivideMix.start``
imports it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class PairEnsemble(nn.Module):
    """Both networks as one model: logits summed; embeddings L2-normalised and concatenated."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.first(x) + self.second(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        parts = [F.normalize(net.embed(x).float(), dim=1) for net in (self.first, self.second)]
        return torch.cat(parts, 1) / np.sqrt(2.0)
