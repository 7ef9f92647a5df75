"""The identity of a grid cell and the record of its run (plain data, no torch)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

#: The host's results version: bump it with any change of the host (engine, noise, data
#: preparation, evaluation, the toolkit's models and augmentations) that alters what a cell
#: computes, so that no stored cell is served from the old code. Plugins are covered by their
#: code fingerprints (``benchsuite.fingerprint``) and their declared ``version``.
#: 2: canonical training identities, code fingerprints and this version in the cell identity.
#: 3: the global generators re-seeded right before the model is built; no method chooses the
#: evaluated model (an EMA of the weights is the grid's ``eval_ema``, for every method alike).
RESULTS_VERSION = "3"

#: Identity fields that say which code computed a cell, not what it computes: a stored run that
#: differs from a cell only in these is the same experiment run by other code (``stale``).
CODE_FIELDS = ("method_version", "task_version", "method_code", "task_code", "results_version")
#: Identity fields that vary within one leaderboard row (the seeds) or between its columns.
PER_RUN_FIELDS = ("seed", "noise_rate")

#: ``timeout``: stopped after ``--cell-timeout`` seconds (run again by the next ``benchsuite run``, like ``failed``).
RunStatus = Literal["completed", "diverged", "failed", "timeout", "skipped"]


@dataclass(frozen=True)
class CellSpec:
    """One fully resolved run: method × parameters × task × noise × seed × budget.

    ``method``/``method_params``/``preset`` are the name the grid asked for and its resolved
    parameters (what runs, and how boards name it); ``trains``/``trains_params`` are what that
    name trains, canonically (``Method.canonical``), and they, not the name, enter the identity:
    ``dm`` and ``gr`` with their defaults are one cell. ``task_params`` hold every task parameter
    that defines results (defaults included); ``task_options`` those that do not (a data root):
    passed to the task, not hashed. ``method_code``/``task_code`` fingerprint the plugins' source
    and ``results_version`` is the host's ``RESULTS_VERSION``: edited code never serves old results.
    Fields added after the first stored runs default to ``""`` (not recorded).
    """

    method: str
    method_params: dict[str, Any]
    task: str
    task_params: dict[str, Any]
    noise_kind: str
    noise_rate: float
    seed: int
    method_version: str
    task_version: str
    noise_params: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    #: Clean validation split carved from the training set (for validation-based selection).
    val_fraction: float = 0.0
    preset: str | None = None
    task_options: dict[str, Any] = field(default_factory=dict)
    trains: str = ""
    trains_params: dict[str, Any] = field(default_factory=dict)
    method_code: str = ""
    task_code: str = ""
    results_version: str = ""
    #: Score the method on an EMA of its weights with this decay (``benchsuite.averaging``); None: off.
    eval_ema: float | None = None
    #: Deterministic kernels (``benchsuite.reproducibility``): how the cell runs, not what it
    #: computes, so, like the device and thread count, recorded in its provenance, not hashed.
    deterministic: bool = False

    def identity(self) -> dict[str, Any]:
        """Everything that defines the cell's results; its hash is the cell's key in the store."""
        data = asdict(self)
        for name in ("task_options", "preset", "trains", "trains_params", "deterministic"):
            del data[name]
        if self.eval_ema is None:  # off: the identity cells had before the option existed
            del data["eval_ema"]
        if self.trains:
            data["method"], data["method_params"] = self.trains, self.trains_params
        return data

    @property
    def cell_hash(self) -> str:
        return _hash(self.identity())

    def setting(self) -> dict[str, Any]:
        """The identity without seed and noise rate: the runs of one leaderboard row share it."""
        return {k: v for k, v in self.identity().items() if k not in PER_RUN_FIELDS}

    def lineage_hash(self) -> str:
        """The hash of the identity without the code fields: equal for this cell run by other code."""
        return _hash({k: v for k, v in self.identity().items() if k not in CODE_FIELDS})

    def requested_name(self) -> dict[str, Any]:
        """The name this cell was asked for: method, preset and resolved parameters."""
        return {"method": self.method, "preset": self.preset or "", "params": self.method_params}

    def label(self) -> str:
        """Short human label, e.g. ``gce(q=0.7) · digits · symmetric 0.4 · seed 1``."""
        params = ",".join(f"{k}={v}" for k, v in self.method_params.items())
        method = f"{self.method}@{self.preset}" if self.preset else self.method
        scored = f" · EMA {self.eval_ema:g}" if self.eval_ema is not None else ""
        return f"{method}({params}) · {self.task} · {self.noise_kind} {self.noise_rate:g} · seed {self.seed}{scored}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CellSpec":
        """A spec as stored; fields it predates take their defaults."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _hash(identity: dict[str, Any]) -> str:
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def stale_reason(cell: CellSpec, stored: CellSpec) -> str:
    """Why ``stored`` (the same experiment: ``lineage_hash`` equal) does not count for ``cell``,
    e.g. ``code of method plugin 'dm' changed (1067fa28118f -> 5d0c2e9a7b31)``."""
    method = repr(cell.trains or cell.method)
    labels = {
        "method_code": f"code of method plugin {method}",
        "task_code": f"code of task plugin {cell.task!r}",
        "method_version": f"declared version of method {method}",
        "task_version": f"declared version of task {cell.task!r}",
        "results_version": "host results version",
    }
    changes = [
        f"{label} changed ({getattr(stored, name) or 'unrecorded'} -> {getattr(cell, name) or 'unrecorded'})"
        for name, label in labels.items()
        if getattr(stored, name) != getattr(cell, name)
    ]
    return "; ".join(changes) or "stored under another identity"


@dataclass
class RunRecord:
    """Everything one run produced; the store writes it in one transaction."""

    spec: CellSpec
    status: RunStatus
    curves: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    diverged_epoch: int | None = None
    started_at: str = ""
    finished_at: str = ""
    duration_s: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def cell_hash(self) -> str:
        return self.spec.cell_hash

    @property
    def final(self) -> dict[str, float]:
        """Metrics of the last completed epoch."""
        return dict(self.curves[-1]) if self.curves else {}
