"""The loss-type baselines of issue 17: bootstrapping (soft, hard), label smoothing, forward correction,
APL's NCE+RCE and mixup. The shipped contract checks, the losses against independent references,
the transition-matrix estimator on known T, mixup's step, and each method end to end on digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import benchsuite
from benchsuite import Metric, PreparedData, Recipe, Task
from benchsuite.engine import TrainContext, train
from benchsuite.spec import CellSpec
from benchsuite.task import PrepareRequest, evaluate_classification, prepare_in_memory
from benchsuite.testing import (
    check_batch_behaviour,
    check_gradient,
    check_weights,
    parametrize_with_method_checks,
)
from benchsuite_plugins.methods.forward import (
    ForwardCorrection,
    RestartedSchedule,
    anchor_transition,
    realised_transition,
    symmetric_transition,
)
from benchsuite_plugins.methods.mixup import Mixup, mix_inputs

NEW = ["bootstrap_soft", "bootstrap_hard", "label_smoothing", "forward", "nce_rce", "mixup"]

NON_DEFAULT = [
    benchsuite.load_method("bootstrap_soft", beta=0.3),
    benchsuite.load_method("bootstrap_hard", beta=0.0),
    benchsuite.load_method("label_smoothing", eps=0.9),
    benchsuite.load_method("forward", transition="symmetric", flip_rate=0.45),
    benchsuite.load_method("nce_rce", alpha=0.0, beta=2.0),
    benchsuite.load_method("nce_rce", alpha=3.0, beta=0.0),
    benchsuite.load_method("mixup", preset="corrupted50"),
]


class MixupPair(Mixup):
    """mixup's two-target loss as a loss of (logits, targets): λ = 0.3 and, as the partner of each
    example, the next class. The permutation and duplication checks hold because the partner is a
    function of the example's own label."""

    name = "mixup_pair"
    LAM = 0.3

    def compute(self, logits, targets):
        return super().compute(logits, targets, mixed_with=(targets + 1) % logits.shape[1], lam=self.LAM)

    def example_gradient(self, logits, targets):
        return super().example_gradient(logits, targets, mixed_with=(targets + 1) % logits.shape[1], lam=self.LAM)


@parametrize_with_method_checks(NEW + NON_DEFAULT + [MixupPair])
def test_loss_method_contract(method, check):
    check(method)


def test_loss_methods_are_one_flag_away_from_the_default_grid():
    for name in NEW:
        assert name in benchsuite.list_methods() and not benchsuite.load_method(name).in_default_grid


# -- the losses against independent references (float64) ----------------------------------------


def batch(n: int = 16, classes: int = 10, seed: int = 0, scale: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, classes, generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g)


def autograd(method, logits, targets):
    z = logits.clone().requires_grad_(True)
    out = method.compute(z, targets)
    (grad,) = torch.autograd.grad(out.loss, z)
    return out, grad


def test_bootstrap_values_follow_reed_et_al():
    logits, y = batch()
    q = logits.softmax(1)
    onehot = F.one_hot(y, 10).double()
    soft = benchsuite.load_method("bootstrap_soft", beta=0.95)
    expected = -((0.95 * onehot + 0.05 * q) * q.log()).sum(1).mean()  # the gradient flows through q
    torch.testing.assert_close(soft.compute(logits, y).loss, expected)
    hard = benchsuite.load_method("bootstrap_hard", beta=0.8)
    predicted = F.one_hot(logits.argmax(1), 10).double()
    torch.testing.assert_close(hard.compute(logits, y).loss, -((0.8 * onehot + 0.2 * predicted) * q.log()).sum(1).mean())
    # β = 1 is plain cross entropy, for both
    for name in ("bootstrap_soft", "bootstrap_hard"):
        torch.testing.assert_close(benchsuite.load_method(name, beta=1.0).compute(logits, y).loss, F.cross_entropy(logits, y))


def test_soft_bootstrap_is_cross_entropy_plus_entropy_minimisation():
    """Its gradient is not β·CE's: the (1 − β)·H(q) term pushes predictions towards confidence."""
    logits, y = batch()
    _, grad = autograd(benchsuite.load_method("bootstrap_soft", beta=0.5), logits, y)
    ce_grad = 0.5 * (logits.softmax(1) - F.one_hot(y, 10).double()) / len(y)
    assert (grad - ce_grad).abs().max() > 1e-3
    entropy = lambda z: -(z.softmax(1) * z.log_softmax(1)).sum(1).mean()
    z = logits.clone().requires_grad_(True)
    (h_grad,) = torch.autograd.grad(entropy(z), z)
    torch.testing.assert_close(grad, ce_grad + 0.5 * h_grad)


