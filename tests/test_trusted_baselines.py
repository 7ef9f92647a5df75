"""trusted_only and cce_trusted: which examples each trains on, how often, and that the noisy labels
never reach trusted_only's model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import benchsuite
from benchsuite import Metric, Param, PreparedData, Recipe, Task
from benchsuite.engine import TrainContext, train
from benchsuite.spec import CellSpec
from benchsuite.task import Batch, PrepareRequest, evaluate_classification, prepare_in_memory
from benchsuite_plugins.methods.trusted import CCETrusted, TrustedOnly, UnionChunks

CLASSES, PER_CLASS, TRUSTED_PER_CLASS, BATCH = 4, 100, 5, 20


class Tagged(Task):
    """400 training points whose inputs are all distinct, so a forward's rows name its examples;
    4 × 5 trusted examples leave 380 noisy ones: 19 batches of 20 per epoch, none dropped."""

    name = "tagged"
    num_classes = CLASSES
    input_kind = "vector"
    provides = frozenset({"trusted_set"})
    metrics = {"test_acc": Metric("accuracy")}
    primary_metric = "test_acc"
    parameters = {"batchnorm": Param(False, "a BatchNorm1d after the hidden layer")}

    def prepare(self, request: PrepareRequest) -> PreparedData:
        x, y = tagged_data()
        return prepare_in_memory(request, torch.from_numpy(x), y, torch.from_numpy(x[:40]), y[:40], CLASSES)

    def build_model(self) -> nn.Module:
        norm = [nn.BatchNorm1d(16)] if self.batchnorm else []
        return nn.Sequential(nn.Linear(6, 16), *norm, nn.ReLU(), nn.Linear(16, CLASSES))

    def recipe(self) -> Recipe:
        return Recipe(epochs=3, batch_size=BATCH, lr=0.1)

    def evaluate(self, model: nn.Module, data: PreparedData, device: torch.device) -> dict[str, float]:
        return evaluate_classification(model, data, batch_size=256)


def tagged_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y = np.repeat(np.arange(CLASSES), PER_CLASS)
    x = (rng.normal(0.0, 1.0, (len(y), 6)) + y[:, None]).astype(np.float32)
    return x, y


def example_ids(rows: torch.Tensor) -> list[int]:
    """Indices into ``tagged_data()`` of the given input rows."""
    x, _ = tagged_data()
    where = {row.tobytes(): i for i, row in enumerate(x)}
    return [where[row.tobytes()] for row in rows.numpy()]


def recording(cls: type) -> type:
    """``cls`` that logs, per epoch, the examples of every forward that builds a graph."""

    class Recording(cls):
        def start(self, ctx: TrainContext) -> None:
            super().start(ctx)
            self.model, self.seen = ctx.model, {}

            def log(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
                if torch.is_grad_enabled():
                    self.seen.setdefault(ctx.epoch, []).extend(example_ids(args[0]))

            ctx.model.register_forward_pre_hook(log)

    return Recording


def run(method, rate: float = 0.4, batchnorm: bool = False):
    task = Tagged(batchnorm=batchnorm)
    spec = CellSpec(method.name, method.identity_config(), task.name, task.identity_config(), "symmetric", rate, 0,
                    method.version, task.version)  # fmt: skip
    record = train(method, task, spec, torch.device("cpu"))
    assert record.status == "completed", record.error
    return record


def test_trusted_only_trains_on_the_trusted_examples_only():
    method = recording(TrustedOnly)(probe_per_class=TRUSTED_PER_CLASS)
    record = run(method)
    trusted = record.info["data"]["trusted_indices"]
    assert len(trusted) == CLASSES * TRUSTED_PER_CLASS
    for epoch in (1, 2, 3):  # 19 steps, each on the whole trusted set (20 examples, batch 20)
        assert sorted(method.seen[epoch]) == sorted(trusted * 19)
    # the memorisation statistics still come from predictions on the noisy set
    assert {"train_acc_noisy", "noisy_memorised", "clean_fit"} <= set(record.final)


def test_trusted_only_is_blind_to_the_noisy_labels_batchnorm_included():
    """Same seed, noise 0 or 0.8: bit-identical weights and BatchNorm statistics."""
    runs = [recording(TrustedOnly)(probe_per_class=TRUSTED_PER_CLASS) for _ in range(2)]
    records = [run(m, rate, batchnorm=True) for m, rate in zip(runs, (0.0, 0.8))]
    assert records[1].info["noise"]["realised_rate"] > 0.7
    clean, noisy = (m.model.state_dict() for m in runs)
    assert clean.keys() == noisy.keys() and "1.running_mean" in clean
    for key in clean:
        assert torch.equal(clean[key], noisy[key]), key
    assert records[0].final["test_acc"] == records[1].final["test_acc"]


def test_cce_trusted_union_sees_every_example_once_per_epoch():
    method = recording(CCETrusted)(probe_per_class=TRUSTED_PER_CLASS)
    record = run(method)
    trusted = set(record.info["data"]["trusted_indices"])
    everything = set(range(CLASSES * PER_CLASS))
    for epoch in (1, 2, 3):
        seen = method.seen[epoch]
        assert len(seen) == len(everything) and set(seen) == everything  # noisy and trusted, each once
    assert trusted < everything


def test_cce_trusted_paired_adds_the_whole_trusted_batch_to_every_step():
    method = recording(CCETrusted)(probe_per_class=TRUSTED_PER_CLASS, sampling="paired")
    record = run(method)
    trusted = record.info["data"]["trusted_indices"]
    counts = np.bincount(method.seen[1], minlength=CLASSES * PER_CLASS)
    assert (counts[trusted] == 19).all()  # one whole trusted batch per step, 19 steps
    noisy = np.setdiff1d(np.arange(CLASSES * PER_CLASS), trusted)
    assert (counts[noisy] == 1).all()
    assert 0.0 <= record.final["weight_focus"] <= 1.0  # CCE's weights of the noisy examples


def test_union_chunks_cut_each_batch_into_near_equal_consecutive_pieces():
    batches = iter([Batch(torch.arange(10.0)[:, None], torch.arange(10), torch.arange(10)), Batch(torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), torch.tensor([10, 11]))])
    chunks = list(UnionChunks(batches, pieces=4))
    assert [len(c.y) for c in chunks] == [3, 3, 2, 2, 1, 1]
    assert torch.equal(torch.cat([c.index for c in chunks]), torch.arange(12))


@pytest.mark.parametrize("name", ["trusted_only", "cce_trusted"])
def test_trusted_baselines_share_ieg_trusted_set_parameter_and_need_a_trusted_set(name):
    method, ieg = benchsuite.load_method(name, probe_per_class=3), benchsuite.load_method("ieg", probe_per_class=3)
    assert method.needs()[0] == ieg.needs()[0] and method.needs()[0].params == {"per_class": 3}
    assert type(method).parameters["probe_per_class"].default == type(ieg).parameters["probe_per_class"].default
    assert method.in_default_grid
    no_trusted = benchsuite.load_task("mars")
    assert "trusted" in method.applicability(no_trusted)
    assert method.applicability(benchsuite.load_task("digits_retrieval")) is None


@pytest.mark.parametrize("name", ["trusted_only", "cce_trusted"])
def test_trusted_baselines_train_on_digits(name):
    method, task = benchsuite.load_method(name), benchsuite.load_task("digits")
    spec = CellSpec(name, method.identity_config(), "digits", task.identity_config(), "symmetric", 0.4, 0,
                    method.version, task.version, budget={"epochs": 3})  # fmt: skip
    record = train(method, task, spec, torch.device("cpu"))
    assert record.status == "completed", record.error
    assert record.info["num_trusted"] == 100 and record.final["test_acc"] > 0.3
