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


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of Linux's /proc/cpuinfo (empty elsewhere)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_id() -> str:
    """Vendor, family, model and stepping of the CPU: what tells processor generations apart
    when the model name does not (virtual machines often report only "AMD EPYC"), and floats
    may differ in their last bits between generations (other kernels, other vector widths)."""
    info = _cpuinfo()
    parts = ("vendor_id", "cpu family", "model", "stepping")
    if all(key in info for key in parts):
        return f"{info['vendor_id']} family {info['cpu family']} model {info['model']} stepping {info['stepping']}"
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
        "cpu_id": cpu_id(),
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