def test_label_smoothing_matches_the_smoothed_target():
    logits, y = batch(classes=5)
    target = 0.8 * F.one_hot(y, 5).double() + 0.2 / 5
    out = benchsuite.load_method("label_smoothing", eps=0.2).compute(logits, y)
    torch.testing.assert_close(out.loss, -(target * logits.log_softmax(1)).sum(1).mean())


def test_nce_rce_matches_the_apl_formulas():
    """The APL code's formulas: NCE = −Σ e_y log p / −Σ log p, RCE = −Σ p log clip(e_y, 1e-4)."""
    logits, y = batch(classes=10, scale=1.0)
    log_p = logits.log_softmax(1)
    onehot = F.one_hot(y, 10).double()
    nce = -(onehot * log_p).sum(1) / -log_p.sum(1)
    rce = -(log_p.exp().clamp(1e-7, 1.0) * onehot.clamp(1e-4, 1.0).log()).sum(1)
    for alpha, beta in ((1.0, 1.0), (10.0, 0.1), (50.0, 0.1)):
        method = benchsuite.load_method("nce_rce", alpha=alpha, beta=beta)
        torch.testing.assert_close(method.compute(logits, y).loss, (alpha * nce + beta * rce).mean())


def test_nce_rce_presets_are_the_apl_configs():
    assert benchsuite.load_method("nce_rce", preset="cifar100").config == {"alpha": 10.0, "beta": 0.1, "log_zero": math.log(1e-4)}
    assert benchsuite.load_method("nce_rce", preset="mnist").beta == 10.0


# -- forward correction --------------------------------------------------------------------------


