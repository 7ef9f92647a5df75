"""A cell is bit-reproducible: the same spec on the same machine, thread count and device gives
bit-identical curves and final metrics, for every built-in method, whatever ran before it in the
process; and a cell leaves the process's random state and kernel settings as it found them."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

import benchsuite
from benchsuite import LossMethod, LossOutput
from benchsuite.engine import train
from benchsuite.reproducibility import REPRODUCIBLE_UNDER, kernel_settings
from benchsuite.cell import execute_cell
from benchsuite.spec import CellSpec
from benchsuite_plugins.digits.digits import Digits

CPU = torch.device("cpu")
#: Every built-in method: loss methods, the derivative-normalised family, the step-level ones.
BUILTINS = [
    "cce", "cce_dn", "mae", "mae_dn", "mse", "mse_dn", "gce", "gce_dn", "gce_truncated", "sl", "gr", "dm", "imae", "ieg",
    "coteaching", "elr", "dividemix", "trusted_only", "cce_trusted",
    "bootstrap_soft", "bootstrap_hard", "label_smoothing", "forward", "nce_rce", "mixup",
]
TINY = {"epochs": 2, "batch_size": 256}  # digits: 5 steps per epoch; gce_truncated prunes after epoch 1
#: So that the tiny budget reaches every phase of a method (DivideMix divides the data after its warm-up).
PARAMS = {"dividemix": {"warmup_epochs": 1}}


def cell(method: str, seed: int = 0, rate: float = 0.4, **kw) -> CellSpec:
    instance = benchsuite.load_method(method, **PARAMS.get(method, {}))
    task = benchsuite.load_task("digits", width=32)
    return CellSpec(
        method, instance.identity_config(), "digits", task.identity_config(), "symmetric", rate, seed, "t", "t",
        budget=dict(TINY), **kw,
    )


def numbers(record) -> list[dict[str, float]]:
    """Everything a run computed: every epoch's metrics except its wall time."""
    assert record.status == "completed", record.error
    return [{k: v for k, v in row.items() if k != "epoch_time"} for row in record.curves]


def test_every_builtin_method_reproduces_bit_for_bit_after_other_cells_ran():
    """Each method's cell, run first in its turn, then again after every other method's cell (in
    reverse order, another noise rate and seed in between): identical curves and final metrics."""
    first = {m: numbers(execute_cell(cell(m), "cpu")) for m in BUILTINS}
    again = {}
    for m in reversed(BUILTINS):
        execute_cell(cell(m, seed=1, rate=0.8), "cpu")
        again[m] = numbers(execute_cell(cell(m), "cpu"))
    for m in BUILTINS:
        assert again[m] == first[m], f"{m}: a re-run of the same cell differs"
    assert first["gr"] != first["cce"]  # the comparison can fail: different methods differ


GR_IN_A_FRESH_PROCESS = """
import json, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from benchsuite.cell import execute_cell
from benchsuite.spec import CellSpec
record = execute_cell(CellSpec.from_dict(json.loads(sys.argv[2])), "cpu")
print(json.dumps([{k: v for k, v in row.items() if k != "epoch_time"} for row in record.curves]))
"""


def test_a_gr_cell_in_a_fresh_process_equals_one_after_other_cells():
    spec = cell("gr", rate=0.0)
    for other in ("cce", "ieg", "imae"):
        execute_cell(cell(other, seed=2), "cpu")
    here = numbers(execute_cell(spec, "cpu"))
    out = subprocess.run(
        [sys.executable, "-c", GR_IN_A_FRESH_PROCESS, str(torch.get_num_threads()), json.dumps(spec.to_dict())],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout) == json.loads(json.dumps(here))


class DrawsOnFirstPrepare(Digits):
    """A task whose data loading draws from the global generators, but only the first time (as a
    cache that shuffles on a miss would)."""

    name = "draws_on_first_prepare"
    loaded = False

    def prepare(self, request):
        if not DrawsOnFirstPrepare.loaded:
            DrawsOnFirstPrepare.loaded = True
            torch.rand(1000), np.random.rand(10), random.random()
        return super().prepare(request)


