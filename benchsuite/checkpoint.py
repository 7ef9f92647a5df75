"""In-cell checkpoints: a long cell survives a kill, a pre-emption or a timeout, bit for bit.

At the end of an epoch, at most once every ``every_seconds`` (``--checkpoint-every MINUTES``,
default 10; 0: after every epoch), a cell saves its whole training state to
``<results file>.checkpoints/<cell hash>.pt`` beside the results database: the model, the
optimiser, the schedule, the gradient scaler, the grid's weight average, the method's own state
(``Method.state_dict``), the position of every batch stream the method drew
(``TrainContext.trusted_batches``), every random state (Python's, NumPy's, torch's on the CPU and
the cell's device, the cell's generator), the step, the epoch and the curves so far.

* **Atomic.** The file is written under a temporary name in the same folder, flushed to disk,
  then renamed over the previous checkpoint: a kill or a full disk leaves the last complete
  checkpoint or none, never half a file under the name a resume reads. A write that fails (a
  full disk, a method state that cannot be saved) fails that checkpoint only: the run goes on
  and the failure is counted in its provenance (``checkpoints``).
* **Safe to read.** Loaded with ``torch.load(weights_only=True)``: tensors, numbers, strings and
  containers, never arbitrary objects. Random states are stored as tensors; the rest of the
  metadata (identity, curves, counters) as one JSON string.
* **Only for its cell.** A checkpoint is used only when the cell identity it stores equals the
  cell's (code fingerprints and the host's results version are part of it) and its format is
  this module's ``FORMAT``; otherwise it is ignored and overwritten by the cell's own.
* **Exact.** A resumed run builds its context and calls the method's ``start`` as a fresh run
  does, then puts back everything above and continues with the next epoch. The state it
  continues from is the one an uninterrupted run held at that point, so its curves and final
  metrics are bit-identical to an uninterrupted run's under the conditions of
  ``benchsuite.reproducibility``. The record says where it resumed from (``resumed_from``).

The driver deletes a cell's checkpoint once the cell's completed (or diverged) record is stored.
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .provenance import utc_now
from .spec import CellSpec

if TYPE_CHECKING:
    from .averaging import WeightAverage
    from .engine import TrainContext
    from .method import Method

#: Bump when what a checkpoint holds or means changes: older checkpoints are then not used.
FORMAT = 1
DEFAULT_EVERY_MINUTES = 10.0
SUFFIX = ".pt"
PARTIAL_SUFFIX = ".pt.partial"


class CheckpointError(RuntimeError):
    """A training state that cannot be saved or restored."""


def checkpoint_dir(results: str | Path) -> Path:
    """Where the checkpoints of the cells of the results database ``results`` are kept."""
    results = Path(results)
    return results.parent / f"{results.name}.checkpoints"


@dataclass(frozen=True)
class CheckpointPolicy:
    """Where a grid's cells checkpoint and how often (sent to the workers with the cell)."""

    directory: Path
    #: None: no checkpoints (a policy that only keeps models).
    every_seconds: float | None = DEFAULT_EVERY_MINUTES * 60
    #: Where the cells keep their final and best models (None: not kept; ``benchsuite.models``).
    models: Path | None = None

    def path(self, cell_hash: str) -> Path:
        return self.directory / f"{cell_hash}{SUFFIX}"

    def remove(self, cell_hash: str) -> None:
        """Delete the cell's checkpoint (and a temporary file a killed writer left)."""
        for suffix in (SUFFIX, PARTIAL_SUFFIX):
            (self.directory / f"{cell_hash}{suffix}").unlink(missing_ok=True)


@dataclass
class TrainingState:
    """What a checkpoint saves and a resume fills in: the engine's live objects for one run."""

    ctx: TrainContext
    method: Method
    average: WeightAverage | None
    curves: list[dict[str, float]]


