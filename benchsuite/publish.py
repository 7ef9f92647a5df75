"""Published leaderboards: grids under ``leaderboards/grids/``, their results as compact CSV exports,
markdown rendered from those exports, and plots.

Each ``<dir>/grids/<board>.toml`` is one board. ``benchsuite publish`` runs (or reuses) its cells in
``<dir>/.results/<board>.sqlite``, writes ``<dir>/<board>.runs.csv`` (one row per run) and
``<dir>/<board>.curves.csv`` (per-epoch means over seeds of the plotted metrics), renders
``<dir>/<board>.md`` *from the CSV*, and draws ``<dir>/<board>/*.png``. Because the markdown is a
pure function of the committed CSV, ``benchsuite leaderboard --from ...`` (the command in each
board's header) regenerates it byte for byte, and the test suite checks that it does.
``<dir>/reported.csv`` holds the numbers the papers report; ``reported.md`` shows them beside
ours wherever a board measured the same task, noise and method.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import pandas as pd

from .errors import InvalidExportError
from .leaderboard import labelled_rows, mean_ci_cell, normalise_runs
from .results import RUN_COLUMNS
from .spec import RunStatus

#: Run columns a published export drops: the full spec repeats the identity columns beside it.
DROPPED_COLUMNS = ("spec",)
#: The ``info`` keys the renderer reads (metrics, the recipe behind the budget line, the privileged
#: data behind the marks); the rest (noise details, data sizes) stays in the database.
KEPT_INFO = ("task_metrics", "leaderboard_metrics", "recipe", "privileged")
#: The provenance keys the header reads, and the versions worth keeping beside them.
KEPT_PROVENANCE = (
    "benchsuite", "commit", "dirty", "torch", "python", "numpy", "cuda", "plugins", "device", "device_name", "cpu",
    "cpu_id", "cpu_count", "torch_threads", "hostname", "executor",
)  # fmt: skip
#: Per-epoch metrics kept for the plots, beside the task's leaderboard metrics.
PLOTTED_CURVES = ("clean_fit", "noisy_memorised")
REPORTED_FILE = "reported.csv"
#: ``selection``: the epoch a paper's number is from (``best`` test value during training,
#: ``final``, the epoch best on ``validation``, or ``unstated``); ``same_runs``: set on rows that two papers report from the same runs (GR and its
#: extended version DM), naming both tables: such rows are shown once.
REPORTED_COLUMNS = [
    "task", "noise_kind", "noise_rate", "method", "setting", "selection", "metric", "value", "paper", "table", "same_runs", "note",
]  # fmt: skip
SELECTIONS = ("best", "final", "validation", "unstated")


def leaderboard_options(grid_file: str | None, select: str | None) -> dict[str, Any]:
    """Renderer options for a board: the grid's ``select`` (unless overridden), a title and the
    command that produced the runs."""
    options: dict[str, Any] = {}
    if grid_file:
        from .grid import load_grid_file  # the grid module loads the plugin machinery (and torch): only when asked

        grid = load_grid_file(grid_file)
        options.update(
            select=grid.select,
            title=f"benchsuite leaderboard: {Path(grid_file).stem}",
            produced_by=f"benchsuite run {grid_file}",
        )
    if select:
        options["select"] = select
    return options


def compact_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs table without what the renderer never reads (the full spec, noise details, process ids)."""

    def keep(text: str, keys: tuple[str, ...]) -> str:
        return json.dumps({k: v for k, v in json.loads(text).items() if k in keys}, sort_keys=True)

    def keep_provenance(text: str) -> str:
        provenance = json.loads(text)
        kept = {k: v for k, v in provenance.items() if k in KEPT_PROVENANCE}
        capability = (provenance.get("reproducibility") or {}).get("cpu_capability")
        if capability is not None:  # the header names the kernels; the rest of the conditions stays in the database
            kept["reproducibility"] = {"cpu_capability": capability}
        return json.dumps(kept, sort_keys=True)

    return runs.drop(columns=[c for c in DROPPED_COLUMNS if c in runs]).assign(
        info=runs["info"].map(lambda text: keep(text, KEPT_INFO)),
        provenance=runs["provenance"].map(keep_provenance),
    )


