"""What in-cell checkpoints cost: the time of one checkpoint write against the time of one epoch.

For each method, the same digits cell (default budget: 60 epochs of 9 steps) is run with a
checkpoint after every epoch (``--checkpoint-every 0``, the most a run ever writes) and without
checkpoints, alternately, ``--repeats`` times each, in this one process. Printed per method: the
median epoch time (training and evaluation, from the curves), the mean time of one checkpoint
write (capture, ``torch.save``, fsync, rename; from the record's provenance), the ratio write /
epoch, the checkpoint's size, and the ratio of whole-cell times with and without checkpoints.
At the default cadence (at most one write every 10 minutes) the cost is one write per 10 minutes.

    python benchmarks/checkpoint_cost.py [--methods cce,ieg,elr,coteaching,dividemix] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import benchsuite
from benchsuite.checkpoint import CheckpointPolicy
from benchsuite.cell import execute_cell
from benchsuite.spec import CellSpec


def digits_cell(method: str) -> CellSpec:
    task = benchsuite.load_task("digits")
    instance = benchsuite.load_method(method)
    return CellSpec(method, instance.identity_config(), "digits", task.identity_config(), "symmetric", 0.4, 0, "b", "b")


def run(spec: CellSpec, folder: Path | None) -> tuple[float, list[float], dict]:
    policy = None if folder is None else CheckpointPolicy(folder, every_seconds=0)
    tic = time.perf_counter()
    record = execute_cell(spec, "cpu", checkpoints=policy)
    assert record.status == "completed", record.error
    return time.perf_counter() - tic, [row["epoch_time"] for row in record.curves], record.provenance.get("checkpoints", {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="cce,ieg,elr,coteaching,dividemix")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'method':12} {'epoch ms':>9} {'write ms':>9} {'write/epoch':>12} {'size kB':>8} {'cell with/without':>18}")
    for method in args.methods.split(","):
        spec = digits_cell(method)
        run(spec, None)  # warm-up: data load and caches
        with_ckpt, without, epochs, writes, size = [], [], [], [], 0
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as folder:
                total, times, info = run(spec, Path(folder))
            with_ckpt.append(total)
            writes.append(info["write_seconds"] / info["written"])
            size = info["bytes"]
            total, times, _ = run(spec, None)
            without.append(total)
            epochs.extend(times)
        epoch, write = statistics.median(epochs), statistics.median(writes)
        ratio = statistics.median(with_ckpt) / statistics.median(without)
        print(f"{method:12} {1e3 * epoch:9.1f} {1e3 * write:9.2f} {write / epoch:12.3f} {size / 1e3:8.0f} {ratio:18.3f}")


if __name__ == "__main__":
    main()