@dataclass
class CellCheckpoint:
    """One cell's checkpoints during one run: when to write, and what was written and restored."""

    policy: CheckpointPolicy
    spec: CellSpec
    written: int = 0
    failed: int = 0
    seconds: float = 0.0
    last_bytes: int = 0
    last_error: str | None = None
    #: Epoch, step, time and writer of the checkpoint this run resumed from (None: from the start).
    resumed_from: dict[str, Any] | None = None
    #: Why an existing checkpoint was not used (identity or format differs, unreadable).
    ignored: str | None = None
    #: The curves of the epochs the resumed run took from its checkpoint.
    restored_curves: list[dict[str, float]] = field(default_factory=list)
    _last_write: float = field(default_factory=time.monotonic)

    @property
    def path(self) -> Path:
        return self.policy.path(self.spec.cell_hash)

    def due(self) -> bool:
        """Whether the cadence asks for a checkpoint now (at an epoch end)."""
        every = self.policy.every_seconds
        return every is not None and time.monotonic() - self._last_write >= every

    def provenance(self) -> dict[str, Any]:
        """What the run's record says about its checkpoints."""
        out: dict[str, Any] = {
            "every_seconds": self.policy.every_seconds,
            "written": self.written,
            "failed": self.failed,
            "write_seconds": round(self.seconds, 4),
            "bytes": self.last_bytes,
        }
        if self.last_error:
            out["last_error"] = self.last_error
        if self.ignored:
            out["ignored"] = self.ignored
        return out

    def save(self, state: TrainingState) -> bool:
        """Write the checkpoint; on failure warn, count it and return False (the run goes on)."""
        tic = time.perf_counter()
        try:
            payload = capture(state, self.spec)
            check_loadable(payload)
            self.last_bytes = write_atomically(payload, self.path, self.policy.directory / f"{self.spec.cell_hash}{PARTIAL_SUFFIX}")
        except Exception as exc:  # a failed checkpoint must never end a run of days
            self.failed += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"checkpoint of {self.spec.label()} not written: {self.last_error}", RuntimeWarning, stacklevel=2)
            return False
        finally:
            self.seconds += time.perf_counter() - tic
        self.written += 1
        self._last_write = time.monotonic()
        return True

    def resume(self, state: TrainingState) -> int:
        """Restore the cell's checkpoint into ``state`` (built as for a fresh run, the method
        started); returns the epoch it was written after, 0 when there is none to use."""
        if not self.path.is_file():
            return 0
        try:
            payload = torch.load(self.path, map_location=state.ctx.device, weights_only=True)
            meta = json.loads(payload["meta"])
        except Exception as exc:
            self.ignored = f"unreadable ({type(exc).__name__}: {exc})"
            warnings.warn(f"checkpoint {self.path} not used: {self.ignored}", RuntimeWarning, stacklevel=2)
            return 0
        reason = mismatch(meta, self.spec)
        if reason:
            self.ignored = reason
            warnings.warn(f"checkpoint {self.path} not used: {reason}", RuntimeWarning, stacklevel=2)
            return 0
        try:
            restore(state, payload, meta)
        except Exception as exc:
            raise CheckpointError(
                f"checkpoint {self.path} matches the cell but could not be restored ({type(exc).__name__}: {exc}); "
                "delete it to run the cell from the start"
            ) from exc
        self.restored_curves = list(meta["curves"])
        self.resumed_from = {k: meta[k] for k in ("epoch", "step", "written_at", "host", "pid")}
        self._last_write = time.monotonic()
        return int(meta["epoch"])


def identity_text(spec: CellSpec) -> str:
    return json.dumps(spec.identity(), sort_keys=True, default=str)


def mismatch(meta: dict[str, Any], spec: CellSpec) -> str | None:
    """Why a checkpoint's metadata does not belong to ``spec`` (None: it does)."""
    if meta.get("format") != FORMAT:
        return f"checkpoint format {meta.get('format')!r}, this benchsuite writes {FORMAT}"
    if meta.get("cell_hash") != spec.cell_hash or meta.get("identity") != identity_text(spec):
        return "written for another cell identity (code or settings changed)"
    return None


