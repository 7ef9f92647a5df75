"""Speed work must not change a single float: short fixed-seed cells on the CPU, one thread, give
exactly the curves recorded in ``tests/data/training_identity.json`` before the engine's loop and
IEG's step were optimised (every metric of every epoch compared with ``==``; only the wall-clock
``epoch_time`` is left out).

The cells cover IEG on the digits MLP (default, and with the non-default pseudo-label gradient and
Beta MixUp branches), IEG on ResNet-20 with BatchNorm, uint8 CIFAR images and AutoAugment (a
synthetic release), and the engine's own paths with CCE, GCE (example weights) and an EMA.

The recorded floats are those of torch's AVX2 CPU kernels and oneDNN's AVX2 convolutions: on an
AVX-512 CPU torch picks other kernels, whose reductions and transcendental functions differ in the
last bits (on an AMD EPYC with AVX-512 every cell but ``gce_digits_ema`` differed from the record,
on unchanged code). So the cells run in one child process whose torch is held to AVX2
(``PINNED_ISA``), which any x86-64 CPU with AVX2 can do; on other CPUs the comparison fails.

Regenerate (only when a change of results is intended, and say so):
``python tests/test_training_identity.py`` (it pins the instruction set the same way).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch

import benchsuite
from benchsuite.engine import train
from benchsuite.spec import CellSpec
from benchsuite_plugins.cifar.fake_release import write_fake_cifar

RECORDED = Path(__file__).with_name("data") / "training_identity.json"
#: Environment that holds torch's CPU kernels (ATen's dispatch, oneDNN) to the recorded AVX2 ones.
PINNED_ISA = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}

#: name -> (method, method params, task, budget, eval_ema)
CELLS: dict[str, tuple[str, dict[str, Any], str, dict[str, Any], float | None]] = {
    "ieg_digits": ("ieg", {}, "digits", {"epochs": 6}, None),
    "ieg_digits_branches": ("ieg", {"faithful_g_grad": True, "mixup": "beta"}, "digits", {"epochs": 2}, None),
    "ieg_resnet20": ("ieg", {"probe_per_class": 2}, "cifar10", {"iterations": 4, "batch_size": 16}, None),
    "cce_digits": ("cce", {}, "digits", {"epochs": 4}, None),
    "gce_digits_ema": ("gce", {}, "digits", {"epochs": 3}, 0.9),
    "cce_resnet20": ("cce", {}, "cifar10", {"iterations": 4, "batch_size": 16}, None),
}


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


def pinned_curves() -> dict[str, list[dict[str, float]]]:
    """Every cell's curves, computed in a child process held to ``PINNED_ISA`` (the setting is
    read when torch loads, so it cannot be changed in this process)."""
    child = subprocess.run(
        [sys.executable, __file__, "--child"], env={**os.environ, **PINNED_ISA}, capture_output=True, text=True
    )
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def curves() -> dict[str, list[dict[str, float]]]:
    return pinned_curves()


@pytest.mark.parametrize("name", list(CELLS))
def test_curves_are_bit_identical_to_the_recorded_ones(name, curves):
    recorded = json.loads(RECORDED.read_text())[name]
    assert curves[name] == recorded


def child_curves() -> dict[str, list[dict[str, float]]]:
    with tempfile.TemporaryDirectory() as folder:
        write_release(Path(folder))
        return {name: run_cell(name, Path(folder)) for name in CELLS}


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        print(json.dumps(child_curves()))
    else:
        RECORDED.write_text(json.dumps(pinned_curves(), indent=1) + "\n")
        print(f"wrote {RECORDED}")
