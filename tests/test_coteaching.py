"""Co-teaching: the forget-rate schedule, the cross update on the peer's small-loss examples, end to end."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import benchsuite
from benchsuite.engine import train
from benchsuite_plugins.methods import coteaching
from benchsuite_plugins.methods.coteaching import CoTeaching, remember_rate
from step_harness import CPU, first_batch, spec_for, started_context


def test_remember_rate_follows_the_papers_schedule():
    """R(T) = 1 − min(T/T_k · τ, τ) with T the epochs completed."""
    assert remember_rate(0, 0.4, 10) == 1.0
    assert remember_rate(5, 0.4, 10) == pytest.approx(0.8)
    assert remember_rate(10, 0.4, 10) == pytest.approx(0.6)
    assert remember_rate(25, 0.4, 10) == pytest.approx(0.6)
    assert remember_rate(3, 0.5, 4) == pytest.approx(1 - 0.375)


def sgd_step_on(net: torch.nn.Module, optimizer: torch.optim.Optimizer, x, y) -> torch.nn.Module:
    """A copy of ``net`` after one step of a fresh copy of ``optimizer``'s settings on mean CE."""
    net = copy.deepcopy(net)
    opt = type(optimizer)(net.parameters(), **optimizer.defaults)
    opt.zero_grad()
    F.cross_entropy(net(x), y).backward()
    opt.step()
    return net


def test_each_network_steps_on_the_small_loss_examples_of_its_peer():
    """One step after the ramp (τ = 0.5): f's new weights are those of an SGD step on the half of
    the batch with g's smallest losses, and g's on the half with f's; f's reported weights are
    non-zero exactly there."""
    method = CoTeaching(forget_rate=0.5)
    ctx = started_context(method, rate=0.4)
    ctx.step = 20 * ctx.steps_per_epoch  # past T_k = 10 epochs: half of each batch is dropped
    batch = first_batch(ctx)
    f0, g0 = copy.deepcopy(ctx.model), copy.deepcopy(method.peer)
    with torch.no_grad():
        loss_f = F.cross_entropy(f0(batch.x), batch.y, reduction="none")
        loss_g = F.cross_entropy(g0(batch.x), batch.y, reduction="none")
    keep = len(batch.y) // 2
    small_f, small_g = loss_f.argsort()[:keep], loss_g.argsort()[:keep]
    assert len(set(small_f.tolist()) ^ set(small_g.tolist())) > 10  # the two selections differ

    out = method.train_step(ctx, batch)

    expected_f = sgd_step_on(f0, ctx.optimizer, batch.x[small_g], batch.y[small_g])
    expected_g = sgd_step_on(g0, method.peer_optimizer, batch.x[small_f], batch.y[small_f])
    own_choice = sgd_step_on(f0, ctx.optimizer, batch.x[small_f], batch.y[small_f])
    for got, want, other in zip(ctx.model.parameters(), expected_f.parameters(), own_choice.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
        assert not torch.allclose(got, other)  # f's own selection would have given other weights
    for got, want in zip(method.peer.parameters(), expected_g.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert set(out.weights.nonzero().squeeze(1).tolist()) == set(small_g.tolist())
    torch.testing.assert_close(out.weights[small_g], -2 * torch.expm1(-loss_f[small_g]))


class RecordingCoTeaching(CoTeaching):
    """Keeps, per step, the epoch and the batch size."""

    def start(self, ctx):
        super().start(ctx)
        self.log: list[tuple[int, int]] = []

    def train_step(self, ctx, batch):
        self.log.append((ctx.epoch, len(batch.y)))
        return super().train_step(ctx, batch)


def test_end_to_end_on_digits_the_kept_share_follows_the_schedule_and_beats_cce(monkeypatch):
    """40% symmetric noise, the default budget (60 epochs) and τ = the noise rate: each network
    keeps ⌊R(T)·B⌋ examples of every batch; after the ramp the kept examples are mostly clean; f
    ends far above cross entropy, which memorises the noise."""
    selections: list[int] = []
    select = coteaching.small_loss_indices

    def recording_selection(losses, keep):
        selections.append(keep)
        return select(losses, keep)

    monkeypatch.setattr(coteaching, "small_loss_indices", recording_selection)
    task = benchsuite.load_task("digits")
    method = RecordingCoTeaching()
    record = train(method, task, spec_for(method, task, 0.4), CPU)
    monkeypatch.undo()
    assert record.status == "completed"
    assert method.tau == 0.4
    assert len(selections) == 2 * len(method.log)  # each step: f's and g's selection
    for (epoch, size), kept, kept_peer in zip(method.log, selections[::2], selections[1::2]):
        assert kept == kept_peer == int(remember_rate(epoch - 1, 0.4, 10) * size), (epoch, size, kept)
    assert {kept for kept in selections} == {128, 122, 117, 112, 107, 102, 97, 92, 87, 81, 76}  # ⌊(1 − 0.04k)·128⌋
    forget = [row["coteach_forget_rate"] for row in record.curves]
    assert forget[:3] == pytest.approx([0.0, 0.04, 0.08]) and forget[10:] == pytest.approx([0.4] * 50)
    late = record.curves[-10:]
    assert min(row["coteach_precision"] for row in late) > 0.9  # 60% of the labels are clean
    assert min(row["coteach_precision_peer"] for row in late) > 0.9

    cce = benchsuite.load_method("cce")
    baseline = train(cce, task, spec_for(cce, task, 0.4), CPU)
    assert record.curves[-1]["test_acc"] > baseline.curves[-1]["test_acc"] + 0.1


def test_forget_rate_parameter_overrides_the_noise_rate_and_is_validated():
    ctx = started_context(method := CoTeaching(forget_rate=0.25), rate=0.6)
    assert method.tau == 0.25 and ctx.data.noise.rate == 0.6
    with pytest.raises(benchsuite.ParameterError, match="forget_rate"):
        CoTeaching(forget_rate=1.0)