#: The columns a runs export must have (older exports lack ``names`` and ``setting``: derived).
REQUIRED_COLUMNS = ("method", "params", "task", "task_params", "noise_kind", "noise_rate", "seed", "status", "info", "provenance")
#: Columns holding JSON, and the numeric columns of the run itself (every column after the run
#: columns of ``results.RUN_COLUMNS`` is a metric, numeric too).
JSON_COLUMNS = ("params", "task_params", "info", "provenance", "names", "setting")
NUMERIC_COLUMNS = ("noise_rate", "seed", "epochs", "diverged_epoch", "duration_s")
STATUSES = get_args(RunStatus)


def read_runs_export(path: str | Path) -> pd.DataFrame:
    """A runs CSV (``benchsuite export`` or a published board) as the renderer's input, checked
    against the export's schema first: the columns, a complete row per line, numbers where numbers
    belong, JSON where JSON belongs, known statuses. A file that does not match is refused with its
    name and first bad line (``InvalidExportError``), never rendered into a wrong board. Exports
    written before the ``names`` and ``setting`` columns are read too: their rows are told apart
    by method, parameters and task parameters only (``leaderboard.normalise_runs``)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidExportError(f"no runs export at {path}; `benchsuite export --out {path}` or `benchsuite publish` writes one")
    text = path.read_text(errors="replace")
    lines = _export_lines(path, text)
    runs = pd.read_csv(io.StringIO(text), dtype={"preset": "string", "error": "string"})
    problems = [(int(bad.to_numpy().argmax()), why) for bad, why in _cell_checks(runs) if bad.any()]
    if problems:
        row, why = min(problems, key=lambda problem: problem[0])
        raise InvalidExportError(f"{path}:{lines[row]}: {why(runs.iloc[row])}; not a benchsuite runs export as written")
    return runs.assign(preset=runs.preset.astype(object).where(runs.preset.notna(), None))


def _export_lines(path: Path, text: str) -> list[int]:
    """The line of each record of the CSV ``text`` read from ``path`` (records may span lines),
    after checking the header and that every record is complete."""
    if not text.strip():
        raise InvalidExportError(f"{path}: the file is empty; not a benchsuite runs export")
    if not text.endswith("\n"):
        raise InvalidExportError(f"{path}:{text.count(chr(10)) + 1}: the last line is cut off (no line end): a truncated export")
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    missing = sorted(set(REQUIRED_COLUMNS) - set(header))
    if missing:
        raise InvalidExportError(f"{path}:1: not a benchsuite runs export: the header lacks the columns {', '.join(missing)}")
    lines = []
    try:
        for record in reader:
            if len(record) != len(header):
                raise InvalidExportError(
                    f"{path}:{reader.line_num}: {len(record)} fields where the header has {len(header)}: a cut-off or damaged row"
                )
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise InvalidExportError(f"{path}:{reader.line_num}: not a well-formed CSV row ({exc})") from None
    return lines


def _cell_checks(runs: pd.DataFrame) -> Iterator[tuple[pd.Series, Callable[[pd.Series], str]]]:
    """Per rule of the export's schema: the mask of the rows that break it, and what to say about
    such a row. Checked column by column, so a published board's few hundred rows cost little."""
    for column in REQUIRED_COLUMNS[:5]:
        yield runs[column].isna(), lambda row, c=column: f"{c} is empty"
    yield ~runs.status.isin(STATUSES), lambda row: f"status {row['status']!r} is not one of {', '.join(STATUSES)}"
    for column in ("seed", "noise_rate"):
        yield runs[column].isna(), lambda row, c=column: f"{c} is empty"
    run_columns = set(RUN_COLUMNS)
    for column in runs.columns:
        values = runs[column]
        if (column in NUMERIC_COLUMNS or column not in run_columns) and not pd.api.types.is_numeric_dtype(values):
            yield values.notna() & pd.to_numeric(values, errors="coerce").isna(), lambda row, c=column: f"{c} = {row[c]!r} is not a number"
        if column in JSON_COLUMNS:
            yield values.notna() & ~values.map(_is_json, na_action="ignore").astype(bool), lambda row, c=column: f"{c} is not valid JSON"