def test_the_initial_weights_do_not_depend_on_what_prepare_drew():
    task = DrawsOnFirstPrepare(width=32)
    spec = cell("cce")
    first = numbers(train(benchsuite.load_method("cce"), task, spec, CPU))
    assert DrawsOnFirstPrepare.loaded
    assert numbers(train(benchsuite.load_method("cce"), task, spec, CPU)) == first


def test_a_cell_leaves_the_global_random_state_as_it_found_it():
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    train(benchsuite.load_method("cce"), benchsuite.load_task("digits", width=32), cell("cce"), CPU)
    after = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(after[0], expected[0]) and np.array_equal(after[1], expected[1]) and after[2] == expected[2]


class RecordsKernelSettings(LossMethod):
    """Cross entropy that notes the kernel settings its cell runs under."""

    name = "records_kernel_settings"
    seen: list[tuple[bool, bool, bool]] = []

    def compute(self, logits, targets):
        cudnn = torch.backends.cudnn
        RecordsKernelSettings.seen.append((torch.are_deterministic_algorithms_enabled(), cudnn.deterministic, cudnn.benchmark))
        return LossOutput(torch.nn.functional.cross_entropy(logits, targets))


@pytest.mark.parametrize("deterministic", [False, True])
def test_kernel_settings_are_the_cells_own_and_restored_after(deterministic):
    cudnn = torch.backends.cudnn
    before = (torch.are_deterministic_algorithms_enabled(), cudnn.deterministic, cudnn.benchmark)
    cudnn.benchmark = True  # as a previous user of the process might have left it
    try:
        RecordsKernelSettings.seen = []
        record = train(RecordsKernelSettings(), benchsuite.load_task("digits", width=32), cell("cce", deterministic=deterministic), CPU)
        assert set(RecordsKernelSettings.seen) == {(deterministic, deterministic, False)}
        assert record.provenance["reproducibility"]["deterministic"] is deterministic
        assert cudnn.benchmark is True and torch.are_deterministic_algorithms_enabled() is before[0]
    finally:
        cudnn.benchmark = before[2]


def test_deterministic_kernels_change_nothing_on_the_cpu():
    """The built-in CPU kernels are deterministic already: the flag gives the same numbers (and no
    operation of the built-in methods refuses to run under it)."""
    for method in BUILTINS:
        plain = numbers(execute_cell(cell(method), "cpu"))
        assert numbers(execute_cell(cell(method, deterministic=True), "cpu")) == plain, method


def test_cuda_deterministic_sets_the_cublas_workspace(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    with kernel_settings(False, torch.device("cuda")):
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    with kernel_settings(True, torch.device("cuda")):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    assert not torch.are_deterministic_algorithms_enabled()


def test_provenance_says_what_reproducibility_holds_under():
    torch_threads = torch.get_num_threads()
    record = execute_cell(cell("gr"), "cpu")
    prov = record.provenance
    conditions = prov["reproducibility"]
    assert conditions["torch_threads"] == prov["torch_threads"] == torch_threads
    assert conditions["deterministic"] is False and conditions["cpu_capability"]
    assert conditions["reproducible_under"] == list(REPRODUCIBLE_UNDER)
    for key in REPRODUCIBLE_UNDER:
        assert key in prov or key in conditions, key


def test_the_thread_count_is_read_per_cell_not_cached():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = execute_cell(cell("cce"), "cpu").provenance
        torch.set_num_threads(2)
        two = execute_cell(cell("cce"), "cpu").provenance
    finally:
        torch.set_num_threads(threads)
    assert (one["torch_threads"], two["torch_threads"]) == (1, 2)
    assert (one["reproducibility"]["torch_threads"], two["reproducibility"]["torch_threads"]) == (1, 2)
