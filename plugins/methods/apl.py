"""APL's NCE+RCE: normalised cross entropy plus reverse cross entropy (Ma, Huang, Wang, Romano,
Erfani & Bailey, "Normalized loss functions for deep learning with noisy labels", ICML 2020).

An Active Passive Loss pairs an "active" loss, which only raises p_y, with a "passive" one, which
also pushes the other classes down; both are robust, and together they do not underfit:

* NCE = CE(y) / Σ_k CE(k) = log p_y / Σ_k log p_k (the normalisation of §3 makes any loss
  robust to symmetric noise);
* RCE = −Σ_k p_k log e_y[k] with log 0 := A < 0, i.e. −A·(1 − p_y), as in SL.

Loss α·NCE + β·RCE, averaged over the batch. With S = Σ_k −log p_k and L_y = −log p_y, the
gradient per example is α·[(p − e_y)·S − L_y·(C·p − 1)] / S² + β·|A|·p_y·(p − e_y); the reported
weight is its L1 norm. S ≥ C·log C (its minimum, at the uniform p), so nothing divides by zero.

What is implemented: the NCE+RCE member of the APL family with the authors' code's A = ln 1e-4
(the code clips the one-hot label at 1e-4 before the log; SL's paper states A = −4, preset
``paper_A``; the parameter is SL's own declaration), without the code's clamp of p at 1e-7 inside RCE (it zeroes the RCE gradient of
classes below 1e-7, a difference of at most 1e-7 per class in the loss). The other APL members
(NFL, NGCE, NMAE, MAE as passive loss) are not offered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchsuite import LossMethod, LossOutput, Param, ParameterError, Preset, hookimpl
from benchsuite_plugins.methods.sl import SL
from benchsuite_plugins.methods.weighting import upcast

if TYPE_CHECKING:
    import torch

_APL = "HanxunH/Active-Passive-Losses configs"


class NCEandRCE(LossMethod):
    name = "nce_rce"
    summary = "APL: α·normalised CE + β·reverse CE (Ma et al. 2020)"
    in_default_grid = False
    parameters = {
        "alpha": Param(1.0, "α: weight of the normalised cross entropy (active loss)", low=0.0),
        "beta": Param(1.0, "β: weight of the reverse cross entropy (passive loss)", low=0.0),
        "log_zero": SL.parameters["log_zero"],  # the same reverse cross entropy as SL's
    }
    presets = {
        "mnist": Preset({"alpha": 1.0, "beta": 10.0}, source=f"APL, MNIST: {_APL}/mnist/{{sym,asym}}/nce+rce.yaml"),
        "cifar10": Preset({"alpha": 1.0, "beta": 1.0}, source=f"APL, CIFAR-10: {_APL}/cifar10/{{sym,asym}}/nce+rce.yaml"),
        "cifar100": Preset({"alpha": 10.0, "beta": 0.1}, source=f"APL, CIFAR-100: {_APL}/cifar100/{{sym,asym}}/nce+rce.yaml"),
        "webvision_mini": Preset({"alpha": 50.0, "beta": 0.1}, source=f"APL, WebVision-mini: {_APL}/webvision_mini/nce+rce.yaml"),
        "paper_A": Preset(
            {"log_zero": -4.0}, source="SL paper (Wang et al. 2019): the RCE's A = −4 as stated there (APL's code clips at 1e-4)",
            doc="the RCE gradient is 2.3× smaller than with the code's A = ln 1e-4",
        ),
    }

    def __init__(self, preset: str | None = None, **values) -> None:
        super().__init__(preset, **values)
        if self.alpha == 0 and self.beta == 0:
            raise ParameterError("nce_rce: alpha and beta are both 0, so the loss is 0 and nothing trains; set one > 0")

    def compute(self, logits: torch.Tensor, targets: torch.Tensor) -> LossOutput:
        import torch

        log_p = upcast(logits).log_softmax(1)
        log_p_y = log_p.gather(1, targets[:, None]).squeeze(1)
        nce = log_p_y / log_p.sum(1)
        rce = -self.log_zero * -torch.expm1(log_p_y)  # −A·(1 − p_y), accurate as p_y → 1
        with torch.no_grad():
            weights = self.example_gradient(logits.detach(), targets).abs().sum(1)
        return LossOutput((self.alpha * nce + self.beta * rce).mean(), weights)

    def example_gradient(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        log_p = upcast(logits).log_softmax(1)
        p = log_p.exp()
        classes = p.shape[1]
        onehot = F.one_hot(targets, classes).to(p.dtype)
        total = -log_p.sum(1, keepdim=True)  # S
        own = -log_p.gather(1, targets[:, None])  # L_y
        nce = ((p - onehot) * total - own * (classes * p - 1)) / total.square()
        rce = -self.log_zero * own.neg().exp() * (p - onehot)
        return self.alpha * nce + self.beta * rce


@hookimpl
def register_methods(register):
    register(NCEandRCE)