def _is_json(value: Any) -> bool:
    try:
        json.loads(value)
    except (TypeError, ValueError):
        return False
    return True


def curve_means(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per board row (``row``, labelled as in the leaderboard), noise rate and epoch: the mean over
    completed seeds of the task's leaderboard metrics and of ``PLOTTED_CURVES``."""
    runs = normalise_runs(runs)
    labelled = pd.concat([labelled_rows(g, "row") for _, g in runs.groupby(["task", "noise_kind"], sort=True)])
    completed = labelled[labelled.status == "completed"]
    metrics = sorted({m for i in completed["info"] for m in json.loads(i).get("leaderboard_metrics", [])})
    columns = [c for c in (*metrics, *PLOTTED_CURVES) if c in curves]
    keyed = curves.merge(completed[["cell_hash", "task", "noise_kind", "noise_rate", "row"]], on="cell_hash")
    keys = ["task", "noise_kind", "noise_rate", "row", "epoch"]
    means = keyed.groupby(keys, sort=True)[columns].mean().reset_index()
    return means.round(6)


def plot_board(means: pd.DataFrame, folder: Path, board: str) -> None:
    """Per noise rate (r = 0 too): the test metric per epoch, and the clean- and noisy-subset fit per epoch
    (when the task tracks it), from ``curve_means`` output."""
    from .plotting import plot_epoch_curves

    metric = next(c for c in means if c.startswith("test_"))
    fit = [("clean_fit", "clean-labelled examples fitted"), ("noisy_memorised", "noisy-labelled examples fitted to their wrong label")]
    for rate in sorted(means.noise_rate.unique()):
        plot_epoch_curves(means, [(metric, metric)], rate, folder / f"{metric}_r{rate:g}.png", f"{board}: {metric} per epoch, noise {rate:g}")
        if "clean_fit" in means:
            plot_epoch_curves(means, fit, rate, folder / f"fit_r{rate:g}.png", f"{board}: fit of the clean and the noisy subset per epoch, noise {rate:g}")


def write_board_report(root: Path, board: str, runs: pd.DataFrame, select: str, host: Any) -> str:
    """The board's HTML report (``benchsuite.report``) from its committed exports (``runs``: the
    runs export as ``read_runs_export`` returned it), into
    ``<root>/<board>/report/`` when it is at most ``report.PUBLISH_LIMIT_BYTES``; a larger one is
    not kept (the returned message gives the command that writes it anywhere)."""
    import shutil
    import tempfile

    from .report import PUBLISH_LIMIT_BYTES, prepare_output, write_report

    runs_csv, curves_csv, target = root / f"{board}.runs.csv", root / f"{board}.curves.csv", root / board / "report"
    command = f"benchsuite report --from {runs_csv}" + (f" --curves {curves_csv}" if curves_csv.is_file() else "") + f" --out {target}"
    curves = pd.read_csv(curves_csv) if curves_csv.is_file() else None
    with tempfile.TemporaryDirectory(dir=root) as scratch:
        files = write_report(
            runs, Path(scratch) / "report", curves=curves, command=command,
            title=f"benchsuite report: {board}", select=select, host=host,
        )  # fmt: skip
        size = files.total_bytes
        if size > PUBLISH_LIMIT_BYTES:
            return f"the report of {board} is {size / 1e6:.2f} MB, above {PUBLISH_LIMIT_BYTES / 1e6:g} MB: not kept; `{command}` writes it"
        prepare_output(target)  # refuses a folder that is not an earlier report
        shutil.rmtree(target)
        shutil.move(str(Path(scratch) / "report"), target)
    return f"wrote {target / 'index.html'} ({size / 1e6:.2f} MB)"


def render_reported(reported: pd.DataFrame, measured: dict[str, pd.DataFrame] | None = None) -> str:
    """The papers' numbers, one table per task, noise kind and metric: rows are method, setting,
    selection and source, columns noise rates. ``measured`` maps board names to their runs; where a
    board has completed runs of the same task and noise kind, its rows are added (final epoch)."""
    missing = set(REPORTED_COLUMNS) - set(reported)
    if missing:
        raise ValueError(f"the reported-numbers file lacks the columns {', '.join(sorted(missing))}")
    reported = _one_source(reported.astype({"setting": object, "note": object, "same_runs": object}))
    out = [
        "# Reported numbers from the method papers",
        "",
        f"<!-- generated by benchsuite from {REPORTED_FILE}: do not edit; regenerate with `benchsuite publish --render-only` -->",
        "",
        "Numbers as printed in the papers (test set, %), with the paper and table of each. **selection**: the epoch "
        "a number is from — `best` (the best test value during training: chosen on the test set, an optimistic "
        "oracle), `final` (when training stops), `validation` (the epoch best on a validation set) or `unstated` "
        "(the source does not say). Numbers that GR and its "
        "extended version DM report from the same runs appear once, with both tables as their source and both "
        f"names (`dm = gr`). The notes in `{REPORTED_FILE}` say how each number was obtained (backbone, numbers "
        "printed as fractions in a percent table and converted). Rows whose source is a board are this suite's "
        "own mean ± half-width of the 95 % t-interval over seeds (n), final epoch, for the same task and noise kind.",
    ]
    for (task, kind, metric), group in reported.groupby(["task", "noise_kind", "metric"], sort=True):
        ours = [row for board, runs in sorted((measured or {}).items()) for row in _measured_rows(runs, board, task, kind, metric)]
        rates = sorted(set(group.noise_rate) | {r for *_, cells in ours for r in cells})
        header = ["method", "setting", "selection", "source", *[f"r={r:g}" for r in rates]]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] * 4 + ["---:"] * len(rates)) + "|"]
        for (method, setting, selection, source), rows in group.groupby(["method", "setting", "selection", "source"], sort=True):
            by_rate = {r: "; ".join(f"{v:g}" for v in rows[rows.noise_rate == r].value) for r in rates}
            lines.append("| " + " | ".join([method, setting or "–", selection, source, *[by_rate[r] or "–" for r in rates]]) + " |")
        for method, setting, source, cells in ours:
            lines.append("| " + " | ".join([method, setting, "final", source, *[cells.get(r, "–") for r in rates]]) + " |")
        noise = "no synthetic noise" if kind == "none" else f"{kind} noise"
        out += ["", f"## {task} — {noise} — {metric}", "", *lines]
    return "\n".join(out) + "\n"


