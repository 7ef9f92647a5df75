"""The identity of a grid cell and the record of its run (plain data, no torch)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

#: Bump when the engine's semantics change so that no stored cell is silently reused.
ENGINE_VERSION = "1"

#: ``timeout``: stopped after ``--cell-timeout`` seconds (run again by the next ``benchsuite run``, like ``failed``).
RunStatus = Literal["completed", "diverged", "failed", "timeout", "skipped"]


@dataclass(frozen=True)
class CellSpec:
    """One fully resolved run: method × parameters × task × noise × seed × budget.

    ``method_params``/``task_params`` hold every parameter that defines results (defaults
    included), so two specs that would train the same thing hash the same. ``task_options`` holds
    the task parameters that do not change results (a data root): passed to the task, not hashed.
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
    #: Score the method on an EMA of its weights with this decay (``benchsuite.averaging``); None: off.
    eval_ema: float | None = None
    #: Deterministic kernels (``benchsuite.reproducibility``): how the cell runs, not what it
    #: computes, so, like the device and thread count, recorded in its provenance, not hashed.
    deterministic: bool = False

    def identity(self) -> dict[str, Any]:
        data = asdict(self)
        del data["task_options"], data["preset"], data["deterministic"]
        if data["eval_ema"] is None:  # off: the identity cells had before the option existed
            del data["eval_ema"]
        data["engine_version"] = ENGINE_VERSION
        return data

    @property
    def cell_hash(self) -> str:
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

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
        return cls(**data)


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
