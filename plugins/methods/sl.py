"""SL: symmetric cross entropy α·CE + β·RCE (Wang et al., ICCV 2019).

The reverse cross entropy −Σ_k p_k·log e_y[k] needs log 0, which SL defines as a constant A < 0;
for a one-hot label RCE = −A·(1 − p_y). The gradient is (α + β·|A|·p_y)·(p − e_y), the weight
2(1 − p_y)(α + β|A|p_y). The paper states A = −4, but the published code (the authors' Keras
``loss.py`` and APL's ``SCELoss``) clips the label at 1e-4, i.e. A = ln 1e-4 ≈ −9.21, which is
what produced the published numbers: that is the default, and preset ``paper`` uses −4.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from benchsuite import Param, ParameterError, Preset, hookimpl
from benchsuite_plugins.methods.weighting import LOG2, TargetProbLoss, TargetProbs

if TYPE_CHECKING:
    import torch

_SL_CODE = "YisenWang/symmetric_cross_entropy_for_noisy_labels train_models.py"
_APL = "HanxunH/Active-Passive-Losses configs"


class SL(TargetProbLoss):
    name = "sl"
    summary = "symmetric cross entropy α·CE + β·RCE, with log 0 := log_zero"
    parameters = {
        "alpha": Param(0.1, "weight α of the cross entropy", low=0.0),
        "beta": Param(1.0, "weight β of the reverse cross entropy", low=0.0),
        "log_zero": Param(math.log(1e-4), "the constant A taken for log 0 in the reverse cross entropy", high=0.0, high_open=True),
    }
    presets = {
        "mnist": Preset({"alpha": 0.01, "beta": 1.0}, source=f"SL, MNIST: {_SL_CODE} (commented example); {_APL}/mnist/*/sce.yaml"),
        "cifar10": Preset({"alpha": 0.1, "beta": 1.0}, source=f"SL, CIFAR-10: {_SL_CODE}; {_APL}/cifar10/{{sym,asym}}/sce.yaml"),
        "cifar100": Preset({"alpha": 6.0, "beta": 0.1}, source=f"SL, CIFAR-100: {_SL_CODE}; {_APL}/cifar100/*/sce.yaml"),
        "webvision_mini": Preset(
            {"alpha": 10.0, "beta": 1.0}, source=f"APL paper's WebVision-mini setting, not SL's: {_APL}/webvision_mini/sce.yaml"
        ),
        "paper": Preset(
            {"alpha": 0.1, "beta": 1.0, "log_zero": -4.0},
            source="SL paper's stated A = −4 (the code uses ln 1e-4), CIFAR-10 α/β",
            doc="the RCE gradient is 2.3× smaller than with the code's A",
        ),
    }

    def __init__(self, preset: str | None = None, **values) -> None:
        super().__init__(preset, **values)
        if self.alpha == 0 and self.beta == 0:
            raise ParameterError("sl: alpha and beta are both 0, so the loss is 0 and nothing trains; set alpha > 0 or beta > 0")

    def example_loss(self, t: TargetProbs) -> torch.Tensor:
        return self.alpha * -t.log_p + self.beta * -self.log_zero * t.one_minus_p

    def log_weight(self, t: TargetProbs) -> torch.Tensor:
        import torch

        return LOG2 + t.log_q + torch.log(self.alpha + self.beta * -self.log_zero * t.p)

    def weight(self, p: torch.Tensor) -> torch.Tensor:
        return 2 * (1 - p) * (self.alpha + self.beta * abs(self.log_zero) * p)


@hookimpl
def register_methods(register):
    register(SL)
