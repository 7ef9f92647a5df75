"""The engine's hooks for step-level methods: a second network, its optimiser, per-epoch passes,
a redrawn view, and bit-reproducible cells of the methods that use them."""

from __future__ import annotations

import pytest
import torch

import benchsuite
from benchsuite import Method, StepOutput
from benchsuite.engine import build_context, train
from benchsuite.task import TensorTrainSource
from step_harness import CPU, first_batch, spec_for


class Probe(Method):
    """CCE-like steps that log the hooks' calls."""

    name = "probe"

    def start(self, ctx):
        self.calls: list[tuple[str, int, int]] = []

    def start_epoch(self, ctx):
        self.calls.append(("start_epoch", ctx.epoch, ctx.step))

    def train_step(self, ctx, batch):
        self.calls.append(("step", ctx.epoch, ctx.step))
        logits = ctx.model(batch.x)
        loss = torch.nn.functional.cross_entropy(logits, batch.y)
        ctx.optimize(loss)
        return StepOutput(loss=loss.detach(), logits=logits.detach())


def test_start_epoch_runs_before_each_epochs_first_step():
    task = benchsuite.load_task("digits")
    method = Probe()
    train(method, task, spec_for(method, task, 0.2, epochs=3), CPU)
    starts = [c for c in method.calls if c[0] == "start_epoch"]
    assert starts == [("start_epoch", 1, 0), ("start_epoch", 2, 10), ("start_epoch", 3, 20)]
    assert method.calls[1] == ("step", 1, 0) and method.calls[11] == ("start_epoch", 2, 10)


def test_new_model_is_fresh_seeded_by_the_generator_and_leaves_the_global_rng_alone():
    task = benchsuite.load_task("digits")
    method = Probe()
    ctx = build_context(method, task, spec_for(method, task, 0.2), CPU)
    state = torch.get_rng_state()
    second = ctx.new_model()
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(next(second.parameters()), next(ctx.model.parameters()))
    again = build_context(method, task, spec_for(method, task, 0.2), CPU).new_model()
    for a, b in zip(second.parameters(), again.parameters()):
        assert torch.equal(a, b)
    third = ctx.new_model()  # the generator moved on: another initialisation
    assert not torch.equal(next(third.parameters()), next(second.parameters()))


def test_optimize_with_a_methods_own_optimiser_steps_only_that_one():
    task = benchsuite.load_task("digits")
    method = Probe()
    ctx = build_context(method, task, spec_for(method, task, 0.2), CPU)
    peer = ctx.new_model()
    peer_optimizer = torch.optim.SGD(peer.parameters(), lr=0.1)
    before = [p.clone() for p in ctx.model.parameters()]
    peer_before = [p.clone() for p in peer.parameters()]
    batch = first_batch(ctx)
    ctx.optimize(torch.nn.functional.cross_entropy(peer(batch.x), batch.y), peer_optimizer)
    assert all(torch.equal(a, b) for a, b in zip(before, ctx.model.parameters()))
    assert not any(torch.equal(a, b) for a, b in zip(peer_before, peer.parameters()))


def test_fresh_view_redraws_the_augmentation_of_the_same_examples():
    x = torch.arange(40.0).view(10, 4)
    plain = TensorTrainSource(x, torch.zeros(10, dtype=torch.long), batch_size=4)
    index = torch.tensor([3, 1])
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(plain.fresh_view(index, gen), x[index])

    def jitter(v, generator):
        return v + torch.rand(v.shape, generator=generator)

    noisy = TensorTrainSource(x, torch.zeros(10, dtype=torch.long), batch_size=4, augment=jitter)
    a, b = noisy.fresh_view(index, gen), noisy.fresh_view(index, gen)
    assert not torch.equal(a, b) and (a - x[index]).abs().max() < 1 and (b - x[index]).abs().max() < 1


@pytest.mark.parametrize("name", ["coteaching", "elr", "dividemix"])
def test_a_cell_is_bit_reproducible(name):
    """Two runs of one cell (12 epochs, past DivideMix's warm-up) give identical curves."""
    task = benchsuite.load_task("digits")

    def curves():
        method = benchsuite.load_method(name)
        record = train(method, task, spec_for(method, task, 0.4, seed=3, epochs=12), CPU)
        return [{k: v for k, v in row.items() if k != "epoch_time"} for row in record.curves]

    first = curves()
    assert len(first) == 12 and first == curves()