def write_atomically(payload: dict[str, Any], path: Path, partial: Path) -> int:
    """``torch.save`` to ``partial``, flushed to disk, then renamed to ``path``; the partial file
    is removed whatever goes wrong (a full disk, a timeout alarm). Returns the size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(partial, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        size = partial.stat().st_size
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return size


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- what is saved ----------------------------------------------------------------------------


def capture(state: TrainingState, spec: CellSpec) -> dict[str, Any]:
    """The checkpoint payload of ``state``: tensors and containers, metadata as JSON."""
    ctx = state.ctx
    rng_meta, rng_tensors = capture_rngs(ctx)
    meta = {
        "format": FORMAT,
        "cell_hash": spec.cell_hash,
        "identity": identity_text(spec),
        "epoch": ctx.epoch,
        "step": ctx.step,
        "curves": state.curves,
        "written_at": utc_now(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "rng": rng_meta,
    }
    average = state.average
    return {
        "meta": json.dumps(meta),
        "model": ctx.model.state_dict(),
        "optimizer": ctx.optimizer.state_dict(),
        "scheduler": object_state(ctx.scheduler),
        "scaler": None if ctx.scaler is None else ctx.scaler.state_dict(),
        "average": None if average is None else {"model": average.average.state_dict(), "updates": average.updates},
        "streams": [stream.state_dict() for stream in ctx.streams],
        "context_state": pack_mapping(ctx.state, "ctx.state"),
        "method": state.method.state_dict(),
        "rng": rng_tensors,
    }


def restore(state: TrainingState, payload: dict[str, Any], meta: dict[str, Any]) -> None:
    """Put a checkpoint's payload into ``state``; the random states last."""
    ctx = state.ctx
    ctx.model.load_state_dict(payload["model"])
    ctx.optimizer.load_state_dict(payload["optimizer"])
    restore_object(ctx.scheduler, payload["scheduler"])
    if ctx.scaler is not None:
        ctx.scaler.load_state_dict(payload["scaler"])
    if state.average is not None:
        state.average.average.load_state_dict(payload["average"]["model"])
        state.average.updates = payload["average"]["updates"]
    if len(payload["streams"]) != len(ctx.streams):
        raise CheckpointError(f"{len(payload['streams'])} batch streams saved, the method drew {len(ctx.streams)}")
    for stream, saved in zip(ctx.streams, payload["streams"]):
        stream.load_state_dict(saved)
    ctx.state.update(unpack_mapping(payload["context_state"], ctx.state))
    state.method.load_state_dict(payload["method"])
    ctx.epoch, ctx.step = int(meta["epoch"]), int(meta["step"])
    state.curves[:] = meta["curves"]
    restore_rngs(ctx, meta["rng"], payload["rng"])


