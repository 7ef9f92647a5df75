"""The methods inside the engine: every built-in trains on digits, the truncated GCE prunes with the
best-on-validation checkpoint, and, over a full budget, CCE memorises where the robust losses do not."""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import benchsuite
from benchsuite.engine import train
from benchsuite.spec import CellSpec
from benchsuite.task import NoiseRecord, PreparedData, Recipe, TensorTrainSource

BUILTINS = ["cce", "cce_dn", "mae", "mae_dn", "mse", "mse_dn", "gce", "gce_dn", "gce_truncated", "sl", "dm", "gr", "imae"]


def run(name: str, epochs: int | None = None, seed: int = 0, rate: float = 0.4, **params):
    method = benchsuite.load_method(name, **params)
    task = benchsuite.load_task("digits")
    spec = CellSpec(
        name, method.identity_config(), "digits", task.identity_config(), "symmetric", rate, seed,
        method.version, task.version, budget={} if epochs is None else {"epochs": epochs},
    )
    return train(method, task, spec, torch.device("cpu"))


@pytest.mark.parametrize("name", BUILTINS)
def test_every_builtin_trains_on_digits_and_reports_its_emphasis(name):
    # two epochs are too few for pruning (it would prune every example after the first epoch)
    record = run(name, epochs=2, **({"prune_start": 1.0} if name == "gce_truncated" else {}))
    assert record.status == "completed", record.error
    last = record.final
    assert math.isfinite(last["loss"]) and 0 <= last["test_acc"] <= 1
    assert 0 <= last["weight_focus"] <= 1 and last["weight_var"] >= 0


# -- truncated GCE -------------------------------------------------------------------------------

X = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
NOISY_LABELS = torch.tensor([0, 1, 1, 0])  # examples 1 and 3 carry a wrong label
TRUE_LABELS = torch.tensor([0, 0, 1, 1])


def linear(scale: float) -> nn.Linear:
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(scale * torch.eye(2))  # scale > 0 predicts the true labels, < 0 the opposite
    return model


def fake_context(epochs: int) -> SimpleNamespace:
    data = PreparedData(
        train=TensorTrainSource(X, NOISY_LABELS, batch_size=2),
        noisy_labels=NOISY_LABELS,
        true_labels=TRUE_LABELS,
        truth_known=torch.ones(4, dtype=torch.bool),
        noise=NoiseRecord("symmetric", 0.5, 0, 0.5, 2),
    )
    return SimpleNamespace(
        model=linear(1.0), data=data, device=torch.device("cpu"), epoch=0, steps_per_epoch=2,
        recipe=Recipe(epochs=epochs, batch_size=2, lr=0.1, eval_batch_size=3), autocast=contextlib.nullcontext,
    )


def test_truncation_refreshes_on_schedule_with_the_best_validation_checkpoint():
    method = benchsuite.load_method("gce_truncated", prune_start=0.5, prune_every=1 / 6)  # 6 epochs: refresh at 3, 4, 5
    ctx = fake_context(epochs=6)
    method.start(ctx)
    history = []
    # epoch 1 fair, 2 best (predicts the true labels confidently), then worse and worse (the opposite)
    for epoch, (scale, val_acc) in enumerate([(0.1, 0.5), (5.0, 0.9), (-5.0, 0.1), (-5.0, 0.2), (-5.0, 0.2), (-5.0, 0.2)], 1):
        ctx.epoch = epoch
        ctx.model.load_state_dict(linear(scale).state_dict())
        history.append(method.end_epoch(ctx, {"val_acc": val_acc, "test_acc": 1.0 - val_acc}))
    assert [h["pruned"] for h in history] == [0.0, 0.0, 0.5, 0.5, 0.5, 0.5]
    # the best checkpoint keeps the two correctly labelled examples and prunes exactly the noisy ones;
    # the current (last) model would have pruned the clean ones instead
    assert history[2]["pruned_noisy"] == 1.0 and history[2]["noisy_pruned"] == 1.0


def test_pruned_examples_give_no_gradient_and_a_constant_loss():
    method = benchsuite.load_method("gce_truncated")
    logits = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 1, 2, 3])
    keep = torch.tensor([True, False, True, False])
    out = method.compute(logits, targets, keep=keep)
    (grad,) = torch.autograd.grad(out.loss, logits)
    assert grad[~keep].abs().max() == 0 and grad[keep].abs().min() > 0
    assert torch.equal(out.weights[~keep], torch.zeros(2, dtype=torch.float64))
    lq_k = (1 - 0.5**0.7) / 0.7
    full = method.compute(logits.detach(), targets)
    expected = (4 * full.loss - (-torch.expm1(0.7 * logits.detach().log_softmax(1)[[1, 3], [1, 3]]) / 0.7).sum() + 2 * lq_k) / 4
    torch.testing.assert_close(out.loss.detach(), expected)


def test_truncation_without_a_validation_split_says_what_is_missing():
    method = benchsuite.load_method("gce_truncated")
    ctx = fake_context(epochs=6)
    method.start(ctx)
    ctx.epoch = 1
    with pytest.raises(RuntimeError, match="reported no 'val_acc'"):
        method.end_epoch(ctx, {"test_acc": 0.5})


def test_truncated_gce_in_the_engine_prunes_mostly_noisy_examples():
    record = run("gce_truncated", epochs=20, prune_start=0.75, prune_every=1 / 20)  # refreshes from epoch 15
    assert record.status == "completed", record.error
    assert record.info["data"]["num_val"] == pytest.approx(0.1 * 1347, abs=10)  # a clean split, carved for it
    assert all("val_acc" in row for row in record.curves)
    pruned = [row["pruned"] for row in record.curves]
    assert set(pruned[:14]) == {0.0} and all(0.2 < x < 0.7 for x in pruned[14:])
    assert record.final["pruned_noisy"] > 0.7  # 40% of the training labels are noisy


# -- the seeds' claim, on the default budget -------------------------------------------------------


@pytest.mark.slow
def test_cce_memorises_noisy_labels_on_digits_and_robust_losses_do_not():
    cce, gce = run("cce"), run("gce")
    cce_acc = [row["test_acc"] for row in cce.curves]
    gce_acc = [row["test_acc"] for row in gce.curves]
    assert cce_acc[-1] < max(cce_acc) - 0.15 and cce.final["noisy_memorised"] > 0.4
    assert gce_acc[-1] > cce_acc[-1] + 0.15 and gce.final["noisy_memorised"] < 0.15
