"""What makes a cell bit-reproducible, in one place.

A cell's curves and final metrics are a function of its spec and of the conditions its provenance
lists under ``reproducible_under``: re-running it on the same machine (CPU model or GPU), with the
same torch thread count, device and library versions, gives bit-identical numbers, whatever the
process ran before. What it takes:

* **Every random draw comes from the cell's seed.** The engine's generator
  (``TrainContext.generator``) drives shuffling, augmentation and the methods' draws. The
  process-global generators (Python, NumPy, torch on the CPU and every CUDA device), which model
  initialisation and layers such as dropout use, are seeded from the cell's seed when the cell
  starts and again right before its model is built, so whatever a task's ``prepare`` drew from them
  (e.g. only on a first, uncached load) cannot shift the initial weights; when the cell ends they
  are put back, so a cell neither depends on nor disturbs what the process runs around it.
* **Kernels.** cuDNN's autotuner is off during a cell (it picks kernels by timing them, so two runs
  can pick different ones). ``deterministic`` also turns on torch's deterministic algorithms,
  cuDNN's deterministic mode and cuBLAS's fixed workspace (``CUBLAS_WORKSPACE_CONFIG``): needed
  on CUDA, where atomics-based kernels (scatter-add, some convolution backward passes) otherwise
  sum in a varying order. On the CPU the kernels the built-in tasks use are deterministic at a
  fixed thread count without it.
* **Thread count.** A reduction split over threads sums in a different order, so the same cell
  with 1 and 2 torch threads differs in the last bits, and a method whose training amplifies such
  differences ends elsewhere. The pool executor gives each worker CPU cores / workers threads.
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any, Iterator

import numpy as np
import torch

#: cuBLAS's deterministic workspace setting (torch's documented choice; ":16:8" uses less memory).
CUBLAS_WORKSPACE = ":4096:8"

#: The provenance keys a cell's bit-reproducibility depends on (see the module docstring).
REPRODUCIBLE_UNDER = (
    "device", "device_name", "cpu_id", "cpu_capability", "torch_threads", "deterministic", "torch", "numpy", "python", "cuda", "cudnn",
)


def seed_global_rngs(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and every CUDA device) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def cell_random_state(seed: int, device: torch.device) -> Iterator[None]:
    """The global generators seeded from ``seed`` for the block, and put back afterwards."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        seed_global_rngs(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


@contextlib.contextmanager
def kernel_settings(deterministic: bool, device: torch.device) -> Iterator[None]:
    """cuDNN autotuning off and, with ``deterministic``, deterministic kernels on, for the block;
    the process's previous settings are restored afterwards."""
    cudnn = torch.backends.cudnn
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn.deterministic,
        cudnn.benchmark,
    )
    if deterministic and device.type == "cuda":
        # read by torch when it sets up cuBLAS workspaces; without it deterministic mode refuses cuBLAS calls
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    _deterministic_algorithms(deterministic, warn_only=False)
    cudnn.deterministic, cudnn.benchmark = deterministic, False
    try:
        yield
    finally:
        enabled, warn_only, cudnn.deterministic, cudnn.benchmark = previous
        _deterministic_algorithms(enabled, warn_only=warn_only)


def _deterministic_algorithms(mode: bool, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms``, called only when the setting changes: the call
    imports torch's compiler stack (``torch._inductor``, seconds per process) to set its flag."""
    if (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) != (mode, warn_only):
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)


def conditions(deterministic: bool) -> dict[str, Any]:
    """The run-time conditions of a cell that its bit-reproducibility depends on, beyond the
    machine description (``benchsuite.provenance.machine``): read while the cell runs."""
    return {
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "deterministic": deterministic,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "reproducible_under": list(REPRODUCIBLE_UNDER),
    }
