"""DM: derivative manipulation (Wang et al.), the one implementation behind ``dm``, ``gr`` and ``imae``.

DM prescribes each example's weight w_i = w(p_y) and rescales the gradient to it:
∇_z ℓ_i = w_i/(2(1 − p_y) + ε)·(p − e_y), with w_i held constant, then divides the batch gradient
by Σ_j w_j, the sum of the raw weights (derivative normalisation, as the authors' code does;
``normalize = "mean"`` divides by the batch size instead). Weight families (DM paper Eqs. 9–12):

* ``gr``: w = exp(β·p^λ·(1 − p)), emphasis mode ψ = λ/(λ + 1) for β > 0 (GR's and DM's main
  variant; IMAE is λ = 1, β = T). β < 0 inverts the curve (DM's IMDB settings).
* ``normal``: w = exp(−β·p(p − 2ψ)) ∝ exp(−β(p − ψ)²).
* ``exponential``: w = exp(β(1 − p)) (= ``gr`` with λ = 0).
* ``beta``: w = p^(α−1)(1 − p)^(η−1); (α, η) = (1, 2) is CCE's weighting, (2, 2) MAE's, (2, 3)
  MSE's, (q + 1, 2) GCE's. α, η ≥ 1 keeps w bounded.

``eps``: the authors' code computes w/(2(1 − p_y) + ε) with ε = 1e-8, and that ε is load-bearing.
Unless w(1) = 0, the papers' exact gradient keeps unit-L1 direction however well an example is fit
(the implied loss ∫ w/(2p(1 − p)) dp is unbounded), so without weight decay the logits grow until
training collapses (GR on ``digits`` at 40% noise: best 94.7%, then 10% from epoch ~25); ε makes
an example's gradient vanish once 1 − p_y ≪ ε. ε stays inside each example's coefficient while
``batch_sum`` divides by Σ w (``benchsuite_plugins.methods.weighting``), so a batch whose examples are all fitted
gets a vanishing gradient: its L1 mass is Σ w_i·sat_i / Σ w_j with
sat = 2(1 − p_y)/(2(1 − p_y) + ε), 1.7e-4 at a logit margin of 30 (10 classes). Dividing by the sum
of the saturated weights instead, as this suite did before, renormalises such a batch back to a
mass of 1 and keeps pushing it. ``eps = 0`` is the papers' formula.

GR and DM report the same runs (GR Tables 3, 7 = DM Tables 10, 6), so ``gr`` is ``dm`` with the
``gr`` family and GR's presets; ``imae`` is ``dm`` with λ = 1, β = T. The presets below are the
papers' settings (tables as numbered in the papers' submitted versions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from benchsuite import Canonical, Param, ParameterError, Preset, hookimpl
from benchsuite_plugins.methods.weighting import NORMALIZE, DerivativeLoss, TargetProbs

if TYPE_CHECKING:
    import torch

#: The parameters each family uses.
FAMILIES: dict[str, tuple[str, ...]] = {
    "gr": ("beta", "lam"),
    "normal": ("beta", "psi"),
    "exponential": ("beta",),
    "beta": ("alpha", "eta"),
}

BETA_DOC = "emphasis variance β (larger: more contrast between examples; negative inverts the curve)"
#: |β| ≤ 64 keeps every weight, and a batch sum of them, finite in float32 (e^64 ≈ 6e27).
BETA_RANGE = {"low": -64.0, "high": 64.0}
LAM = Param(0.5, "emphasis mode λ of the gr family: the weight peaks at p_y = λ/(λ + 1)", low=0.0, high=64.0)
EPS = Param(
    1e-8,
    "ε of the authors' w/(2(1 − p_y) + ε): the gradient vanishes once 1 − p_y << ε; 0 is the papers' exact "
    "formula, whose unbounded push on fitted examples needs weight decay",
    low=0.0, high=1.0,
)


def dm_log_weight(t: TargetProbs, family: str, beta: float = 0.0, lam: float = 0.0, psi: float = 0.5,
                  alpha: float = 1.0, eta: float = 1.0) -> torch.Tensor:
    """log w of a family, from log p_y and log(1 − p_y) (finite for any finite logits)."""
    import torch

    if family == "gr":
        return beta * torch.exp(lam * t.log_p + t.log_q)
    if family == "normal":
        p = t.p
        return -beta * p * (p - 2 * psi)
    if family == "exponential":
        return beta * t.one_minus_p
    if family == "beta":
        return (alpha - 1) * t.log_p + (eta - 1) * t.log_q
    raise ValueError(f"unknown DM family {family!r}; known: {', '.join(FAMILIES)}")


def dm_weight(p: torch.Tensor, family: str, beta: float = 0.0, lam: float = 0.0, psi: float = 0.5,
              alpha: float = 1.0, eta: float = 1.0) -> torch.Tensor:
    """w(p) of a family, the papers' formulas in plain arithmetic."""
    import torch

    if family == "gr":
        return torch.exp(beta * p**lam * (1 - p))
    if family == "normal":
        return torch.exp(-beta * p * (p - 2 * psi))
    if family == "exponential":
        return torch.exp(beta * (1 - p))
    if family == "beta":
        return p ** (alpha - 1) * (1 - p) ** (eta - 1)
    raise ValueError(f"unknown DM family {family!r}; known: {', '.join(FAMILIES)}")