def capture_rngs(ctx: TrainContext) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every random state a run draws from: (JSON part, tensor part)."""
    version, python_state, gauss = random.getstate()
    name, keys, position, has_gauss, cached = np.random.get_state(legacy=True)
    tensors = {
        "python": torch.tensor(python_state, dtype=torch.int64),
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "torch": torch.get_rng_state(),
        "generator": ctx.generator.get_state(),
    }
    if ctx.device.type == "cuda":
        tensors["cuda"] = torch.cuda.get_rng_state(ctx.device)
    meta = {"python": [version, gauss], "numpy": [name, int(position), int(has_gauss), float(cached)]}
    return meta, tensors


def restore_rngs(ctx: TrainContext, meta: dict[str, Any], tensors: dict[str, Any]) -> None:
    version, gauss = meta["python"]
    tensors = {name: tensor.cpu() for name, tensor in tensors.items()}  # loaded onto the cell's device
    random.setstate((version, tuple(tensors["python"].tolist()), gauss))
    name, position, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, tensors["numpy"].numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    ctx.generator.set_state(tensors["generator"])
    if ctx.device.type == "cuda":
        torch.cuda.set_rng_state(tensors["cuda"], ctx.device)


# -- the state of objects: methods' attributes, schedules -------------------------------------

_PLAIN = (type(None), bool, int, float, str)


def _is_plain(value: Any) -> bool:
    """Numbers, strings, None, and lists, tuples and string-keyed dicts of them (JSON-able)."""
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def object_state(obj: Any) -> Any:
    """The state of a schedule or a similar object: its ``state_dict()`` when it has one, else
    its plain attributes (numbers, strings, lists of them: e.g. a step counter); None for None."""
    if obj is None:
        return None
    if callable(getattr(obj, "state_dict", None)):
        return {"state_dict": obj.state_dict()}
    return {"plain": json.dumps({k: v for k, v in vars(obj).items() if _is_plain(v)})}


def restore_object(obj: Any, state: Any) -> None:
    if obj is None or state is None:
        return
    if "state_dict" in state:
        obj.load_state_dict(state["state_dict"])
    else:
        for key, value in json.loads(state["plain"]).items():
            setattr(obj, key, tuple(value) if isinstance(getattr(obj, key, None), tuple) else value)


def pack_value(value: Any, where: str) -> dict[str, Any]:
    """One attribute's value in a form ``torch.load(weights_only=True)`` reads, tagged by kind."""
    if isinstance(value, torch.Tensor):
        return {"kind": "tensor", "value": value.detach(), "device": str(value.device)}
    if isinstance(value, (nn.Module, torch.optim.Optimizer)) or callable(getattr(value, "state_dict", None)):
        return {"kind": "state_dict", "value": value.state_dict()}
    if isinstance(value, np.random.Generator):
        return {"kind": "numpy_generator", "value": json.dumps(value.bit_generator.state)}
    if _is_plain(value):
        return {"kind": "plain", "value": json.dumps(value)}
    if callable(getattr(value, "step", None)):  # a schedule without state_dict(): its counters
        return {"kind": "object", "value": object_state(value)}
    raise CheckpointError(
        f"{where} is a {type(value).__name__}, which a checkpoint cannot save; "
        "give it state_dict()/load_state_dict() or override the method's state_dict()/load_state_dict()"
    )


def unpack_value(packed: dict[str, Any], current: Any) -> Any:
    """The value to hold after restoring ``packed`` over ``current`` (the value ``start`` set):
    tensors are copied into ``current`` when it matches (keeping aliases intact), else put on the
    device they were saved from; objects load their state in place."""
    kind, value = packed["kind"], packed["value"]
    if kind == "tensor":
        if isinstance(current, torch.Tensor) and current.shape == value.shape and current.dtype == value.dtype:
            return current.copy_(value)
        return value.to(packed["device"])
    if kind == "state_dict":
        current.load_state_dict(value)
        return current
    if kind == "numpy_generator":
        current.bit_generator.state = json.loads(value)
        return current
    if kind == "object":
        restore_object(current, value)
        return current
    return json.loads(value)


def pack_mapping(values: dict[str, Any], where: str) -> dict[str, Any]:
    return {name: pack_value(value, f"{where}[{name!r}]") for name, value in values.items()}


def unpack_mapping(packed: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    return {name: unpack_value(value, current.get(name)) for name, value in packed.items()}


def pack_attributes(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The attributes ``names`` of ``obj`` (a method), packed for a checkpoint; unset ones are skipped."""
    owner = type(obj).__name__
    return {name: pack_value(getattr(obj, name), f"{owner}.{name}") for name in names if hasattr(obj, name)}


def restore_attributes(obj: Any, packed: dict[str, Any]) -> None:
    """Set the attributes packed by ``pack_attributes`` on ``obj`` (after its ``start``)."""
    for name, value in packed.items():
        setattr(obj, name, unpack_value(value, getattr(obj, name, None)))


def check_loadable(value: Any, where: str = "checkpoint") -> None:
    """Raise ``CheckpointError`` naming the first value ``torch.load(weights_only=True)`` would
    refuse, before anything is written (a resume must never meet an unreadable checkpoint)."""
    if isinstance(value, (torch.Tensor, torch.Size, torch.dtype, torch.device) + _PLAIN):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool, type(None))):
                raise CheckpointError(f"{where} has a key of type {type(key).__name__}")
            check_loadable(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_loadable(item, f"{where}[{i}]")
        return
    raise CheckpointError(f"{where} is a {type(value).__name__}, which torch.load(weights_only=True) does not read")
