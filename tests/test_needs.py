"""Data needs by name: a third-party method and task invent a need of their own, with no host edit,
and the engine matches, parameterises, hands over and marks it as it does the built-in ones."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from benchsuite.cli import main
from benchsuite.engine import build_context, train
from benchsuite.needs import NeedNotProvided, request_needs, strong_view, trusted_set
from benchsuite.plugins import get_host
from benchsuite.results import to_dataframe
from step_harness import spec_for

CPU = torch.device("cpu")

#: A need no part of benchsuite knows: the clean labels of a share of the training examples.
HINTS_PLUGIN = '''
import torch
import torch.nn.functional as F

from benchsuite import Method, Param, StepOutput, hookimpl
from benchsuite.needs import Need
from benchsuite_plugins.digits.digits import Digits


class HintedDigits(Digits):
    """digits that can hand a method the clean labels of the first ``fraction`` of its training set."""

    name = "hinted_digits"
    provides = Digits.provides | {"label_hints"}
    in_default_grid = False

    def prepare(self, request):
        data = super().prepare(request)
        if "label_hints" in request.needs:
            count = round(request.needs["label_hints"]["fraction"] * data.num_train)
            hints = torch.full((data.num_train,), -1, dtype=torch.long)
            hints[:count] = data.true_labels[:count]
            data.provided["label_hints"] = hints.to(request.device)
        return data


class HintedCCE(Method):
    """Cross entropy against the clean label where the task hints one, else the noisy label."""

    name = "hinted_cce"
    in_default_grid = False
    parameters = {"fraction": Param(0.5, "share of the training set with a clean label hint", low=0.0, high=1.0)}

    def needs(self):
        words = f"clean labels of {100 * self.fraction:g} % of the training set"
        return (Need("label_hints", {"fraction": self.fraction}, "clean label hints", {"label_hints": words}),)

    def start(self, ctx):
        self.hints = ctx.provided("label_hints")

    def train_step(self, ctx, batch):
        hint = self.hints[batch.index]
        logits = ctx.model(batch.x)
        loss = F.cross_entropy(logits, torch.where(hint >= 0, hint, batch.y))
        ctx.optimize(loss)
        return StepOutput(loss=loss.detach(), logits=logits.detach())


@hookimpl
def register_methods(register):
    register(HintedCCE)


@hookimpl
def register_tasks(register):
    register(HintedDigits)
'''


@pytest.fixture
def hints(install_plugin):
    install_plugin("label-hints", "label_hints", HINTS_PLUGIN)
    host = get_host()
    return host.method_class("hinted_cce"), host.task_class("hinted_digits")


def test_a_plugin_s_own_need_reaches_its_task_and_comes_back_to_its_method(hints):
    method_cls, task_cls = hints
    task = task_cls(width=16)
    ctx = build_context(method_cls(fraction=0.25), task, spec_for(method_cls(), task, 0.4), CPU)
    provided = ctx.provided("label_hints")
    assert (provided >= 0).sum() == round(0.25 * ctx.data.num_train)  # the parameter reached prepare()
    assert torch.equal(provided[provided >= 0], ctx.data.true_labels[: len(provided[provided >= 0])])
    # hints on every example at 40 % noise train exactly what no hints train without noise
    everything = train(method_cls(fraction=1.0), task, spec_for(method_cls(), task, 0.4, epochs=3), CPU)
    clean = train(method_cls(fraction=0.0), task, spec_for(method_cls(), task, 0.0, epochs=3), CPU)
    assert [r["test_acc"] for r in everything.curves] == [r["test_acc"] for r in clean.curves]
    noisy = train(method_cls(fraction=0.0), task, spec_for(method_cls(), task, 0.4, epochs=3), CPU)
    assert [r["test_acc"] for r in noisy.curves] != [r["test_acc"] for r in clean.curves]


def test_the_engine_refuses_a_task_that_does_not_provide_the_need(hints):
    method_cls, _ = hints
    digits = get_host().task_class("digits")(width=16)
    with pytest.raises(NeedNotProvided, match=r"hinted_cce needs clean label hints \(label_hints\), which task 'digits' does not provide"):
        build_context(method_cls(), digits, spec_for(method_cls(), digits, 0.4), CPU)


def test_grid_reports_n_a_and_the_boards_mark_the_need_in_its_own_words(hints, tmp_path):
    results = tmp_path / "results.sqlite"
    args = ["run", "-m", "hinted_cce", "-m", "cce", "-t", "hinted_digits{width = 16}", "-t", "digits{width = 16}",
            "--noise", "symmetric:0.4", "--seeds", "0", "--epochs", "1", "--results", str(results), "--no-progress",
            "--print-leaderboard", "--executor", "local"]  # fmt: skip
    # --executor local: in the driver, as a pool's spawned workers cost more than these tiny cells
    run = CliRunner().invoke(main, args, catch_exceptions=False)
    assert run.exit_code == 0, run.output
    runs = to_dataframe(results).set_index(["method", "task"])
    assert runs.loc[("hinted_cce", "digits"), "status"] == "skipped"
    assert runs.loc[("hinted_cce", "digits"), "error"] == (
        "hinted_cce needs clean label hints (label_hints), which task 'digits' does not provide"
    )
    assert runs.loc[("hinted_cce", "hinted_digits"), "status"] == "completed"
    rows = [line for line in run.stdout.splitlines() if line.startswith("| hinted_cce |")]
    ran = [row for row in rows if "n/a" not in row]
    assert ran and len(ran) < len(rows)  # a row per table and task; those on digits are n/a
    assert all(row.endswith("| clean labels of 50 % of the training set |") for row in ran)


def test_request_needs_merge_the_grid_s_validation_split():
    assert request_needs((trusted_set(3), strong_view())) == {"trusted_set": {"per_class": 3}, "strong_view": {}}
    assert request_needs((), 0.2) == {"clean_validation": {"fraction": 0.2}}
    gce = get_host().method_class("gce_truncated")(val_fraction=0.1)
    assert request_needs(gce.needs(), 0.2) == {"clean_validation": {"fraction": 0.2}}
    assert request_needs(gce.needs(), 0.05) == {"clean_validation": {"fraction": 0.1}}
    assert gce.privileged_data() == {"clean_validation_fraction": 0.1}


def test_a_task_declares_a_set_of_names():
    from benchsuite_plugins.digits.digits import Digits

    class Misdeclared(Digits):
        name = "misdeclared"
        provides = "trusted_set"  # a string: "trusted" would be found in it

    with pytest.raises(ValueError, match="provides must be a set of need names"):
        Misdeclared.check_class()
    Digits.check_class()
