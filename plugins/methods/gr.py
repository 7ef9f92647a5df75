"""GR: gradient rescaling (Wang et al., ICLR 2020 submission) — DM's ``gr`` weight family,
w = exp(β·p_y^λ·(1 − p_y)), with the same gradient and normalisation, under its own name and the
GR paper's presets (emphasis focus ψ = λ/(λ + 1), emphasis spread set by β).
"""

from __future__ import annotations

from typing import Any

from benchsuite import Param, Preset, hookimpl
from benchsuite_plugins.methods.dm import BETA_DOC, BETA_RANGE, DM, EPS, LAM, cifar10_presets
from benchsuite_plugins.methods.weighting import NORMALIZE

_CIFAR100 = "GR paper Table 5 (CIFAR-100, ResNet-44"


class GR(DM):
    name = "gr"
    summary = "gradient rescaling: DM with weight exp(β p_y^λ (1 − p_y)), derivative-normalised"
    parameters = {"beta": Param(8.0, BETA_DOC, **BETA_RANGE), "lam": LAM, "eps": EPS, "normalize": NORMALIZE}
    presets = {
        **cifar10_presets("GR paper Table 3"),
        "cifar10_googlenet": Preset(
            {"lam": 0.5, "beta": 8.0}, source="GR paper Table 4 (CIFAR-10, GoogLeNet V1, MentorNet setting, every r)"
        ),
        "cifar100": Preset({"lam": 0.5, "beta": 8.0}, source=f"{_CIFAR100}, fixed β = 8, λ = 0.5 for every r)"),
        "cifar100_sym20": Preset({"lam": 0.3, "beta": 6.0}, source=f"{_CIFAR100}, tuned on validation, r = 20%; Table 12)"),
        "cifar100_sym40": Preset({"lam": 0.4, "beta": 6.0}, source=f"{_CIFAR100}, tuned on validation, r = 40%; Table 12)"),
        "cifar100_sym60": Preset({"lam": 0.5, "beta": 8.0}, source=f"{_CIFAR100}, tuned on validation, r = 60%; Table 12)"),
        "clothing1m": Preset(
            {"lam": 1.0, "beta": 16.0},
            source="GR paper §4.3 (Clothing1M, ResNet-50: λ = 1, β = 16, as for r = 40% in Table 3)",
        ),
    }

    def family_params(self) -> dict[str, Any]:
        return {"family": "gr", "beta": self.beta, "lam": self.lam}


@hookimpl
def register_methods(register):
    register(GR)
