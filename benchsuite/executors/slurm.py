"""slurm: cells as a Slurm job array, through submitit.

The driver submits the cells it has claimed as one job array with ``%array_parallelism`` (Slurm
itself caps how many run at once, and the array keeps its place in the queue), polls the jobs,
and stores each job's record as it lands. A job receives only its cell's spec and prepares the
data on the compute node: nothing is loaded on the login node. One job runs one cell, so a data
set is loaded once per job. Ctrl-C cancels every submitted job (``scancel``) before the driver
exits. The folder of job files (default: ``slurm/`` beside the results database) must be on a
filesystem the nodes share, and the nodes must have the driver's Python environment.

``cluster = "local"`` runs the jobs as processes on this machine (submitit's local executor, which
has no queue: the driver then keeps at most ``array_parallelism`` jobs running); the test suite
uses it, and it is a way to try a Slurm grid file without a cluster.

A job's time limit (``time``; default 1.5 × ``--cell-timeout``) is Slurm's, counted from the job's
start, and so includes the job's start-up (Python, torch and the plugins loading), which a loaded
node can make long. A job writes ``<job id>_started`` in its folder when its cell starts (its
timeout alarm starts then); a job that reaches its time limit without it never ran its cell, and
comes back as lost, with those words, to be retried, not as timed out.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..params import Param
from ..spec import CellSpec, RunRecord
from .base import CellFunctions, CellResult, Executor, ExecutorError, RunSettings, prepare_worker, timeout_record

if TYPE_CHECKING:
    from ..checkpoint import CheckpointPolicy

#: Seconds between two looks at the jobs' states (Slurm: submitit also rate-limits its sacct calls).
POLL_INTERVAL = {"slurm": 10.0, "local": 0.2}
#: How long an ended job's result file may take to appear (a shared filesystem can lag).
RESULT_GRACE = {"slurm": 30.0, "local": 0.0}


def started_marker(folder: Path, job_id: str) -> Path:
    """The file a job writes in its folder when its cell starts, after the job's start-up: the
    driver tells by it a cell stopped at the job's time limit from a job whose start-up took it."""
    return Path(folder) / f"{job_id}_started"


class CellJob:
    """One cell as a submitit job that follows submitit's checkpointing protocol: when Slurm
    pre-empts the job or it reaches its time limit, submitit calls ``checkpoint``, which submits
    the same cell again, and requeues the job (same job id: the driver goes on waiting for it).
    The requeued job resumes from the cell's last in-cell checkpoint (``benchsuite.checkpoint``),
    so only the epochs since that checkpoint are trained again. submitit stops requeuing a job
    that keeps reaching its time limit (its ``max_num_timeout``, 3 by default)."""

    def __call__(
        self,
        cells: CellFunctions,
        spec: CellSpec,
        device: str,
        amp: bool | None,
        timeout: float | None,
        threads: int | None,
        checkpoints: CheckpointPolicy | None = None,
    ) -> RunRecord:
        """Prepare the job (``prepare_worker``), say that the cell starts (``started_marker``),
        run it and return its record."""
        import submitit

        prepare_worker(cells, threads)
        environment = submitit.JobEnvironment()
        started_marker(environment.paths.folder, environment.job_id).touch()
        return cells.execute(spec, device, amp, timeout=timeout, checkpoints=checkpoints)

    def checkpoint(self, *args: Any) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args)


