"""ELR: the regulariser and its gradient, the targets as an EMA of the predictions, end to end."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import benchsuite
from benchsuite.engine import train
from benchsuite_plugins.methods.elr import ELR, elr_example_gradient, elr_loss
from step_harness import CPU, spec_for


def test_elr_loss_on_a_hand_computed_example():
    """logits (log 2, 0, 0): p = (½, ¼, ¼); t = (0.6, 0.2, 0.2): ⟨t, p⟩ = 0.4;
    loss = CE + λ log(1 − 0.4) = log 2 + 3 log 0.6."""
    logits = torch.tensor([[math.log(2.0), 0.0, 0.0]], dtype=torch.float64)
    targets = torch.tensor([[0.6, 0.2, 0.2]], dtype=torch.float64)
    got = elr_loss(logits, torch.tensor([0]), targets, lam=3.0)
    assert got.item() == pytest.approx(math.log(2.0) + 3 * math.log(0.6), rel=1e-12)


def test_example_gradient_matches_autograd_including_clamped_probabilities():
    """Closed form against autograd of the per-example loss (float64), on logits whose softmax
    has entries beyond the clamp (p < 10⁻⁴ and p > 1 − 10⁻⁴) where no gradient may flow."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 5, generator=gen, dtype=torch.float64) * 3
    logits[:8, 0] += 15.0  # p_0 > 1 − 1e-4 and the others < 1e-4
    labels = torch.randint(5, (64,), generator=gen)
    targets = torch.rand(64, 5, generator=gen, dtype=torch.float64)
    targets = 0.9 * targets / targets.sum(1, keepdim=True)
    assert (logits.softmax(1) < 1e-4).any() and (logits.softmax(1) > 1 - 1e-4).any()
    z = logits.clone().requires_grad_()
    (grad,) = torch.autograd.grad(elr_loss(z, labels, targets, 3.0) * len(z), z)  # undo the batch mean
    torch.testing.assert_close(elr_example_gradient(logits, labels, targets, 3.0), grad, rtol=1e-10, atol=1e-12)


class RecordingELR(ELR):
    """Keeps every step's batch indices and logits (the predictions the targets average)."""

    def start(self, ctx):
        super().start(ctx)
        self.log: list[tuple[torch.Tensor, torch.Tensor]] = []

    def train_step(self, ctx, batch):
        out = super().train_step(ctx, batch)
        self.log.append((batch.index.clone(), out.logits.clone()))
        return out


def test_targets_are_the_ema_of_the_clamped_predictions():
    """Replaying t ← β t + (1 − β) p̂/Σp̂ over the recorded steps (p̂ the clamped softmax of each
    step's logits) from zero gives the method's targets after 5 epochs, visits in any order."""
    task = benchsuite.load_task("digits")
    method = RecordingELR(beta=0.7)
    record = train(method, task, spec_for(method, task, 0.4, epochs=5), CPU)
    assert record.status == "completed"
    expected = torch.zeros(1347, 10, dtype=torch.float64)
    for index, logits in method.log:
        p = logits.double().softmax(1).clamp(1e-4, 1 - 1e-4)
        expected[index] = 0.7 * expected[index] + 0.3 * p / p.sum(1, keepdim=True)
    assert method.targets.shape == expected.shape
    torch.testing.assert_close(method.targets.double(), expected, rtol=1e-5, atol=1e-6)
    visits = torch.bincount(torch.cat([index for index, _ in method.log]), minlength=1347)
    assert visits.max() == 5 and (visits >= 4).float().mean() > 0.95  # drop_last skips a few per epoch


def test_end_to_end_on_digits_targets_correct_the_noise_and_elr_beats_cce():
    """40% symmetric noise, the default budget: the targets of most noisy examples point at the
    true class, the weights are the gradient norms, and ELR ends far above cross entropy."""
    task = benchsuite.load_task("digits")
    method = ELR()
    record = train(method, task, spec_for(method, task, 0.4), CPU)
    last = record.curves[-1]
    assert last["elr_target_true_noisy"] > 0.9 and last["elr_target_true_clean"] > 0.95
    assert 0.0 < last["weight_focus"] < 1.0
    cce = benchsuite.load_method("cce")
    baseline = train(cce, task, spec_for(cce, task, 0.4), CPU)
    assert last["test_acc"] > baseline.curves[-1]["test_acc"] + 0.1


def test_weights_are_the_l1_norms_of_the_example_gradients():
    logits = torch.randn(16, 4, generator=torch.Generator().manual_seed(3))
    labels = torch.arange(16) % 4
    targets = F.softmax(torch.randn(16, 4, generator=torch.Generator().manual_seed(4)), 1)
    grad = elr_example_gradient(logits, labels, targets, 3.0)
    # Without the regulariser the weight is cross entropy's 2(1 − p_y).
    plain = elr_example_gradient(logits, labels, targets, 0.0).abs().sum(1)
    torch.testing.assert_close(plain, 2 * (1 - logits.softmax(1)[torch.arange(16), labels]))
    assert not torch.allclose(grad.abs().sum(1), plain)
