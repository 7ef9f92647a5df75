"""The ``register_noise_kinds`` hook: a plugin brings its own noise kind and a task that takes it;
the host's kinds come through the same hook; bad registrations set the plugin aside."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import plugin_module, set_aside

from benchsuite.grid import Grid, expand, parse_component, parse_noise
from benchsuite.noise import BUILTIN_NOISE_KINDS, GivenLabels, NoiseError, corrupt_labels
from benchsuite.plugins import PluginHost

#: A third-party plugin: a noise kind that moves every chosen label to class 0, and a tiny task
#: that accepts it. Only the public API is used.
OWN_KIND = """
import numpy as np
import torch
from benchsuite import Metric, Recipe, Task, hookimpl
from benchsuite.noise import FlipNoise, FlipPlan
from benchsuite.task import evaluate_classification, prepare_in_memory


def _to_zero(num_classes, rng):
    return FlipPlan(np.zeros(num_classes, dtype=np.int64))


class Tiny(Task):
    name = "tiny"
    summary = "20 points in 4 classes"
    num_classes = 4
    noise_kinds = ("none", "symmetric", "to_zero")
    default_noise = ("to_zero", (0.5,))
    metrics = {"test_acc": Metric("accuracy")}
    primary_metric = "test_acc"

    def prepare(self, request):
        y = np.repeat(np.arange(4), 5)
        x = torch.arange(20, dtype=torch.float32)[:, None]
        return prepare_in_memory(request, x, y, x, y, 4)

    def build_model(self):
        return torch.nn.Linear(1, 4)

    def recipe(self):
        return Recipe(epochs=1, batch_size=4, lr=0.1)

    def evaluate(self, model, data, device):
        return evaluate_classification(model, data, 8)


@hookimpl
def register_noise_kinds(register):
    register("to_zero", FlipNoise(default_sampling="exact_global", plan=_to_zero, doc="every chosen label becomes 0"))


@hookimpl
def register_tasks(register):
    register(Tiny)
"""


def test_builtin_kinds_come_through_the_hook_as_an_internal_plugin():
    host = PluginHost()
    assert host.plugins["benchsuite.noise"].noise_kinds == list(BUILTIN_NOISE_KINDS)
    assert host.noise_kinds == BUILTIN_NOISE_KINDS


def test_a_plugin_registers_a_noise_kind_its_task_accepts():
    host = PluginHost()
    assert host.add_plugin(plugin_module(OWN_KIND), "own_kind"), host.failed
    assert host.plugins["own_kind"].noise_kinds == ["to_zero"] and "tiny" in host.tasks
    labels = np.repeat(np.arange(4), 5)
    noisy = corrupt_labels(labels, 4, host.noise_kinds["to_zero"], 0.5, seed=0)
    # class 0 maps to itself, so it is no source: floor(0.5 · 15) of the 15 examples of classes 1–3
    assert noisy.sampling == "exact_global" and noisy.num_noisy == 7
    assert set(noisy.labels[noisy.is_noisy]) == {0}
    host.remove_plugin("own_kind")
    assert "to_zero" not in host.noise_kinds and "tiny" not in host.tasks


def test_a_task_naming_a_kind_nobody_registered_is_set_aside():
    source = OWN_KIND.replace('register("to_zero"', 'register("to_one"')
    host = PluginHost()
    assert "accepts noise kinds ['to_zero'] that no plugin registered" in set_aside(host, source, "own_kind")
    assert "to_one" not in host.noise_kinds and "tiny" not in host.tasks  # nothing of it stays


@pytest.mark.parametrize(
    ("replace", "error"),
    [
        ('register("to_zero"', 'register("symmetric"'),
        ('register("to_zero"', 'register("To Zero"'),
        ('FlipNoise(default_sampling="exact_global", plan=_to_zero, doc="every chosen label becomes 0")', "_to_zero"),
    ],
)
def test_invalid_noise_kind_registrations_are_refused(replace, error):
    old, new = replace, error
    host = PluginHost()
    message = set_aside(host, OWN_KIND.replace(old, new), "own_kind")
    assert {
        'register("symmetric"': "noise kind 'symmetric' already registered by plugin 'benchsuite.noise'",
        'register("To Zero"': "must be a lowercase identifier",
        "_to_zero": "expected an instance of a benchsuite.noise.NoiseKind subclass",
    }[new] in message
    assert "tiny" not in host.tasks


def test_given_labels_take_the_file_labels_at_the_kept_positions():
    kind = GivenLabels(source="file", key="annotator", doc="d", inputs={"train_index": "i", "file": "f"})
    given = {"annotator": np.array([1, 1, 2, 0, 0, 2])}
    clean = np.array([0, 1, 2, 2])
    noisy = corrupt_labels(clean, 3, kind, 0.0, seed=0, train_index=np.array([0, 1, 2, 5]), file=given)
    assert noisy.labels.tolist() == [1, 1, 2, 2] and noisy.realised_rate == 0.25 and noisy.sampling is None
    assert noisy.details == {"labels": "annotator"}
    with pytest.raises(NoiseError, match="takes only rate 0"):
        corrupt_labels(clean, 3, kind, 0.2, seed=0, train_index=np.array([0, 1, 2, 5]), file=given)
    with pytest.raises(NoiseError, match="train_index must hold 4 positions in"):
        corrupt_labels(clean, 3, kind, 0.0, seed=0, train_index=np.array([0, 1, 2, 6]), file=given)
    with pytest.raises(NoiseError, match="are not sampled"):
        corrupt_labels(clean, 3, kind, 0.0, seed=0, sampling="bernoulli", train_index=np.arange(4), file=given)


def test_the_grid_runs_a_plugin_kind_and_given_kinds_only_at_rate_0():
    host = PluginHost()
    host.load_entry_points({"cce"})
    host.add_plugin(plugin_module(OWN_KIND), "own_kind")
    cells = expand(Grid([parse_component("cce")], [parse_component("tiny")], seeds=(0,)), host).cells
    assert [(c.noise_kind, c.noise_rate) for c in cells] == [("to_zero", 0.5)]  # the task's default noise
    assert parse_noise("cifar10n:worst").kind == "cifar10n:worst" and parse_noise("cifar10n:worst:0").rates == (0.0,)
    with pytest.raises(ValueError, match="must be a finite number"):
        parse_noise("symmetric:0.2,x")



def test_noise_kind_finds_the_kinds_of_the_process_wide_host():
    from benchsuite.noise import NoiseError, noise_kind
    from benchsuite.plugins import get_host, reset_host

    reset_host()
    assert noise_kind("symmetric") is BUILTIN_NOISE_KINDS["symmetric"]
    with pytest.raises(NoiseError, match=r"unknown noise kind 'cifar10n:worst'.*known once benchsuite.plugins.get_host\(\) has loaded"):
        noise_kind("cifar10n:worst")
    host = get_host()
    assert noise_kind("cifar10n:worst") is host.noise_kinds["cifar10n:worst"]
    assert host.add_plugin(plugin_module(OWN_KIND), "own_kind")
    assert noise_kind("to_zero") is host.noise_kinds["to_zero"]
    host.remove_plugin("own_kind")
    with pytest.raises(NoiseError, match="unknown noise kind 'to_zero'"):
        noise_kind("to_zero")
    reset_host()
    with pytest.raises(NoiseError, match="unknown noise kind 'cifar10n:worst'"):
        noise_kind("cifar10n:worst")