def random_transition(classes: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(classes, classes, generator=g, dtype=torch.float64) + 3 * torch.eye(classes, dtype=torch.float64)
    return t / t.sum(1, keepdim=True)


def test_forward_gradient_with_an_arbitrary_transition_is_the_closed_form():
    t = random_transition(10, 1)
    method = ForwardCorrection()
    method.set_transition(t)
    logits, y = batch(classes=10)
    out, grad = autograd(method, logits, y)
    p = logits.softmax(1)
    noisy = p @ t  # (Tᵀp) per example
    torch.testing.assert_close(out.loss, -noisy.gather(1, y[:, None]).log().mean())
    posterior = p * t[:, y].T / noisy.gather(1, y[:, None])
    torch.testing.assert_close(grad, (p - posterior) / len(y), rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(out.weights, (p - posterior).abs().sum(1))
    check_weights(method)  # the shipped checks that use 10-class batches hold for a fixed 10×10 T
    check_batch_behaviour(method)
    with pytest.raises(ValueError, match="the logits have 2 classes"):  # check_gradient starts at C = 2
        check_gradient(method)


def test_forward_with_the_identity_is_cross_entropy_and_a_bad_matrix_is_refused():
    method = ForwardCorrection()
    method.set_transition(torch.eye(4))
    logits, y = batch(classes=4)
    torch.testing.assert_close(method.compute(logits, y).loss, F.cross_entropy(logits, y))
    with pytest.raises(ValueError, match="rows summing to 1"):
        method.set_transition(torch.ones(3, 3))


def noisy_posteriors(t: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """log p(noisy | x) = log(p(true | x) @ T): a fifth of each class near-pure (p_own > 1 − 1e-4:
    anchors), the rest mixtures of their class with the others (p_own uniform in (0, 1))."""
    classes = len(t)
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(classes, per_class, generator=g, dtype=torch.float64)
    pure = torch.arange(per_class) < per_class // 5
    purity = torch.where(pure, 1 - 1e-4 * u, u).flatten()
    own = torch.arange(classes).repeat_interleave(per_class)
    rest = torch.rand(classes * per_class, classes, generator=g, dtype=torch.float64).scatter(1, own[:, None], 0.0)
    clean = rest / rest.sum(1, keepdim=True) * (1 - purity[:, None])
    clean.scatter_(1, own[:, None], purity[:, None])
    return (clean @ t).log()


@pytest.mark.parametrize("quantile", [1.0, 0.97])
def test_anchor_estimator_recovers_a_known_transition_matrix(quantile):
    t = random_transition(6, 2)
    estimate = anchor_transition(noisy_posteriors(t, per_class=500, seed=3), quantile).exp()
    assert (estimate - t).abs().max() < 1e-3
    torch.testing.assert_close(estimate.sum(1), torch.ones(6, dtype=torch.float64))


def test_anchor_quantile_skips_outliers_above_it():
    """An example predicted with p_0 = 1 although it is no anchor (e.g. memorised) is above the
    97% quantile and is not picked; the argmax estimator picks it."""
    t = random_transition(3, 4)
    log_probs = noisy_posteriors(t, per_class=200, seed=5)
    outlier = torch.tensor([[0.0, -30.0, -30.0]], dtype=torch.float64)  # p = (1, 0, 0)
    log_probs = torch.cat([log_probs, outlier])
    assert (anchor_transition(log_probs, 1.0)[0].exp() - torch.tensor([1.0, 0, 0], dtype=torch.float64)).abs().max() < 1e-9
    assert (anchor_transition(log_probs, 0.97).exp() - t).abs().max() < 0.02


def test_realised_and_symmetric_transitions():
    true = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    noisy = torch.tensor([0, 0, 0, 1, 1, 0, 2])
    t = realised_transition(true, noisy, 4)
    expected = torch.tensor([[0.75, 0.25, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(t, expected)
    s = symmetric_transition(0.4, 5)
    assert s[0, 0] == pytest.approx(0.6) and s[0, 1] == pytest.approx(0.1) and torch.allclose(s.sum(1), torch.ones(5, dtype=torch.float64))


def test_restarted_schedule_runs_the_recipe_once_per_phase():
    recipe = Recipe(epochs=1, batch_size=1, lr=1.0, schedule="multistep", milestones=(0.5,), gamma=0.1)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = RestartedSchedule(optimizer, recipe, total_steps=12, switch=4)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(11):
        schedule.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([1, 1, 0.1, 0.1] + [1] * 4 + [0.1] * 4)


class Blobs(Task):
    """Well separated Gaussian classes: a model fitted to noisy labels predicts, in each blob, the
    noisy-label distribution of its class, i.e. a row of T."""

    name = "blobs"
    num_classes = 4
    input_kind = "vector"
    metrics = {"test_acc": Metric("accuracy")}
    primary_metric = "test_acc"

    def prepare(self, request: PrepareRequest) -> PreparedData:
        rng = np.random.default_rng(11)
        y = np.repeat(np.arange(4), 400)
        x = (6.0 * np.eye(4, 8)[y] + rng.normal(0.0, 1.0, (len(y), 8))).astype(np.float32)
        test = np.arange(len(y)) % 8 == 0
        x_t = torch.from_numpy(x)
        return prepare_in_memory(request, x_t[~test], y[~test], x_t[test], y[test], 4)

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))

    def recipe(self) -> Recipe:
        return Recipe(epochs=16, batch_size=100, lr=0.05, schedule="multistep", milestones=(0.5,))

    def evaluate(self, model: nn.Module, data: PreparedData, device: torch.device) -> dict[str, float]:
        return evaluate_classification(model, data, batch_size=1024)


class RecordingForward(ForwardCorrection):
    """Keeps the initial weights, the step of the switch and the weights the first corrected
    forward runs with."""

    def start(self, ctx: TrainContext) -> None:
        super().start(ctx)
        self.initial = {k: v.clone() for k, v in ctx.model.state_dict().items()}
        self.switched_at, self.restarted = None, None

        def log(module, args):
            if self._log_t is not None and self.restarted is None and torch.is_grad_enabled():
                self.restarted = {k: v.clone() for k, v in module.state_dict().items()}

        ctx.model.register_forward_pre_hook(log)

    def train_step(self, ctx, batch):
        estimated = self._log_t is not None
        out = super().train_step(ctx, batch)
        if not estimated and self._log_t is not None:
            self.switched_at = ctx.step
        return out


def test_forward_estimates_t_within_the_cell_and_retrains_from_scratch():
    method = RecordingForward(warmup=0.25)
    task = Blobs()
    spec = CellSpec("forward", method.identity_config(), "blobs", {}, "symmetric", 0.4, 0, method.version, task.version)
    record = train(method, task, spec, torch.device("cpu"))
    assert record.status == "completed", record.error
    steps = 14 * 16  # 1400 training points, batch 100, 16 epochs
    assert method.switched_at == round(0.25 * steps) == 56
    assert [row["forward_phase"] for row in record.curves] == [0.0] * 4 + [1.0] * 12  # 56 = 4 epochs of 14
    for key, value in method.initial.items():  # a fresh model: the initial weights again
        assert torch.equal(method.restarted[key], value), key
    # T̂ of the warm-up model (measured 0.13 mean row L1 from the realised T; ignoring the noise,
    # T = I, would be 0.8): each diagonal entry within 0.1 of the realised 0.6
    assert record.curves[4]["transition_error"] < 0.15
    assert (method._true_t.diagonal() - 0.6).abs().max() < 0.02
    assert (method._log_t.exp().diagonal() - method._true_t.diagonal()).abs().max() < 0.1
    assert record.final["test_acc"] > 0.95


def test_forward_oracle_uses_the_realised_matrix_from_the_first_step():
    method = ForwardCorrection(transition="oracle")
    task = Blobs()
    spec = CellSpec("forward", method.identity_config(), "blobs", {}, "symmetric", 0.4, 0, method.version, task.version,
                    budget={"epochs": 2})  # fmt: skip
    record = train(method, task, spec, torch.device("cpu"))
    assert record.status == "completed", record.error
    assert record.curves[0]["transition_error"] < 1e-12  # exp(log T) round trip
    assert method.privileged_data() == {"noise_transition": "true T from the clean training labels"}
    assert ForwardCorrection().privileged_data() == {}  # the estimate uses the noisy labels only
    realised = method._log_t.exp()
    assert realised.diagonal().sub(0.6).abs().max() < 0.02 and "forward_phase" not in record.final


# -- mixup ---------------------------------------------------------------------------------------


def test_mix_inputs_keeps_integer_images_integer():
    a = torch.tensor([[0, 255]], dtype=torch.uint8)
    b = torch.tensor([[255, 0]], dtype=torch.uint8)
    assert mix_inputs(a, b, 0.25).tolist() == [[191, 64]] and mix_inputs(a, b, 0.25).dtype == torch.uint8
    torch.testing.assert_close(mix_inputs(torch.ones(2), torch.zeros(2), 0.3), torch.full((2,), 0.3))


class RecordingMixup(Mixup):
    """Logs every draw and every forward that builds a graph."""

    def start(self, ctx: TrainContext) -> None:
        super().start(ctx)
        self.draws, self.inputs, self.batches = [], [], []
        ctx.model.register_forward_pre_hook(lambda m, args: self.inputs.append(args[0].clone()) if torch.is_grad_enabled() else None)

    def draw(self, ctx, size):
        lam, perm = super().draw(ctx, size)
        self.draws.append((lam, perm.clone()))
        return lam, perm

    def train_step(self, ctx, batch):
        self.batches.append(batch.x.clone())
        return super().train_step(ctx, batch)


def test_mixup_trains_on_the_mixed_batch_and_reports_the_unmixed_fit():
    method = RecordingMixup(alpha=0.4)
    task = Blobs()
    spec = CellSpec("mixup", method.identity_config(), "blobs", {}, "symmetric", 0.2, 0, method.version, task.version,
                    budget={"epochs": 2})  # fmt: skip
    record = train(method, task, spec, torch.device("cpu"))
    assert record.status == "completed", record.error
    assert len(method.inputs) == len(method.draws) == 28
    for (lam, perm), x, seen in zip(method.draws, method.batches, method.inputs):
        torch.testing.assert_close(seen, lam * x + (1 - lam) * x[perm])
    lams = np.array([lam for lam, _ in method.draws])
    assert 0 < lams.min() and lams.max() < 1 and lams.std() > 0.1  # Beta(0.4, 0.4) is U-shaped
    assert "noisy_memorised" in record.final and "weight_focus" not in record.final
    # the same seed draws the same λ sequence (from the run's generator)
    again = RecordingMixup(alpha=0.4)
    train(again, task, spec, torch.device("cpu"))
    assert [lam for lam, _ in again.draws] == list(lams)


# -- end to end on digits --------------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW)
def test_loss_method_trains_on_digits(name):
    """Four epochs; twelve for forward, whose T̂ from a one-epoch warm-up is near rank one (every
    row close to the same unfitted prediction), which leaves the corrected loss no signal."""
    method, task = benchsuite.load_method(name), benchsuite.load_task("digits")
    spec = CellSpec(name, method.identity_config(), "digits", task.identity_config(), "symmetric", 0.2, 0,
                    method.version, task.version, budget={"epochs": 12 if name == "forward" else 4})  # fmt: skip
    record = train(method, task, spec, torch.device("cpu"))
    assert record.status == "completed", record.error
    last = record.final
    assert math.isfinite(last["loss"]) and last["test_acc"] > 0.3
    if name != "mixup":
        assert 0 <= last["weight_focus"] <= 1 and last["weight_var"] >= 0
