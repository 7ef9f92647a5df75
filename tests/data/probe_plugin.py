"""A test-only plugin for the executor tests (installed with the ``install_plugin`` fixture).

``probe`` is cross entropy that can be slowed down, can kill its own process, can block its
timeout alarm, and logs the pid of every process it starts in. Importing this module also wraps
digits' cached ``load_split`` so that every real load of the data set (a cache miss) is logged
with its pid: the tests read ``$BENCHSUITE_PROBE_DIR/loads`` to count loads per worker.
"""

import functools
import json
import os
import signal
import time
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


class Probe(LossMethod):
    name = "probe"
    summary = "cross entropy with fault injection (tests only)"
    in_default_grid = False
    parameters = {
        "sleep": Param(0.0, "seconds to sleep in every step", low=0.0),
        "die": Param(False, "SIGKILL the own process when the run starts"),
        "block_alarm": Param(False, "block SIGALRM from construction on, so that only a kill from outside stops the run"),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.block_alarm:  # as early as possible in the cell, before the data are prepared
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
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
