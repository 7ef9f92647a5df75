"""Kept models: the trained predictor of a cell, saved beside the results to be scored again later.

``benchsuite run --keep-models`` keeps, per cell, in ``<results file>.models/<cell hash>/``:

* ``final.pt``: the predictor the run's final metrics were computed on (``Method.eval_model``, or
  the grid's EMA of it), written when the cell completes;
* ``best.pt``: where the run evaluates a validation split (``val_fraction`` > 0, or a method
  that holds one out), the predictor of the epoch with the best validation score so far, written
  at that epoch's end. The score is the validation counterpart of the task's primary metric
  (``val_acc`` for ``test_acc``), else ``val_acc`` (MARS scores its validation split by
  classification accuracy).

Each file holds the predictor's ``state_dict`` and, as one JSON string, the whole cell spec
(method and its parameters, task and its parameters and options, noise, seed, budget, code
fingerprints), the cell hash, the epoch and the metrics it scored then: everything needed to
rebuild the network for its task and score it again (``evaluate_kept``). Files are written
atomically (``benchsuite.checkpoint.write_atomically``) and read with
``torch.load(weights_only=True)``; a write that fails warns and is recorded in the run's
provenance (``kept_models``), the run goes on.

Scoring again builds the cell's context exactly as its run did (same seed, data, model, the
method's ``start``), loads the kept weights into the method's predictor and calls the task's
``evaluate``: on the same machine and thread count the metrics equal the stored ones exactly.
A model whose cell identity no longer matches the installed code (a plugin or the host changed)
is refused, as is any file that is not a kept model.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .checkpoint import check_loadable, write_atomically
from .errors import UsageError
from .provenance import utc_now
from .spec import CellSpec, stale_reason

if TYPE_CHECKING:
    from .task import PreparedData, Task

#: Bump when what a kept model holds or means changes.
FORMAT = 1
#: What the ``kind`` of a kept model's metadata says (a torch file of anything else is refused).
KIND = "benchsuite-kept-model"
WHICH = ("final", "best")


class KeptModelError(UsageError):
    """A file that is not a usable kept model (missing, foreign, of another task or code)."""


def models_dir(results: str | Path) -> Path:
    """Where the kept models of the cells of the results database ``results`` go."""
    results = Path(results)
    return results.parent / f"{results.name}.models"


def model_path(directory: Path, cell_hash: str, which: str = "final") -> Path:
    return directory / cell_hash / f"{which}.pt"


def validation_metric(row: dict[str, float], primary_metric: str) -> str | None:
    """The validation score a run's best model is chosen on, None when the run reports none."""
    for name in ("val_" + primary_metric.removeprefix("test_"), "val_acc"):
        if name in row:
            return name
    return None


