"""A test-only plugin for the executor tests (installed with the ``install_plugin`` fixture).

``probe`` is cross entropy that can be slowed down, can kill its own process, can block its
timeout alarm, and logs the pid of every process it starts in. Importing this module also wraps
digits' cached ``load_split`` so that every real load of the data set (a cache miss) is logged
with its pid: the tests read ``$BENCHSUITE_PROBE_DIR/loads`` to count loads per worker.

With ``$BENCHSUITE_PROBE_RAY_START_DELAY`` set (seconds), importing this module in a Ray worker
process sleeps that long: a Ray worker imports the plugins before its first cell starts, so this
is a worker slow to start (a loaded machine, a slow filesystem), as the Ray executor must tolerate.
The delay is logged to ``$BENCHSUITE_PROBE_DIR/ray_start_delays`` (pid, and when it ended).
"""

import functools
import json
import os
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import torch.nn.functional as F

from benchsuite import LossMethod, LossOutput, Param, hookimpl
from benchsuite_plugins.digits import digits

LOG = Path(os.environ["BENCHSUITE_PROBE_DIR"])
_load_uncached = digits.load_split.__wrapped__


@functools.lru_cache(maxsize=1)
def counted_load_split():
    with open(LOG / "loads", "a") as f:
        f.write(f"{os.getpid()}\n")
    return _load_uncached()


digits.load_split = counted_load_split


def _delay_a_ray_worker_start() -> None:
    """Sleep ``$BENCHSUITE_PROBE_RAY_START_DELAY`` seconds if this process is a Ray worker (not
    the driver, which imports the plugins too), then log it."""
    seconds = float(os.environ.get("BENCHSUITE_PROBE_RAY_START_DELAY", "0"))
    if not seconds or "ray" not in sys.modules:
        return
    import ray

    if ray._private.worker.global_worker.mode != ray.WORKER_MODE:
        return
    time.sleep(seconds)
    with open(LOG / "ray_start_delays", "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "until": datetime.now(timezone.utc).isoformat()}) + "\n")


_delay_a_ray_worker_start()


class Probe(LossMethod):
    name = "probe"
    summary = "cross entropy with fault injection (tests only)"
    in_default_grid = False
    parameters = {
        "sleep": Param(0.0, "seconds to sleep in every step", low=0.0),
        "die": Param(False, "SIGKILL the own process when the run starts"),
        "block_alarm": Param(False, "block and ignore SIGALRM from construction on, so that only a kill from outside stops the run"),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.block_alarm:  # as early as possible in the cell, before the data are prepared
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            # and ignored: in a process with other threads (a Ray worker's) the kernel delivers the
            # alarm to a thread that does not block it, and Python then runs the cell's handler
            if threading.current_thread() is threading.main_thread():  # where handlers can be set
                signal.signal(signal.SIGALRM, signal.SIG_IGN)
            # logged here, not only in start(): under load the driver may kill this cell at its hard
            # deadline before the data are prepared and start() runs
            with open(LOG / "blocked", "a") as f:
                f.write(f"{os.getpid()}\n")

    def start(self, ctx):
        with open(LOG / "started", "a") as f:
            f.write(json.dumps({"pid": os.getpid(), **self.config}) + "\n")
        if self.die:
            os.kill(os.getpid(), signal.SIGKILL)

    def compute(self, logits, targets):
        if self.sleep:
            time.sleep(self.sleep)
        return LossOutput(F.cross_entropy(logits, targets))


@hookimpl
def register_methods(register):
    register(Probe)
