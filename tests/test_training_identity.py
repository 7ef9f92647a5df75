"""Speed work must not change a single float: short fixed-seed cells on the CPU, one thread, give
exactly the curves recorded in ``tests/data/training_identity.json`` before the engine's loop and
IEG's step were optimised (every metric of every epoch compared with ``==``; only the wall-clock
``epoch_time`` is left out).

The cells cover IEG on the digits MLP (default, and with the non-default pseudo-label gradient and
Beta MixUp branches), IEG on ResNet-20 with BatchNorm, uint8 CIFAR images and AutoAugment (a
synthetic release), and the engine's own paths with CCE, GCE (example weights) and an EMA.

Floats depend on the processor generation (see the README's "Reproducibility"), so the file holds
one recording per machine (CPU generation, the vector extension torch dispatches to, torch's
version). A cell must equal one of them bit for bit; on a machine that has a recording of its own,
it must equal that one. On a machine without one, the digits cells are compared to a recording at
a relative tolerance of 1e-5 (generations differ there by at most about 1e-6) and the ResNet-20
cells, whose small batches turn such differences into other argmaxes, are skipped with the reason.

Add this machine's recording, or regenerate it (only when a change of results is intended, and
say so): ``python tests/test_training_identity.py``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch

import benchsuite
from benchsuite.engine import train
from benchsuite.provenance import cpu_id
from benchsuite.spec import CellSpec
from benchsuite_plugins.cifar.fake_release import write_fake_cifar

RECORDED = Path(__file__).with_name("data") / "training_identity.json"

#: name -> (method, method params, task, budget, eval_ema)
CELLS: dict[str, tuple[str, dict[str, Any], str, dict[str, Any], float | None]] = {
    "ieg_digits": ("ieg", {}, "digits", {"epochs": 6}, None),
    "ieg_digits_branches": ("ieg", {"faithful_g_grad": True, "mixup": "beta"}, "digits", {"epochs": 2}, None),
    "ieg_resnet20": ("ieg", {"probe_per_class": 2}, "cifar10", {"iterations": 4, "batch_size": 16}, None),
    "cce_digits": ("cce", {}, "digits", {"epochs": 4}, None),
    "gce_digits_ema": ("gce", {}, "digits", {"epochs": 3}, 0.9),
    "cce_resnet20": ("cce", {}, "cifar10", {"iterations": 4, "batch_size": 16}, None),
}


#: Cells compared at a tolerance on a machine without its own recording.
TOLERANT = {name for name, (_, _, task, _, _) in CELLS.items() if task == "digits"}


def this_machine() -> dict[str, str]:
    return {"cpu_id": cpu_id(), "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__}


def recordings() -> list[dict[str, Any]]:
    return json.loads(RECORDED.read_text())["recordings"]


def run_cell(name: str, cifar_root: Path) -> list[dict[str, float]]:
    method_name, params, task_name, budget, eval_ema = CELLS[name]
    method = benchsuite.load_method(method_name, **params)
    if task_name == "cifar10":
        task = benchsuite.load_task("cifar10", preset="smoke", root=str(cifar_root))
    else:
        task = benchsuite.load_task(task_name)
    spec = CellSpec(method.name, method.identity_config(), task.name, task.identity_config(), "symmetric", 0.4, 0,
                    method.version, task.version, budget=budget, eval_ema=eval_ema)  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        record = train(method, task, spec, torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    assert record.status == "completed", record.error
    return [{k: v for k, v in row.items() if k != "epoch_time"} for row in record.curves]


def write_release(root: Path) -> None:
    write_fake_cifar(root, "cifar10", train_per_class=8, test_per_class=3)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_release(root)
    return root


@pytest.mark.parametrize("name", list(CELLS))
def test_curves_are_bit_identical_to_the_recorded_ones(name, cifar_root):
    curves = run_cell(name, cifar_root)
    if any(curves == recording["cells"][name] for recording in recordings()):
        return
    own = [recording for recording in recordings() if recording["machine"] == this_machine()]
    if own:
        assert curves == own[0]["cells"][name]
    if name not in TOLERANT:
        pytest.skip(f"no recording of {name} for this machine ({this_machine()}): add one with python tests/test_training_identity.py")
    recorded = recordings()[0]["cells"][name]
    assert len(curves) == len(recorded)
    for ours, theirs in zip(curves, recorded):
        assert ours.keys() == theirs.keys()
        assert list(ours.values()) == pytest.approx(list(theirs.values()), rel=1e-5, abs=1e-9)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        write_release(Path(folder))
        curves = {name: run_cell(name, Path(folder)) for name in CELLS}
    others = [recording for recording in recordings() if recording["machine"] != this_machine()]
    RECORDED.write_text(json.dumps({"recordings": [*others, {"machine": this_machine(), "cells": curves}]}, indent=1) + "\n")
    print(f"wrote {RECORDED}: {len(others) + 1} machines")
