"""CCE: categorical cross entropy, the baseline every robust method is compared with."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchsuite import LossMethod, LossOutput, hookimpl


class CCE(LossMethod):
    """Mean cross entropy over the batch; gradient w.r.t. the logits p − e_y (divided by N)."""

    name = "cce"
    summary = "categorical cross entropy (mean over the batch)"

    def compute(self, logits: torch.Tensor, targets: torch.Tensor) -> LossOutput:
        return LossOutput(F.cross_entropy(logits, targets))


@hookimpl
def register_methods(register):
    register(CCE)