class SlurmExecutor(Executor):
    name = "slurm"
    summary = "cells as a Slurm job array through submitit, with a cap on concurrent jobs"
    extra = "slurm"
    parameters = {
        "partition": Param(None, "Slurm partition", type=str, nullable=True),
        "time": Param(
            None, "time limit of one cell's job in minutes (default: 1.5 × --cell-timeout; one of the two is needed)", type=int, nullable=True, low=1
        ),
        "cpus_per_cell": Param(1, "CPUs of each job (cpus_per_task), also its torch threads", low=1),
        "gpus_per_cell": Param(0, "GPUs of each job (gpus_per_node)", low=0),
        "mem_gb": Param(None, "memory of each job in GB", type=float, nullable=True, low=0.0, low_open=True),
        "array_parallelism": Param(256, "at most this many cells run at once (slurm_array_parallelism)", low=1),
        "folder": Param(None, "job scripts, pickles and logs, on a filesystem the nodes share (default: slurm/ beside the results)", type=str, nullable=True),
        "cluster": Param("slurm", "'slurm', or 'local' to run the jobs as processes on this machine (for tests and trials)", choices=("slurm", "local")),
        "submitit_parameters": Param(
            {}, "more submitit parameters, passed as they are, e.g. { slurm_account = 'lab', slurm_qos = 'high' }", type=dict
        ),
    }

    def check(self, settings: RunSettings) -> None:
        self._require("submitit")
        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ExecutorError(
                "slurm: no Slurm here (sbatch is not on PATH); run the driver on a login node of the cluster, "
                "or set cluster = 'local' in the executor's options to run the jobs on this machine"
            )
        if self.time is None and settings.cell_timeout is None:
            raise ExecutorError("slurm: a job needs a time limit: set the executor's time (minutes) or --cell-timeout (seconds)")

    def start(self, settings: RunSettings) -> None:
        super().start(settings)
        submitit = self._require("submitit")
        self._submitit = submitit
        folder = Path(self.folder) if self.folder else settings.workdir / "slurm"
        self._minutes = self.time or math.ceil(1.5 * settings.cell_timeout / 60)  # type: ignore[operator]
        params: dict[str, Any] = {
            "name": "benchsuite",
            "timeout_min": self._minutes,
            "nodes": 1,
            "tasks_per_node": 1,
            "cpus_per_task": self.cpus_per_cell,
            "gpus_per_node": self.gpus_per_cell,
            "slurm_array_parallelism": self.array_parallelism,
        }
        if self.partition is not None:
            params["slurm_partition"] = self.partition
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        params.update(self.submitit_parameters)
        self._executor = submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster)
        try:
            self._executor.update_parameters(**params)
        except (ValueError, TypeError) as exc:
            raise ExecutorError(f"slurm: submitit rejected the job settings: {exc}") from None
        self._running: dict[Any, CellSpec] = {}
        self._ended_without_result: dict[Any, float] = {}
        self._next_look = 0.0

    def free_slots(self) -> int:
        if self.cluster == "local":  # submitit's local executor has no queue of its own
            return self.array_parallelism - len(self._running)
        return 1 << 30

    def submit(self, specs: list[CellSpec]) -> None:
        s = self.settings
        try:
            with self._executor.batch():
                jobs = [
                    self._executor.submit(CellJob(), self.cells, spec, s.device, s.amp, s.cell_timeout, self.cpus_per_cell, s.checkpoints)
                    for spec in specs
                ]
        except Exception as exc:
            raise ExecutorError(f"slurm: submitting {len(specs)} jobs failed: {exc}") from exc
        self._running.update(zip(jobs, specs))

    def wait(self, timeout: float) -> list[CellResult]:
        end = time.monotonic() + timeout
        while True:
            pause = self._next_look - time.monotonic()
            if pause > 0:
                if time.monotonic() + pause > end:
                    time.sleep(max(0.0, end - time.monotonic()))
                    return []
                time.sleep(pause)
            self._next_look = time.monotonic() + POLL_INTERVAL[self.cluster]
            finished = [job for job in self._running if self._ended(job)]
            if finished or time.monotonic() >= end:
                return [self._result(job) for job in finished]

    def cancel(self) -> None:
        jobs = list(self._running)
        self._running.clear()
        if not jobs:
            return
        if self.cluster == "slurm":  # one scancel for the whole array, not one per cell
            subprocess.run(["scancel", *sorted({str(job.job_id).split("_")[0] for job in jobs})], check=False, capture_output=True)
            return
        for job in jobs:
            job.cancel(check=False)
        deadline = time.monotonic() + 15
        while not all(job.done() for job in jobs) and time.monotonic() < deadline:
            time.sleep(0.1)

    def _ended(self, job: Any) -> bool:
        """Whether the job is over and its result file is there (or will not come any more)."""
        if not job.done():
            return False
        if job.paths.result_pickle.exists():
            return True
        first_seen = self._ended_without_result.setdefault(job, time.monotonic())
        return time.monotonic() - first_seen >= RESULT_GRACE[self.cluster]

    def _result(self, job: Any) -> CellResult:
        spec = self._running.pop(job)
        self._ended_without_result.pop(job, None)
        if job.paths.result_pickle.exists():
            try:
                return CellResult(spec, job.result())
            except self._submitit.core.utils.FailedJobError as exc:  # the job's Python code raised
                return CellResult(spec, RunRecord(spec, "failed", error=f"Slurm job {job.job_id} raised: {exc}"))
        state = job.state
        if state.upper().startswith("TIMEOUT"):
            if not started_marker(job.paths.folder, job.job_id).exists():
                return CellResult(
                    spec, lost=f"Slurm job {job.job_id} reached its time limit of {self._minutes} min before its cell started (its start-up took it)"
                )
            return CellResult(spec, timeout_record(spec, 60.0 * self._minutes, f"Slurm stopped job {job.job_id} at its time limit"))
        tail = "\n".join((job.stderr() or "").strip().splitlines()[-3:])
        return CellResult(
            spec, lost=f"Slurm job {job.job_id} ended in state {state} without a result" + (f"; its stderr ends with:\n{tail}" if tail else "")
        )