#: CIFAR-10, ResNet-56, symmetric noise: the (λ, β) of the best final test accuracy per noise rate.
CIFAR10_SYMMETRIC = {20: (0.5, 12.0, 87.8), 40: (1.0, 16.0, 83.3), 60: (2.0, 12.0, 72.5), 80: (2.0, 12.0, 32.8)}


def cifar10_presets(table: str) -> dict[str, Preset]:
    """The per-noise-rate CIFAR-10 settings, citing ``table``; plus the clean setting (GR Table 2)."""
    presets = {
        "cifar10_clean": Preset(
            {"lam": 0.0, "beta": 2.0},
            source="GR paper Table 2 (clean CIFAR-10, ResNet-20/56: λ = 0 with β fixed to 2); "
            "DM §4.1 (λ = 0 on clean data)",
        )
    }
    for rate, (lam, beta, final) in CIFAR10_SYMMETRIC.items():
        presets[f"cifar10_sym{rate}"] = Preset(
            {"lam": lam, "beta": beta},
            source=f"{table}: CIFAR-10, ResNet-56, {rate}% symmetric noise, best final test accuracy {final}%",
        )
    return presets


class DM(DerivativeLoss):
    name = "dm"
    summary = "derivative manipulation: gradient rescaled to a chosen weight w(p_y), derivative-normalised"
    parameters = {
        "beta": Param(8.0, BETA_DOC, **BETA_RANGE),
        "lam": LAM,
        "family": Param("gr", "weight family: gr exp(β p^λ (1−p)), normal, exponential or beta", choices=tuple(FAMILIES)),
        "psi": Param(0.5, "emphasis mode ψ of the normal family", low=0.0, high=1.0),
        "alpha": Param(2.0, "α of the beta family, w = p^(α−1)(1−p)^(η−1)", low=1.0, high=64.0),
        "eta": Param(2.0, "η of the beta family, w = p^(α−1)(1−p)^(η−1)", low=1.0, high=64.0),
        "eps": EPS,
        "normalize": NORMALIZE,
    }
    presets = {
        **cifar10_presets("DM paper Table 10"),
        "cifar100": Preset(
            {"lam": 0.5, "beta": 8.0},
            source="DM paper Table 7 and App. D (CIFAR-100, ResNet-44, r = 40%: β = 8, λ = 0.5 fixed)",
        ),
        "clothing1m": Preset({"lam": 1.0, "beta": 2.0}, source="DM paper §4.2.3 (Clothing1M, ResNet-50: λ = 1, β = 2)"),
        "imdb_noise0": Preset({"lam": 0.0, "beta": 0.9}, source="DM paper App. E.1 (IMDB, clean labels: λ = 0, β = 0.9)"),
        "imdb_noise20": Preset({"lam": 0.0, "beta": -0.52}, source="DM paper App. E.1 (IMDB, r = 0.2: λ = 0, β = −0.52)"),
        "imdb_noise40": Preset({"lam": 0.0, "beta": -0.33}, source="DM paper App. E.1 (IMDB, r = 0.4: λ = 0, β = −0.33)"),
        "imdb_imbalance": Preset(
            {"lam": 0.3, "beta": 6.5}, source="DM paper App. E.2 (IMDB, P:N 10:1 and 50:1: λ = 0.3, β = 6.5)"
        ),
    }

    def __init__(self, preset: str | None = None, **values: Any) -> None:
        super().__init__(preset, **values)
        family = self.family_params()["family"]
        for name in ("beta", "lam", "psi", "alpha", "eta"):
            if name in self.config and name not in FAMILIES[family] and self.config[name] != self.parameters[name].default:
                raise ParameterError(
                    f"{self.name}: parameter {name!r} = {self.config[name]!r} has no effect with family {family!r}, "
                    f"which uses {', '.join(FAMILIES[family])}; drop it or choose a family that uses it"
                )

    def family_params(self) -> dict[str, Any]:
        """The weight family and its parameters (subclasses fix some of them)."""
        names = ("family", "beta", "lam", "psi", "alpha", "eta")
        return {name: self.config[name] for name in names}

    def canonical(self) -> Canonical:
        """``gr`` and ``imae`` are ``dm`` with one weight family: equal weightings are one cell."""
        family = self.family_params()
        shared = {k: v for k, v in self.identity_config().items() if k in DM.parameters and k not in family}
        return Canonical(DM, DM(**shared, **family).identity_config())

    def log_weight(self, t: TargetProbs) -> torch.Tensor:
        return dm_log_weight(t, **self.family_params())

    def weight(self, p: torch.Tensor) -> torch.Tensor:
        return dm_weight(p, **self.family_params())


@hookimpl
def register_methods(register):
    register(DM)