def _one_source(reported: pd.DataFrame) -> pd.DataFrame:
    """The reported rows with a ``source`` (paper and table, or for rows two papers report from the
    same runs, both tables) and those rows merged into one, named by both papers' method names."""
    reported = reported.fillna({"setting": "", "note": "", "same_runs": ""})
    source = reported.same_runs.where(reported.same_runs != "", reported.paper + " " + reported.table)
    reported = reported.assign(source=source)
    key = ["task", "noise_kind", "noise_rate", "setting", "selection", "metric", "value", "source"]
    names = reported.groupby(key, sort=False).method.transform(lambda m: " = ".join(sorted(set(m))))
    return reported.assign(method=names.where(reported.same_runs != "", reported.method)).drop_duplicates([*key, "method"])


def _measured_rows(runs: pd.DataFrame, board: str, task: str, kind: str, metric: str) -> list[tuple[str, str, str, dict[float, str]]]:
    """(method, setting, source, cells by rate) for each row of a board's section: the row label
    as the method, the parameters of its names as the setting."""
    rows = []
    same = normalise_runs(runs[(runs.task == task) & (runs.noise_kind == kind)])
    if metric not in same or same.empty:
        return rows
    same = labelled_rows(same)
    same = same[same.status == "completed"]
    for label, setting_runs in same.groupby("label", sort=True):
        cells = {}
        for rate, group in setting_runs.groupby("noise_rate", sort=True):
            values = group[metric].dropna()
            if len(values):
                cells[rate] = mean_ci_cell(values, percent=True)
        names = sorted({json.dumps(n, sort_keys=True) for entries in setting_runs.names for n in json.loads(entries)})
        settings = [";".join(f"{k}={v}" for k, v in json.loads(n)["params"].items()) or "defaults" for n in names]
        if len(names) > 1:
            settings = [f"{json.loads(n)['method']}: {text}" for n, text in zip(names, settings)]
        rows.append((label, " = ".join(settings), f"measured here (board {board})", cells))
    return rows
