"""The shipped contract checks, run on every built-in method and on a toy third-party method."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F

import benchsuite
from benchsuite import LossMethod, LossOutput, Param, Preset, hookimpl
from benchsuite.testing import (
    check_batch_behaviour,
    check_gradient,
    check_method,
    check_parameter_ranges,
    check_weights,
    parametrize_with_method_checks,
)

BUILTINS = ["cce", "cce_dn", "mae", "mae_dn", "mse", "mse_dn", "gce", "gce_dn", "gce_truncated", "sl", "dm", "gr", "imae"]


class LabelSmoothing(LossMethod):
    """A third-party loss that is not a function of p_y alone: CE against (1 − ε)·e_y + ε/C."""

    name = "toy_label_smoothing"
    summary = "cross entropy with label smoothing (toy third-party plugin)"
    parameters = {"eps": Param(0.1, "smoothing mass spread over all classes", low=0.0, high=1.0, high_open=True)}
    presets = {"inception": Preset({"eps": 0.1}, source="Szegedy et al. 2016, §7")}

    def _targets(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        c = logits.shape[1]
        return (1 - self.eps) * F.one_hot(targets, c).to(logits.dtype) + self.eps / c

    def compute(self, logits: torch.Tensor, targets: torch.Tensor) -> LossOutput:
        log_p = logits.float().log_softmax(1) if logits.dtype == torch.bfloat16 else logits.log_softmax(1)
        t = self._targets(log_p, targets)
        weights = (log_p.detach().exp() - t).abs().sum(1)
        return LossOutput(-(t * log_p).sum(1).mean(), weights)

    def example_gradient(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return logits.softmax(1) - self._targets(logits, targets)


toy_plugin = types.ModuleType("toy_plugin")
toy_plugin.register_methods = hookimpl(lambda register: register(LabelSmoothing))


NON_DEFAULT = [
    benchsuite.load_method("mae", preset="l1"),
    benchsuite.load_method("mse", form="reduced"),
    benchsuite.load_method("gce", q=0.3),
    benchsuite.load_method("sl", preset="paper"),
    benchsuite.load_method("dm", family="normal", psi=0.3, beta=6.0),
    benchsuite.load_method("dm", family="exponential", beta=-2.0),
    benchsuite.load_method("dm", family="beta", alpha=1.7, eta=2.5),
    benchsuite.load_method("dm", normalize="mean"),
    benchsuite.load_method("imae", T=16.0, normalize="mean"),
    benchsuite.load_method("gr", preset="cifar10_sym40"),
]


@parametrize_with_method_checks(BUILTINS + NON_DEFAULT + [LabelSmoothing])
def test_method_contract(method, check):
    check(method)


def test_every_builtin_method_is_checked_and_in_the_default_grid():
    assert set(BUILTINS) <= set(benchsuite.list_methods())
    for name in BUILTINS:
        assert benchsuite.load_method(name).in_default_grid


def test_toy_plugin_registers_through_the_host_and_passes(benchsuite_host):
    assert benchsuite_host.add_plugin(toy_plugin, "toy_plugin"), benchsuite_host.failed
    method = benchsuite.load_method("toy_label_smoothing", eps=0.2)
    skipped = check_method(method)
    assert skipped == ["check_fitted_batch: toy_label_smoothing does not normalise by weight (batch_reduction = 'mean')"]


# -- the checks can fail -------------------------------------------------------------------------


class WrongScale(LabelSmoothing):
    """Declares ``mean`` but sums over the batch."""

    name = "toy_wrong_scale"

    def compute(self, logits, targets):
        out = super().compute(logits, targets)
        return LossOutput(out.loss * len(targets), out.weights)


class WeightsNotDetached(LabelSmoothing):
    name = "toy_weights_attached"

    def compute(self, logits, targets):
        log_p = logits.log_softmax(1)
        t = self._targets(log_p, targets)
        w = (log_p.exp() - t).abs().sum(1)  # carries a gradient
        return LossOutput(-(t * log_p).sum(1).mean(), w)


class GradientThroughWeights(LossMethod):
    """A 'rescaled' loss whose weight is not detached: the gradient is not the declared one."""

    name = "toy_leaky_rescaling"
    summary = "GCE-like rescaling with the weight left attached (wrong on purpose)"

    def compute(self, logits, targets):
        ce = F.cross_entropy(logits, targets, reduction="none")
        p_y = torch.exp(-ce)
        return LossOutput((p_y**0.7 * ce).mean())

    def example_gradient(self, logits, targets):
        p = logits.softmax(1)
        p_y = p.gather(1, targets[:, None])
        return p_y**0.7 * (p - F.one_hot(targets, p.shape[1]).to(p.dtype))


@pytest.mark.parametrize(
    "method, check, message",
    [
        (WrongScale(), check_gradient, "autograd gradient of loss"),
        (WrongScale(), check_batch_behaviour, "duplicating the batch"),
        (WeightsNotDetached(), check_weights, "detached"),
        (GradientThroughWeights(), check_gradient, "autograd gradient of loss"),
    ],
)
def test_checks_catch_broken_methods(method, check, message):
    with pytest.raises(AssertionError, match=message):
        check(method)


def test_parameter_check_catches_a_range_the_method_does_not_enforce():
    class Sloppy(LabelSmoothing):
        name = "toy_sloppy"
        parameters = {"eps": Param(0.1, "smoothing", low=0.0, high=1.0)}

        def __init__(self, preset=None, **values):  # bypasses validation of eps
            values.pop("eps", None)
            super().__init__(preset, **values)

    with pytest.raises(AssertionError, match="accepted"):
        check_parameter_ranges(Sloppy())