@dataclass
class ModelKeeper:
    """Keeps one cell's models during its run: the best on validation at epoch ends, the final
    one at the end (``benchsuite.engine.train``)."""

    directory: Path
    spec: CellSpec
    primary_metric: str
    higher_is_better: bool = True
    kept: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _best: float | None = None
    _looked_for_best: bool = False

    def path(self, which: str) -> Path:
        return model_path(self.directory, self.spec.cell_hash, which)

    def epoch_end(self, model: nn.Module, epoch: int, step: int, row: dict[str, float]) -> None:
        """Keep ``model`` as ``best.pt`` when this epoch's validation score is the best so far."""
        metric = validation_metric(row, self.primary_metric)
        if metric is None or not math.isfinite(row[metric]):
            return
        if not self._looked_for_best:
            self._take_up_best(epoch)
        score = row[metric]
        if self._best is not None and (score <= self._best if self.higher_is_better else score >= self._best):
            return
        if self._write("best", model, epoch, step, row, selected_on=metric):
            self._best = score

    def finish(self, model: nn.Module, epoch: int, step: int, row: dict[str, float]) -> None:
        """Keep the model the final metrics were computed on."""
        self._write("final", model, epoch, step, row)

    def provenance(self) -> dict[str, Any]:
        """What the record says: each kept file (relative to the results folder), epoch and size."""
        out: dict[str, Any] = dict(self.kept)
        if self.errors:
            out["errors"] = self.errors
        return out

    def _take_up_best(self, epoch: int) -> None:
        """On a resumed run, the best model the interrupted run kept before the epoch it resumes
        after counts (its later epochs are trained again, identically)."""
        self._looked_for_best = True
        try:
            kept = load_kept(self.path("best"))
        except KeptModelError:
            return
        meta = kept.meta
        if meta["cell_hash"] == self.spec.cell_hash and meta["epoch"] < epoch and meta.get("selected_on") in meta["metrics"]:
            self._best = float(meta["metrics"][meta["selected_on"]])
            self.kept["best"] = self._entry(self.path("best"), meta["epoch"], self.path("best").stat().st_size)

    def _write(self, which: str, model: nn.Module, epoch: int, step: int, row: dict[str, float], **extra: Any) -> bool:
        path = self.path(which)
        tic = time.perf_counter()
        try:
            payload = kept_payload(model, self.spec, which, epoch, step, row, **extra)
            check_loadable(payload)
            size = write_atomically(payload, path, path.with_suffix(".pt.partial"))
        except Exception as exc:  # a model that cannot be kept must never end the run
            message = f"{which}: {type(exc).__name__}: {exc}"
            self.errors.append(message)
            warnings.warn(f"model of {self.spec.label()} not kept ({message})", RuntimeWarning, stacklevel=2)
            return False
        self.kept[which] = self._entry(path, epoch, size, seconds=time.perf_counter() - tic)
        return True

    def _entry(self, path: Path, epoch: int, size: int, seconds: float | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": str(path.relative_to(self.directory.parent)), "epoch": epoch, "bytes": size}
        if seconds is not None:
            entry["write_seconds"] = round(seconds, 4)
        return entry


def kept_payload(
    model: nn.Module, spec: CellSpec, which: str, epoch: int, step: int, row: dict[str, float], **extra: Any
) -> dict[str, Any]:
    from . import __version__

    meta = {
        "kind": KIND,
        "format": FORMAT,
        "which": which,
        "cell_hash": spec.cell_hash,
        "spec": spec.to_dict(),
        "label": spec.label(),
        "epoch": epoch,
        "step": step,
        "metrics": {k: v for k, v in row.items() if isinstance(v, (int, float))},
        "model_class": type(model).__name__,
        "written_at": utc_now(),
        "benchsuite": __version__,
        "torch": torch.__version__,
        **extra,
    }
    return {"meta": json.dumps(meta), "model": model.state_dict()}


@dataclass
class KeptModel:
    """A kept model as read back: its metadata and weights (on the CPU)."""

    path: Path
    meta: dict[str, Any]
    state: dict[str, torch.Tensor]

    @property
    def spec(self) -> CellSpec:
        return CellSpec.from_dict(self.meta["spec"])


def load_kept(path: str | Path) -> KeptModel:
    """Read a kept model (``torch.load(weights_only=True)``, memory-mapped: looking through many
    kept models for their metadata reads little of their weights); ``KeptModelError`` naming the
    file when it is missing, unreadable, or not a kept model of this format."""
    path = Path(path)
    if not path.is_file():
        raise KeptModelError(f"no kept model at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # weights read when used
    except Exception as exc:
        raise KeptModelError(f"{path} is not a kept model: torch.load(weights_only=True) refused it ({type(exc).__name__})") from None
    try:
        meta = json.loads(payload["meta"])
        kind, state = meta["kind"], payload["model"]
    except (TypeError, KeyError, IndexError, ValueError):
        raise KeptModelError(f"{path} is not a kept model (no benchsuite metadata)") from None
    if kind != KIND or not isinstance(state, dict):
        raise KeptModelError(f"{path} is not a kept model (its kind is {kind!r})")
    if meta.get("format") != FORMAT:
        raise KeptModelError(f"{path} is a kept model of format {meta.get('format')!r}; this benchsuite reads {FORMAT}")
    return KeptModel(path, meta, state)


def current_spec(spec: CellSpec, method: Any, task_cls: type) -> CellSpec:
    """``spec`` with the code fields of the installed plugins and host (as a grid would build it now)."""
    from .fingerprint import code_fingerprint
    from .spec import RESULTS_VERSION

    trains = method.canonical().method
    return replace(
        spec,
        method_version=trains.version,
        task_version=task_cls.version,
        method_code=code_fingerprint(trains.__module__),
        task_code=code_fingerprint(task_cls.__module__),
        results_version=RESULTS_VERSION,
    )


@dataclass
class Evaluation:
    """A kept model scored again: its metrics now, and those it scored when it was kept."""

    kept: KeptModel
    metrics: dict[str, float]
    seconds: float

    @property
    def kept_metrics(self) -> dict[str, float]:
        return {k: self.kept.meta["metrics"][k] for k in self.metrics if k in self.kept.meta["metrics"]}


def rebuild(kept: KeptModel, device: torch.device, task_options: dict[str, Any] | None = None) -> tuple[nn.Module, Task, PreparedData]:
    """The kept predictor loaded into the network its cell builds, with the cell's task and data:
    the context is built as the run built it, the method started, its predictor filled with the
    kept weights. ``task_options`` override the stored ones (a data root on another machine)."""
    from .engine import build_context
    from .plugins import get_host

    spec = kept.spec
    host = get_host()
    method = host.method_class(spec.method)(**spec.method_params)
    task_cls = host.task_class(spec.task)
    task = task_cls(**spec.task_params, **{**spec.task_options, **(task_options or {})})
    now = current_spec(spec, method, task_cls)
    if now.cell_hash != kept.meta["cell_hash"]:
        raise KeptModelError(f"{kept.path} was kept by other code than is installed: {stale_reason(now, spec)}")
    ctx = build_context(method, task, spec, device)
    method.start(ctx)
    predictor = method.eval_model(ctx)
    try:
        predictor.load_state_dict(kept.state)
    except RuntimeError as exc:
        raise KeptModelError(f"{kept.path} does not fit the network of {spec.task}: {str(exc).splitlines()[0]}") from None
    return predictor, task, ctx.data


def evaluate_kept(kept: KeptModel, device: torch.device, task_options: dict[str, Any] | None = None) -> Evaluation:
    """Score a kept model on its task's evaluation, without training, under the cell's random
    state and kernel settings (``benchsuite.reproducibility``), as its run scored it."""
    from .reproducibility import cell_random_state, kernel_settings

    tic = time.perf_counter()
    spec = kept.spec
    with cell_random_state(spec.seed, device), kernel_settings(spec.deterministic, device):
        predictor, task, data = rebuild(kept, device, task_options)
        metrics = task.evaluate(predictor, data, device)
    return Evaluation(kept, metrics, time.perf_counter() - tic)


def ranked_lists(kept: KeptModel, device: torch.device, queries: int, k: int, task_options: dict[str, Any] | None = None) -> list[Any]:
    """The top-``k`` ranked lists of ``queries`` queries of a kept model's retrieval task (a
    task's ``ranked_lists``: MARS), for ``plotting.ranked_figure``."""
    from .reproducibility import cell_random_state, kernel_settings

    spec = kept.spec
    with cell_random_state(spec.seed, device), kernel_settings(spec.deterministic, device):
        predictor, task, data = rebuild(kept, device, task_options)
        if not callable(getattr(task, "ranked_lists", None)):
            raise KeptModelError(f"{kept.path}: task {spec.task!r} draws no ranked lists (MARS does)")
        return task.ranked_lists(predictor, data, device, queries, k)


def find_kept(results: str | Path, which: str = "final", **where: Any) -> list[KeptModel]:
    """The kept models of the database ``results`` whose cell matches ``where`` (``method``,
    ``task``, ``noise_kind``, ``noise_rate``, ``seed``: None matches anything; ``cell``: a cell
    hash or a prefix of one), in cell-hash order."""
    directory = models_dir(results)
    cell = where.pop("cell", None)
    found = []
    for path in sorted(directory.glob(f"*/{which}.pt")) if directory.is_dir() else []:
        if cell is not None and not path.parent.name.startswith(cell):
            continue
        kept = load_kept(path)
        spec = kept.spec
        names = {spec.method, spec.trains} if spec.trains else {spec.method}
        wanted = {k: v for k, v in where.items() if v is not None}
        if "method" in wanted and wanted.pop("method") not in names:
            continue
        if all(getattr(spec, key) == value for key, value in wanted.items()):
            found.append(kept)
    return found
