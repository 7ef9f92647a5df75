"""Where a result came from: code version and commit, library versions, hardware, host, date."""

from __future__ import annotations

import functools
import platform
import shlex
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import benchsuite


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the benchsuite checkout (None when installed from a wheel)."""
    source = Path(benchsuite.__file__).resolve().parent.parent
    if _git(["rev-parse", "--show-toplevel"], source) != str(source):
        return {"commit": None, "dirty": None}
    commit = _git(["rev-parse", "HEAD"], source)
    status = _git(["status", "--porcelain", "--untracked-files=no"], source)
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=4)
def machine(device: str) -> dict[str, Any]:
    import os

    import numpy
    import torch

    info: dict[str, Any] = {
        "benchsuite": benchsuite.__version__,
        **git_state(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": device,
        "device_name": cpu_model(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return info


def provenance(device: str, plugins: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Everything needed to say how a run was produced (the date is the run's own). The thread
    count is read now, not cached with the machine: a process may change it between cells."""
    import torch

    return {**machine(device), "torch_threads": torch.get_num_threads(), "plugins": plugins, "command": shlex.join(sys.argv)}
