"""IMAE: improved MAE (Wang et al., arXiv 1903.12141) — MAE's gradient rescaled to the weight
w = exp(T·p_y(1 − p_y)), which is exactly DM's ``gr`` family with λ = 1, β = T (IMAE Eqs. 21–22).
T sets the weight variance under p ~ U(0, 1): T = 8 gives 4.546, against MAE's 0.089 (IMAE
Table 4). Same gradient and normalisation as ``dm``.
"""

from __future__ import annotations

from typing import Any

from benchsuite import Param, Preset, hookimpl
from benchsuite_plugins.methods.dm import DM, EPS
from benchsuite_plugins.methods.weighting import NORMALIZE


class IMAE(DM):
    name = "imae"
    summary = "improved MAE: weight exp(T p_y (1 − p_y)) (= dm with λ = 1, β = T), derivative-normalised"
    parameters = {
        "T": Param(8.0, "weight variance: w = exp(T·p_y(1 − p_y)) ranges over [1, e^(T/4)]", low=0.0, high=64.0),
        "eps": EPS,
        "normalize": NORMALIZE,
    }
    presets = {
        "noisy": Preset({"T": 8.0}, source="IMAE paper §5: T = 8 fixed on noisy training sets (the default)"),
        "clean": Preset({"T": 0.5}, source="IMAE paper §5: T = 0.5 fixed on clean training sets"),
        "clothing1m": Preset(
            {"T": 8.0}, source="IMAE rebuttal Table A (Clothing1M: T = 8 and T = 16 both 72.9%); IMAE §5 noisy default"
        ),
    }

    def family_params(self) -> dict[str, Any]:
        return {"family": "gr", "beta": self.T, "lam": 1.0}


@hookimpl
def register_methods(register):
    register(IMAE)
