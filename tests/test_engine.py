"""The training engine: determinism, memorisation bookkeeping, divergence and failure records."""

import math

import pytest
import torch

import benchsuite
from benchsuite import LossMethod, LossOutput
from benchsuite.engine import EpochStats, train
from benchsuite.method import StepOutput
from benchsuite.cell import execute_cell
from benchsuite.spec import CellSpec
from benchsuite.task import Batch, NoiseRecord, PreparedData, TensorTrainSource
from benchsuite_plugins.digits.digits import Digits

CPU = torch.device("cpu")


def spec(seed=0, rate=0.4, epochs=3, method="cce", **kw):
    return CellSpec(method, {}, "digits", {"width": 64, "depth": 2}, "symmetric", rate, seed, "t", "t", budget={"epochs": epochs}, **kw)


def run(seed=0, rate=0.4, epochs=3, method=None):
    task = benchsuite.load_task("digits", width=64)
    return train(method or benchsuite.load_method("cce"), task, spec(seed, rate, epochs), CPU)


def test_same_seed_gives_identical_metrics_and_another_seed_does_not():
    a, b, c = run(seed=3), run(seed=3), run(seed=4)
    strip = lambda rec: [{k: v for k, v in row.items() if k != "epoch_time"} for row in rec.curves]
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)
    assert a.info["noise"]["num_noisy"] == math.floor(0.4 * 1347)


def test_every_epoch_records_test_fit_and_loss():
    record = run(epochs=2)
    assert record.status == "completed" and [r["epoch"] for r in record.curves] == [1, 2]
    row = record.curves[-1]
    for key in ("test_acc", "train_acc_noisy", "train_acc_true", "noisy_memorised", "noisy_corrected", "clean_fit", "loss", "lr"):
        assert key in row and math.isfinite(row[key])
    assert 0 <= row["noisy_memorised"] + row["noisy_corrected"] <= 1
    assert record.info["noise"]["realised_rate"] == pytest.approx(0.4, abs=1e-3)


def test_epoch_stats_match_a_hand_count():
    noisy = torch.tensor([0, 1, 1, 2])
    true = torch.tensor([0, 1, 2, 0])  # examples 2 and 3 are noisy
    data = PreparedData(
        train=TensorTrainSource(torch.zeros(4, 1), noisy, batch_size=4),
        noisy_labels=noisy,
        true_labels=true,
        truth_known=torch.ones(4, dtype=torch.bool),
        noise=NoiseRecord("symmetric", 0.5, 0, 0.5, 2),
    )
    stats = EpochStats(data, CPU)
    logits = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 0]), 3).float() * 10  # predictions 0, 2, 1, 0
    weights = torch.tensor([1.0, 1.0, 2.0, 0.0])
    stats.update(Batch(torch.zeros(4, 1), noisy, torch.arange(4)), StepOutput(torch.tensor(1.5), logits, weights))
    row = stats.summary()
    assert row["train_acc_noisy"] == 0.5  # examples 0 and 2 fit their (noisy) label
    assert row["noisy_memorised"] == 0.5  # example 2 memorised its wrong label, 3 did not
    assert row["noisy_corrected"] == 0.5  # example 3 predicted its true label
    assert row["clean_fit"] == 0.5  # example 0 right, 1 wrong
    assert row["loss"] == 1.5
    p_y = torch.softmax(logits, 1).gather(1, noisy[:, None]).squeeze(1)
    assert row["weight_focus"] == pytest.approx(float((weights * p_y).sum() / weights.sum()))
    assert row["weight_var"] == pytest.approx(float((weights / weights.mean()).var(unbiased=False)))


class ExplodesAtStep15(LossMethod):
    name = "explodes"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def compute(self, logits, targets):
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(logits, targets)
        return LossOutput(loss * float("inf") if self.calls >= 15 else loss)


def test_a_non_finite_loss_is_recorded_as_diverged_with_its_epoch():
    record = run(method=ExplodesAtStep15(), epochs=4)  # 10 steps per epoch: explodes in epoch 2
    assert record.status == "diverged" and record.diverged_epoch == 2
    assert "non-finite training loss" in record.error
    assert [r["epoch"] for r in record.curves] == [1]  # the finished epoch is kept


def test_a_run_that_raises_is_recorded_as_failed_with_its_traceback():
    bad = spec(method="nosuchmethod")
    record = execute_cell(bad, device="cpu")
    assert record.status == "failed"
    assert "UnknownNameError: unknown method 'nosuchmethod'" in record.error
    assert "Traceback" in record.error and record.provenance["torch"] == torch.__version__


def test_trusted_and_validation_splits_are_held_out_before_noise():
    task = benchsuite.load_task("digits", width=16)
    from benchsuite.task import PrepareRequest

    data = task.prepare(PrepareRequest("symmetric", 0.4, 0, CPU, 64, needs={"trusted_set": {"per_class": 5}, "clean_validation": {"fraction": 0.2}}))
    trusted = data.provided["trusted_set"]
    assert len(trusted.y) == 50 and torch.bincount(trusted.y).tolist() == [5] * 10
    assert data.info["num_val"] == len(data.eval_data.val[1])
    assert data.num_train == 1347 - 50 - data.info["num_val"]
    assert data.noise.num_noisy == math.floor(0.4 * data.num_train)


def test_recipe_schedules_set_the_rate_of_every_step():
    from benchsuite.task import Recipe, RecipeSchedule

    def rates(recipe, total=8):
        optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=recipe.lr)
        schedule, out = RecipeSchedule(optimizer, recipe, total), []
        for _ in range(total):
            out.append(optimizer.param_groups[0]["lr"])
            schedule.step()
        return out

    multistep = Recipe(epochs=1, batch_size=1, lr=0.1, schedule="multistep", milestones=(0.5, 0.75))
    assert rates(multistep) == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)
    inv = Recipe(epochs=1, batch_size=1, lr=0.01, schedule="inv", inv_gamma=1e-5, inv_power=0.75)
    assert rates(inv, 3) == pytest.approx([0.01 * (1 + 1e-5 * t) ** -0.75 for t in range(3)])
    cosine = Recipe(epochs=1, batch_size=1, lr=1.0, schedule="cosine")
    assert rates(cosine, 4) == pytest.approx([1.0, 0.853553, 0.5, 0.146447], abs=1e-6)


def test_weight_average_follows_the_reference_ramp_and_evaluates_with_live_buffers():
    from benchsuite.averaging import WeightAverage

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    average = WeightAverage(model, decay=0.999)
    start = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update()  # first update: decay min(0.999, (1 + 1)/(10 + 1))
    for a, old, live in zip(average.evaluated().parameters(), start, model.parameters()):
        torch.testing.assert_close(a, 2 / 11 * old + 9 / 11 * live.detach())
    model.train()(torch.randn(8, 3))  # moves the BatchNorm running statistics
    torch.testing.assert_close(average.evaluated()[1].running_mean, model[1].running_mean)
    for _ in range(10_000):
        average.update()
    assert min(0.999, (1 + average.updates) / (10 + average.updates)) == 0.999
    with pytest.raises(ValueError, match="must lie in"):
        WeightAverage(model, 1.0)


class RecordsEvaluatedModel(Digits):
    name = "records_evaluated_model"
    evaluated: list = []

    def evaluate(self, model, data, device):
        RecordsEvaluatedModel.evaluated.append([p.detach().clone() for p in model.parameters()])
        return super().evaluate(model, data, device)


def test_eval_ema_scores_every_method_on_the_average_of_its_weights():
    task = RecordsEvaluatedModel(width=16)
    for method in ("cce", "ieg", "dividemix"):  # a loss method, step-level ones, an ensemble alike
        RecordsEvaluatedModel.evaluated = []
        plain = train(benchsuite.load_method(method), task, spec(epochs=2, method=method), CPU)
        trained = RecordsEvaluatedModel.evaluated[-1]
        RecordsEvaluatedModel.evaluated = []
        averaged = train(benchsuite.load_method(method), task, spec(epochs=2, method=method, eval_ema=0.9), CPU)
        assert not all(torch.equal(a, b) for a, b in zip(RecordsEvaluatedModel.evaluated[-1], trained)), method
        # the same training (the EMA only observes it); only what is evaluated differs
        assert [r["loss"] for r in averaged.curves] == [r["loss"] for r in plain.curves], method
