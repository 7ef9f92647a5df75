"""The ``benchsuite`` command line."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import UnwritablePathError, UsageError
from .validation import RULES, Number, budget_rule, parse_list

DEFAULT_RESULTS = "benchsuite-results/results.sqlite"
#: Where ``run`` stores a grid that is not the default grid as it is (``default_results``).
RESULTS_DIR = "benchsuite-results"
COMMAND_LINE_RESULTS = "command-line"
#: Exit status of ``run --no-wait`` when cells are left to another live driver (none failed).
MISSING_CELLS_EXIT = 3
#: ``run`` prints a leaderboard of at most this many lines whole; a longer one as a summary.
SHORT_BOARD_LINES = 60
#: The loss methods whose weight curves a publish draws, with their default parameters.
PLOTTED_WEIGHT_METHODS = ("cce", "mae", "mse", "gce", "sl", "gr", "dm", "imae")


class BadInput(click.ClickException):
    """Invalid user input (grid, names, parameters): exit status 2, message only."""

    exit_code = 2


class _Main(click.Group):
    """The command group: a ``UsageError`` from any command is the user's mistake (exit 2, its
    message, no traceback); Ctrl-C exits 130 wherever it lands, rendering included. Any other
    exception is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            raise BadInput(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("\ninterrupted", err=True)
            ctx.exit(130)


class _Checked(click.ParamType):
    """A number option under the rule of the grid key it overrides (``validation.RULES``)."""

    def __init__(self, rule: Number) -> None:
        self.rule = rule
        self.name = "integer" if rule.kind is int else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.rule.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _seeds_option(ctx: click.Context, param: click.Parameter, text: str | None) -> tuple[int, ...] | None:
    """``--seeds 0,1,2``: distinct seeds, each under the rule of a grid file's seeds."""
    if text is None:
        return None
    try:
        seeds = tuple(int(s) for s in parse_list(text, RULES["seed"]))
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    if len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"{text!r} has duplicates", ctx, param)
    return seeds


def writable_file(path: str, option: str) -> Path:
    """``path`` as an output file of ``option``, refused up front (naming both) when its folder is
    missing or read-only or the name is taken by a folder."""
    out = Path(path)
    folder = out.parent
    problem = (
        "the path is empty" if not path
        else "it is a folder" if out.is_dir()
        else f"the folder {folder} does not exist" if not folder.is_dir()
        else f"the folder {folder} is not writable" if not os.access(folder, os.W_OK | os.X_OK)
        else "the file is read-only" if out.exists() and not os.access(out, os.W_OK)
        else None
    )  # fmt: skip
    if problem:
        raise UnwritablePathError(f"{option} {path!r}: cannot write there: {problem}")
    return out


def write_text(path: str, text: str, option: str) -> Path:
    """Write ``text`` to ``path`` (checked by ``writable_file``); an OS refusal names the path too."""
    out = writable_file(path, option)
    try:
        out.write_text(text)
    except OSError as exc:
        raise UnwritablePathError(f"{option} {path!r}: cannot write there: {exc.strerror}") from None
    return out


def _host() -> Any:
    from .plugins import PluginLoadError, get_host

    try:
        return get_host()
    except PluginLoadError as exc:
        raise click.ClickException(str(exc)) from None


def _results_option(f: Any) -> Any:
    return click.option(
        "--results",
        default=DEFAULT_RESULTS,
        show_default=True,
        type=click.Path(dir_okay=False),
        help="SQLite results database.",
    )(f)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
# The version of this package, not importlib.metadata's "benchsuite": that lookup matches metadata
# directories by their name up to the first "-", so a benchsuite-hints-0.1.dist-info answers it.
@click.version_option(version=__version__, prog_name="benchsuite")
def main() -> None:
    """Benchmark robust training methods under label noise: run grids, store results, publish leaderboards."""


def default_results(grid_file: str | None, changed: bool) -> str:
    """The database ``run`` uses without ``--results``: the main job's for the default grid as it
    is, one per grid file (``benchsuite-results/<stem>/``), and one for every other command-line
    grid (``benchsuite-results/command-line/``), so a quick try never lands on the main board."""
    if grid_file:
        return f"{RESULTS_DIR}/{Path(grid_file).stem}/results.sqlite"
    return f"{RESULTS_DIR}/{COMMAND_LINE_RESULTS}/results.sqlite" if changed else DEFAULT_RESULTS


#: ``run`` options that change what the grid computes (not where or how it runs).
GRID_OPTIONS = ("methods", "tasks", "noises", "seeds", "epochs", "iterations", "batch_size", "lr", "val_fraction", "eval_ema")


def _grid_options_given(ctx: click.Context) -> bool:
    from click.core import ParameterSource

    return any(ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE for name in GRID_OPTIONS)


def _invocation(ctx: click.Context) -> str:
    """The command as given, canonically: the subcommand and each option set on the command line."""
    from click.core import ParameterSource

    words = ["benchsuite", ctx.info_name or ""]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name or "") is not ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name or ""]
        if isinstance(param, click.Argument):
            words.append(str(value))
        elif isinstance(param, click.Option) and param.is_flag:
            words.append(param.opts[0] if value or not param.secondary_opts else param.secondary_opts[0])
        elif param.multiple:
            for item in value:
                words += [param.opts[-1], str(item)]
        else:
            words += [param.opts[-1], ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return shlex.join(words)


@main.command()
@click.argument("grid_file", required=False, type=click.Path(dir_okay=False))
@click.option("-m", "--method", "methods", multiple=True, metavar="SPEC", help="name, name@preset or name{k = v, k2 = [a, b]}; repeatable.")
@click.option("-t", "--task", "tasks", multiple=True, metavar="SPEC", help="Task spec, same forms as --method; repeatable.")
@click.option("--noise", "noises", multiple=True, metavar="KIND:RATES", help="e.g. symmetric:0,0.2,0.4 or none; repeatable.")
@click.option("--seeds", metavar="0,1,2", callback=_seeds_option, help="Comma-separated seeds.")
@click.option("--epochs", type=_Checked(budget_rule("epochs", int)), help="Override the recipe's number of epochs.")
@click.option("--iterations", type=_Checked(budget_rule("iterations", int)), help="Override the recipe's number of steps.")
@click.option("--batch-size", type=_Checked(budget_rule("batch_size", int)), help="Override the recipe's batch size.")
@click.option("--lr", type=_Checked(budget_rule("lr", float)), help="Override the recipe's learning rate.")
@click.option("--val-fraction", type=_Checked(RULES["val_fraction"]), help="Clean validation split carved from the training set.")
@click.option("--eval-ema", type=_Checked(RULES["eval_ema"]), metavar="DECAY", help="Score every method on an EMA of its weights, e.g. 0.999 (default: the weights themselves).")
@click.option("--deterministic", is_flag=True, default=None, help="Deterministic kernels (CUDA: slower; see the README).")
@click.option(
    "--results",
    type=click.Path(dir_okay=False),
    help=f"SQLite results database [default: {DEFAULT_RESULTS} for the default grid as it is, "
    f"{RESULTS_DIR}/<stem>/results.sqlite for a grid file <stem>.toml, "
    f"{RESULTS_DIR}/{COMMAND_LINE_RESULTS}/results.sqlite for any other grid].",
)
@click.option("--force", is_flag=True, help="Re-run cells that are already in the database.")
@click.option("--executor", metavar="SPEC", help="Where cells run: local (default), pool, ray, slurm, with options as in pool{workers = 4}.")
@click.option("--retries", type=_Checked(RULES["retries"]), help="Reruns of a cell whose worker was lost (killed, out of memory); default 1.")
@click.option("--cell-timeout", type=_Checked(RULES["cell_timeout"]), metavar="SECONDS", help="Stop a cell after this long and record it as timeout.")
@click.option(
    "--checkpoint-every",
    type=_Checked(Number(float, low=0, unit="minutes")),
    default=10.0,
    show_default=True,
    metavar="MINUTES",
    help="Checkpoint a running cell at epoch ends at most this often, beside the results (0: every epoch); "
    "a re-run resumes from it.",
)
@click.option(
    "--keep-models",
    is_flag=True,
    help="Keep each cell's final model (and its best on validation, when the run has a validation split) "
    "beside the results, for `benchsuite evaluate`; finished cells are not run again (--force runs them).",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    help="Wait for cells another live driver is running (default), or exit with status 3 naming them.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--amp/--no-amp", default=None, help="Mixed precision (default: on CUDA only).")
@click.option("--dry-run", is_flag=True, help="Validate and list the cells without running them.")
@click.option("--progress/--no-progress", default=True, help="Progress bar with ETA over the cells.")
@click.option("--leaderboard/--no-leaderboard", default=True, help="Write the leaderboard next to the results and show it (see --print-leaderboard).")
@click.option(
    "--print-leaderboard", is_flag=True,
    help=f"Print the whole leaderboard (default: the whole table when it has at most {SHORT_BOARD_LINES} lines, else a summary of the primary metric per method and noise rate, and the table's path).",
)  # fmt: skip
def run(
    grid_file: str | None,
    methods: tuple[str, ...],
    tasks: tuple[str, ...],
    noises: tuple[str, ...],
    seeds: tuple[int, ...] | None,
    epochs: int | None,
    iterations: int | None,
    batch_size: int | None,
    lr: float | None,
    val_fraction: float | None,
    eval_ema: float | None,
    deterministic: bool | None,
    results: str | None,
    force: bool,
    executor: str | None,
    retries: int | None,
    cell_timeout: float | None,
    checkpoint_every: float,
    keep_models: bool,
    wait: bool,
    device: str,
    amp: bool | None,
    dry_run: bool,
    progress: bool,
    leaderboard: bool,
    print_leaderboard: bool,
) -> None:
    """Run a grid (GRID_FILE, command-line options, or, with neither, the default grid on the
    embedded data), store every run, and print the leaderboard of this grid's cells (also written
    to leaderboard.md beside the database).

    Re-running the same command after an interruption runs only the missing cells, each from its
    last checkpoint. Exit status: 0 when every cell has a stored record and none failed, 1 when
    some failed or timed out, 2 on bad input, 3 when cells are left to other drivers (--no-wait),
    130 on Ctrl-C.
    """
    ctx = click.get_current_context()
    _warn_failed_plugins()
    grid = _grid(grid_file, methods, tasks, noises, seeds, executor)
    grid.budget.update({k: v for k, v in {"epochs": epochs, "iterations": iterations, "batch_size": batch_size, "lr": lr}.items() if v is not None})
    _override(grid, val_fraction=val_fraction, eval_ema=eval_ema, deterministic=deterministic or None,
              retries=retries, cell_timeout=cell_timeout)  # fmt: skip
    results = default_results(grid_file, _grid_options_given(ctx)) if results is None else results
    if not results.strip():
        raise UnwritablePathError(f"--results {results!r}: the path is empty; give a file such as results.sqlite")
    expansion, backend = _plan(grid, results, device, amp)
    if dry_run:
        _dry_run(expansion, results, grid.source, backend)
        return
    _prepare_process(grid)
    outcome = _execute(
        grid, expansion, backend, results, force=force, device=device, amp=amp, progress=progress,
        checkpoint_every=checkpoint_every * 60, wait=wait, keep_models=keep_models,
    )  # fmt: skip
    if keep_models and outcome.already_done:
        click.echo(f"--keep-models: {outcome.already_done} cells were already stored and keep no new model (--force runs them again)", err=True)
    if leaderboard and not outcome.interrupted:
        _grid_board(grid, expansion, results, print_leaderboard)
    if outcome.interrupted:
        sys.exit(130)
    if outcome.failures:
        sys.exit(1)
    if outcome.missing:
        click.echo(f"{len(outcome.missing)} cells have no stored record; another driver holds them:", err=True)
        for label in outcome.missing:
            click.echo(f"  {label}", err=True)
        sys.exit(MISSING_CELLS_EXIT)


def _warn_failed_plugins() -> None:
    """Name on stderr each plugin that failed to load: its methods and tasks are missing from
    the grid (the default grid would shrink without a word)."""
    for failed in sorted(_host().failed.values(), key=lambda f: f.name):
        origin = " ".join(part for part in (failed.distribution, failed.version) if part) or "no distribution"
        click.echo(
            f"warning: plugin {failed.name!r} ({origin}) failed to load; its methods and tasks are left out: "
            f"{failed.error} (`benchsuite plugins -v` shows the traceback)",
            err=True,
        )


def _grid(grid_file: str | None, methods: tuple[str, ...], tasks: tuple[str, ...], noises: tuple[str, ...],
          seeds: tuple[int, ...] | None, executor: str | None) -> Any:  # fmt: skip
    """The grid file's grid (or the default grid) with the cells and executor given on the command line."""
    from .grid import MAIN_GRID, grid_from_dict, load_grid_file, override_cells, parse_executor

    if grid_file:
        grid = load_grid_file(grid_file)
    elif methods or tasks:
        grid = grid_from_dict({}, source="command line")
    else:
        grid = grid_from_dict(MAIN_GRID, source="default grid")
    override_cells(grid, methods, tasks, noises)
    if seeds:
        grid.seeds = seeds
    if executor is not None:
        grid.executor = parse_executor(executor)
    return grid


def _plan(grid: Any, results: str, device: str, amp: bool | None) -> tuple[Any, Any]:
    """The grid's cells and its executor, both checked before anything runs: a grid that expands
    to no cell is refused, and so is a results path that cannot be written."""
    from .executors import RunSettings
    from .grid import GridError, expand

    expansion = expand(grid, _host())
    if not expansion.cells:
        raise GridError(["the grid expands to no cell: every list of values it takes must hold at least one"], grid.source)
    backend = _executor_for(grid, expansion, device)
    backend.check(RunSettings(device, amp, grid.cell_timeout, Path(results).parent))
    return expansion, backend


def _executor_for(grid: Any, expansion: Any, device: str) -> Any:
    """The grid's executor, or the automatic choice for its runnable cells
    (``benchsuite.executors.automatic_executor``: a one-thread-per-worker pool on a multi-core CPU)."""
    from .executors import automatic_executor

    if grid.executor is not None:
        name, params = grid.executor.name, grid.executor.params
    else:
        name, params = automatic_executor(device, len(expansion.cells) - len(expansion.not_applicable))
    return _host().executor_class(name)(**params)


def _describe_executor(backend: Any) -> str:
    """``pool (2 workers × 1 thread)``, ``local``."""
    if backend.name != "pool":
        return backend.name
    from .executors import usable_cores

    workers = backend.workers or usable_cores()
    threads = backend.threads_per_worker or max(1, usable_cores() // workers)
    return f"pool ({workers} worker{'s' * (workers > 1)} × {threads} thread{'s' * (threads > 1)})"


def _override(grid: Any, **options: Any) -> None:
    """Set the grid settings given on the command line (None: not given, the grid's stays)."""
    for name, value in options.items():
        if value is not None:
            setattr(grid, name, value)


def _prepare_process(grid: Any) -> None:
    """Process-wide settings a grid needs before any cell or worker starts: cuBLAS reads its
    deterministic workspace setting from the environment, which workers inherit."""
    if grid.deterministic:
        from .reproducibility import CUBLAS_WORKSPACE

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


def _grid_board(grid: Any, expansion: Any, results: str, whole: bool = False) -> None:
    """Write the leaderboard of the grid just run — its cells only, whatever else the database
    holds — to leaderboard.md beside the database, and print it: whole when asked or short,
    else the primary metric per method and noise rate (``progress.headline``)."""
    from .progress import headline

    runs = to_dataframe_or_fail(results)
    runs = runs[runs.cell_hash.isin({c.cell_hash for c in expansion.cells})]
    text = _render(runs, _invocation(click.get_current_context()), select=grid.select, title=f"benchsuite leaderboard: {grid.source}")
    out = write_text(str(Path(results).with_name("leaderboard.md")), text, "the board beside --results")
    if whole or text.count("\n") <= SHORT_BOARD_LINES:
        click.echo(text)
    else:
        click.echo(headline(runs))
    click.echo(
        f"leaderboard of this grid ({text.count(chr(10))} lines) written to {out} (--print-leaderboard prints it); "
        f"`benchsuite leaderboard --results {results}` shows every run stored there",
        err=True,
    )


def _open_store(results: str, mode: str = "write") -> Any:
    from .store import ResultStore

    return ResultStore(results, mode)  # type: ignore[arg-type]


def _dry_run(expansion: Any, results: str, source: str, backend: Any) -> None:
    """List the cells with their state: n/a, a stored status, ``stale`` (a run of the same experiment
    is stored, but its plugin code, declared version or the host's results version has changed
    since: the cell runs again; the reason follows), or ``todo``."""
    from .spec import stale_reason

    stored: dict[str, str] = {}
    previous: dict[str, Any] = {}  # cell hash -> the spec of a stored run of the same experiment
    if Path(results).is_file():
        with _open_store(results, "read") as store:  # a dry run writes nothing, creates nothing
            stored = store.states(c.cell_hash for c in expansion.cells)
            missing = [c for c in expansion.cells if c.cell_hash not in stored]
            earlier = store.earlier_runs(c.lineage_hash() for c in missing)
            for cell in missing:
                if cell.lineage_hash() in earlier:
                    previous[cell.cell_hash] = store.spec(earlier[cell.lineage_hash()])
    stale = 0
    for cell in expansion.cells:
        if cell.cell_hash in expansion.not_applicable:
            state = "n/a"
        else:
            state = stored[cell.cell_hash] if cell.cell_hash in stored else "stale" if cell.cell_hash in previous else "todo"
        others = [n["method"] + (f"@{n['preset']}" if n["preset"] else "") for n in expansion.names.get(cell.cell_hash, [])[1:]]
        click.echo(f"{cell.cell_hash}  {state:<9}  {cell.label()}" + (f"  (= {', '.join(others)})" if others else ""))
        if state == "stale":
            stale += 1
            click.echo(f"{'':16}  {'':9}  stale: {stale_reason(cell, previous[cell.cell_hash])}")
    click.echo(f"{len(expansion.cells)} cells ({source})" + (f"; {stale} stale (stored runs of older code or versions): they run again" if stale else ""))
    if backend.name in ("local", "pool"):
        from .costs import estimate
        from .executors import usable_cores

        runnable = [c for c in expansion.cells if c.cell_hash not in expansion.not_applicable]
        workers = (backend.workers or usable_cores()) if backend.name == "pool" else 1
        click.echo(f"executor: {_describe_executor(backend)}; {estimate(runnable, workers, startup=backend.name == 'pool').describe()}")


def _execute(grid: Any, expansion: Any, backend: Any, results: str, **settings: Any) -> Any:
    """Run the expanded grid into the database at ``results``; print the outcome; return it."""
    from .executors import ExecutorError
    from .runner import run_grid

    with _open_store(results) as store:
        click.echo(
            f"{len(expansion.cells)} cells from the {grid.source}; executor: {_describe_executor(backend)}; results: {results}", err=True
        )
        try:
            outcome = run_grid(
                expansion, store, executor=backend, retries=grid.retries, cell_timeout=grid.cell_timeout, **settings
            )
        except ExecutorError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(outcome.summary(), err=True)
    for label, error in outcome.failures:
        click.echo(f"  failed: {label}: {error}", err=True)
    return outcome


def to_dataframe_or_fail(results: str) -> Any:
    """The runs of the database at ``results``, opened read-only, without the full spec which no board reads (``StoreError`` when it is
    missing or not ours)."""
    from .results import to_dataframe

    return to_dataframe(results, spec=False)


def _render(runs: Any, command: str, tasks: list[str] | None = None, **options: Any) -> str:
    from .leaderboard import render

    return render(runs, command=command, tasks=tasks, **options)


@main.command(name="leaderboard")
@click.option("--results", type=click.Path(dir_okay=False), help=f"SQLite results database [default: {DEFAULT_RESULTS}].")
@click.option("--from", "export_file", type=click.Path(dir_okay=False, exists=True), help="Render from a runs CSV written by `benchsuite export` or `benchsuite publish` instead of a database.")
@click.option("--grid", "grid_file", type=click.Path(dir_okay=False, exists=True), help="The grid file the runs came from: its `select` applies and the header names it.")
@click.option("--select", type=click.Choice(["none", "val"]), help="val: per method and noise rate only the setting with the best validation score (default: the grid's, else none).")
@click.option("-t", "--task", "tasks", multiple=True, help="Only these tasks (repeatable).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the markdown here instead of printing it.")
def leaderboard_cmd(
    results: str | None, export_file: str | None, grid_file: str | None, select: str | None, tasks: tuple[str, ...], out: str | None
) -> None:
    """Render the markdown leaderboard from a results database or its CSV export (byte-identical)."""
    from .publish import leaderboard_options, read_runs_export

    if results and export_file:
        raise BadInput("give either --results (a database) or --from (a CSV export), not both")
    if out is not None:
        writable_file(out, "--out")
    options = leaderboard_options(grid_file, select)
    runs = read_runs_export(export_file) if export_file else to_dataframe_or_fail(results or DEFAULT_RESULTS)
    command = shlex.join(
        ["benchsuite", "leaderboard"]
        + (["--from", export_file] if export_file else ["--results", results or DEFAULT_RESULTS])
        + (["--grid", grid_file] if grid_file else [])
        + (["--select", select] if select else [])
        + [word for t in tasks for word in ("-t", t)]
        + (["--out", out] if out else [])
    )
    text = _render(runs, command, tasks=list(tasks) or None, **options)
    if out:
        write_text(out, text, "--out")
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text, nl=False)


@main.command()
@click.option("--dir", "boards_dir", default="leaderboards", show_default=True, type=click.Path(file_okay=False), help="Holds grids/<board>.toml and receives the boards.")
@click.option("-b", "--board", "boards", multiple=True, help="Only these boards (grid file stems; repeatable).")
@click.option("--render-only", is_flag=True, help="Run nothing: re-render markdown and plots from the committed exports.")
@click.option("--executor", metavar="SPEC", help="Where cells run (overrides the grids'), e.g. pool{workers = 2}.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--progress/--no-progress", default=True, help="Progress bar with ETA over the cells.")
def publish(boards_dir: str, boards: tuple[str, ...], render_only: bool, executor: str | None, device: str, progress: bool) -> None:
    """Run (or reuse) every board's grid, export its runs as CSV, render its markdown from that
    export, and draw its plots; then the papers' reported numbers beside ours.

    Finished cells are kept in DIR/.results/<board>.sqlite, so an interrupted publish resumes.
    """
    import pandas as pd

    from . import publish as pub
    from .executors import RunSettings
    from .grid import expand, load_grid_file, parse_executor
    from .plotting import plot_weight_curves
    from .results import curves_dataframe

    root = Path(boards_dir)
    grid_files = sorted((root / "grids").glob("*.toml"))
    if boards:
        unknown = sorted(set(boards) - {g.stem for g in grid_files})
        if unknown:
            raise BadInput(f"no board {', '.join(unknown)} in {root / 'grids'}; boards: {', '.join(g.stem for g in grid_files) or 'none'}")
        grid_files = [g for g in grid_files if g.stem in boards]
    if not grid_files:
        raise BadInput(f"no grid files in {root / 'grids'}: a board is a grid file grids/<board>.toml there")
    host = None if render_only else _host()
    exports: dict[str, pd.DataFrame] = {}
    for grid_file in grid_files:
        board, runs_csv, curves_csv = grid_file.stem, root / f"{grid_file.stem}.runs.csv", root / f"{grid_file.stem}.curves.csv"
        grid = load_grid_file(grid_file)  # a GridError or ExecutorError is a UsageError: exit 2
        if not render_only:
            if executor:
                grid.executor = parse_executor(executor)
            expansion = expand(grid, host)
            backend = _executor_for(grid, expansion, device)
            results = root / ".results" / f"{board}.sqlite"
            results.parent.mkdir(parents=True, exist_ok=True)
            backend.check(RunSettings(device, None, grid.cell_timeout, results.parent))
        if not render_only:
            _prepare_process(grid)
            outcome = _execute(grid, expansion, backend, str(results), force=False, device=device, amp=None, progress=progress)
            if outcome.interrupted or outcome.failures:
                raise click.ClickException(f"board {board}: not every cell finished; run `benchsuite publish -b {board}` again to resume")
            runs = to_dataframe_or_fail(str(results))
            runs = runs[runs.cell_hash.isin({c.cell_hash for c in expansion.cells})]  # not the runs of older code
            pub.compact_runs(runs).to_csv(runs_csv, index=False)
            if grid.select == "none":  # a validation-selected board is a table, not a training picture
                pub.curve_means(runs, curves_dataframe(results, runs.cell_hash)).to_csv(curves_csv, index=False)
        markdown = root / f"{board}.md"
        command = shlex.join(["benchsuite", "leaderboard", "--from", str(runs_csv), "--grid", str(grid_file), "--out", str(markdown)])
        exports[runs_csv.name] = exported = pub.read_runs_export(runs_csv)  # read and checked once per board
        markdown.write_text(_render(exported, command, **pub.leaderboard_options(str(grid_file), None)))
        click.echo(f"wrote {markdown}", err=True)
        if curves_csv.is_file() and grid.select == "none":
            pub.plot_board(pd.read_csv(curves_csv), root / board, board)
            click.echo(f"plots in {root / board}", err=True)
        click.echo(pub.write_board_report(root, board, exported, grid.select, host or _host()), err=True)
    reported = root / pub.REPORTED_FILE
    if reported.is_file():
        measured = {f.name.removesuffix(".runs.csv"): exports[f.name] if f.name in exports else pub.read_runs_export(f) for f in sorted(root.glob("*.runs.csv"))}
        (root / "reported.md").write_text(pub.render_reported(pd.read_csv(reported), measured))
        click.echo(f"wrote {root / 'reported.md'}", err=True)
    plot_weight_curves(PLOTTED_WEIGHT_METHODS, root / "weight_curves.png", density=True, title="emphasis density of the built-in loss methods (defaults)")
    click.echo(f"wrote {root / 'weight_curves.png'}", err=True)


@main.command()
@_results_option
@click.option("--out", type=click.Path(dir_okay=False), help="CSV of runs (default: stdout).")
@click.option("--curves", type=click.Path(dir_okay=False), help="Also write the per-epoch curves as CSV here.")
def export(results: str, out: str | None, curves: str | None) -> None:
    """Export the raw numbers as CSV: one row per run (and optionally per run and epoch, streamed
    to the file a chunk of runs at a time)."""
    from .results import write_curves_csv, write_runs_csv

    for path, option in ((out, "--out"), (curves, "--curves")):
        if path is not None:
            writable_file(path, option)
    if out is None:
        write_runs_csv(results, sys.stdout)
    else:
        with open(out, "w", newline="") as handle:
            write_runs_csv(results, handle)
    if curves:
        write_curves_csv(results, curves)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("-v", "--verbose", is_flag=True, help="Show the tracebacks of failed plugins.")
def plugins(as_json: bool, verbose: bool) -> None:
    """List the loaded plugins (and those that failed to load, with their error)."""
    from tabulate import tabulate

    catalog = _catalog()
    if as_json:
        click.echo(json.dumps({"loaded": catalog.plugins, "failed": catalog.failed}, indent=2))
        return
    rows = [
        (p["name"], p["distribution"] or "-", p["version"] or "-", *(", ".join(p[k]) or "-" for k in ("methods", "tasks", "noise_kinds", "executors")))
        for p in sorted(catalog.plugins, key=lambda p: p["name"])
    ]
    click.echo(tabulate(rows, headers=["plugin", "distribution", "version", "methods", "tasks", "noise kinds", "executors"]))
    unavailable = {e["name"]: e["unavailable"] for e in catalog.tasks if e.get("unavailable") is not None}
    if unavailable:
        click.echo("\nLoaded, but cannot run here until installed:")
        click.echo("\n".join(f"  task {name}: {why}" for name, why in sorted(unavailable.items())))
    if catalog.failed:
        click.echo("\nFailed to load (set aside; everything else works):")
        for f in sorted(catalog.failed, key=lambda f: f["name"]):
            click.echo(f"  {f['name']} ({f['distribution'] or '?'} {f['version'] or ''}): {f['error']}")
            if verbose and f["traceback"]:
                click.echo("    " + f["traceback"].replace("\n", "\n    "))


def _catalog() -> Any:
    """What the plugins register, from the per-user cache when nothing changed (``benchsuite.catalog``)."""
    from .catalog import load_catalog
    from .discovery import PluginLoadError

    try:
        return load_catalog()
    except PluginLoadError as exc:
        raise click.ClickException(str(exc)) from None


def _describe(kind: str, as_json: bool) -> None:
    from tabulate import tabulate

    catalog = _catalog()
    entries = catalog.methods if kind == "method" else catalog.tasks
    if as_json:
        click.echo(json.dumps(entries, indent=2, default=str))
        return
    rows = []
    for e in entries:
        params = ", ".join(f"{k}={v['default']!r}" for k, v in e["parameters"].items()) or "-"
        presets = ", ".join(e["presets"]) or "-"
        if kind == "method":
            rows.append((e["name"], e["level"], params, presets, e["summary"]))
        else:
            summary = e["summary"] if e["unavailable"] is None else f"{e['summary']} — NOT AVAILABLE HERE: {e['unavailable']}"
            rows.append((e["name"], e["evaluation"], e["num_classes"], ", ".join(e["provides"]) or "-", params, summary))
    headers = (
        ["method", "level", "parameters (defaults)", "presets", "summary"]
        if kind == "method"
        else ["task", "evaluation", "classes", "provides", "parameters (defaults)", "summary"]
    )
    widths = [None, None, 40, 40, 50] if kind == "method" else [None, None, None, 20, 40, 50]
    click.echo(tabulate(rows, headers=headers, maxcolwidths=widths))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Everything, machine-readable (parameters, ranges, presets).")
def methods(as_json: bool) -> None:
    """List the registered methods, their parameters and presets."""
    _describe("method", as_json)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Everything, machine-readable.")
def tasks(as_json: bool) -> None:
    """List the registered tasks and what each provides."""
    _describe("task", as_json)


def _report_runs(results: str | None, export_file: str | None, curves_file: str | None) -> tuple[Any, Any]:
    """(runs, per-epoch curves or None) from a database, or from a runs CSV and a curves CSV."""
    import pandas as pd

    from .publish import read_runs_export
    from .results import curves_dataframe

    if results and export_file:
        raise BadInput("give either --results (a database) or --from (a CSV export), not both")
    if curves_file and not export_file:
        raise BadInput("--curves goes with --from (a database holds its curves)")
    if export_file:
        return read_runs_export(export_file), pd.read_csv(curves_file) if curves_file else None
    results = results or DEFAULT_RESULTS
    return to_dataframe_or_fail(results), curves_dataframe(results)


def _task_options(items: tuple[str, ...]) -> dict[str, str]:
    """``--task-option KEY=VALUE`` (repeatable) -> {KEY: VALUE}."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--task-option {item!r}: give KEY=VALUE, e.g. root=/data/MARS")
        options[key.strip()] = value.strip()
    return options


def _kept_model(
    model: str | None, results: str | None, which: str, method: str | None, task: str | None, noise: str | None, seed: int | None
) -> Any:
    """The one kept model that MODEL (a file, or a cell hash or prefix in ``--results``) or the
    filters name; ``KeptModelError`` when none or several match."""
    from .models import KeptModelError, find_kept, load_kept, models_dir
    from .report import parse_noise

    if model is not None and (Path(model).suffix == ".pt" or Path(model).is_file()):
        if any(v is not None for v in (method, task, noise, seed)):
            raise BadInput("a model file names its cell: give it alone, without -m/-t/--noise/--seed")
        return load_kept(model)
    results = results or DEFAULT_RESULTS
    kind, rates = parse_noise(noise)
    if rates is not None and len(rates) != 1:
        raise BadInput(f"--noise {noise!r}: give one rate, e.g. symmetric:0.4")
    where = dict(method=method, task=task, noise_kind=kind, noise_rate=None if rates is None else rates[0], seed=seed, cell=model)
    found = find_kept(results, which, **where)
    if len(found) == 1:
        return found[0]
    asked = " ".join(f"{k}={v}" for k, v in where.items() if v is not None) or "any cell"
    if not found:
        raise KeptModelError(
            f"no kept {which} model matches {asked} in {models_dir(results)} "
            "(models are kept by `benchsuite run --keep-models`; --best: only runs with a validation split have one)"
        )
    listed = "\n".join(f"  {k.path.parent.name}  {k.meta['label']}" for k in found)
    raise KeptModelError(f"{len(found)} kept {which} models match {asked}; name one by its cell (or add filters):\n{listed}")


def _stored_final(results: str | None, cell_hash: str) -> dict[str, Any] | None:
    """The final metrics the database stores for the cell (None: no database, or not stored there)."""
    if not results or not Path(results).is_file():
        return None
    with _open_store(results, "read") as store:
        rows = store.query("SELECT final FROM runs WHERE cell_hash = ?", (cell_hash,))
    return json.loads(rows[0][0]) if rows else None


def _kept_model_options(f: Any) -> Any:
    """The options that pick one kept model and rebuild its task (``evaluate``, ``plot ranked``)."""
    options = [
        click.argument("model", required=False),
        click.option("--results", type=click.Path(dir_okay=False), help=f"SQLite results database whose kept models to look in [default: {DEFAULT_RESULTS}]."),
        click.option("-m", "--method", help="Only the kept models of this method."),
        click.option("-t", "--task", help="Only the kept models of this task."),
        click.option("--noise", metavar="[KIND:]RATE", help="Only the kept models of this noise, e.g. 0.4 or symmetric:0.4."),
        click.option("--seed", type=int, help="Only the kept models of this seed."),
        click.option("--best", is_flag=True, help="The model kept as best on validation instead of the final one."),
        click.option("--task-option", "task_options", multiple=True, metavar="KEY=VALUE", help="Override a task option the run used, e.g. root=/data/MARS (the data moved)."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@main.command()
@_kept_model_options
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(
    model: str | None, results: str | None, method: str | None, task: str | None, noise: str | None, seed: int | None,
    best: bool, task_options: tuple[str, ...], device: str, as_json: bool,
) -> None:  # fmt: skip
    """Score a kept model (`run --keep-models`) on its task again, without training, and print the
    task's test metrics beside those its run stored. MODEL is a kept model's file, or a cell hash
    (or its first characters) in the --results database's kept models; without MODEL the filters
    must leave exactly one."""
    from .engine import resolve_device
    from .models import evaluate_kept

    kept = _kept_model(model, results, "best" if best else "final", method, task, noise, seed)
    done = evaluate_kept(kept, resolve_device(device), _task_options(task_options))
    stored = _stored_final(results, kept.meta["cell_hash"]) if kept.meta["which"] == "final" else None
    reference = stored if stored is not None else kept.meta["metrics"]
    source = "stored final" if stored is not None else f"kept (epoch {kept.meta['epoch']})"
    if as_json:
        payload = {"model": str(kept.path), "cell": kept.meta["cell_hash"], "label": kept.meta["label"], "which": kept.meta["which"],
                   "epoch": kept.meta["epoch"], "metrics": done.metrics, "reference": {k: reference.get(k) for k in done.metrics},
                   "seconds": round(done.seconds, 3)}  # fmt: skip
        click.echo(json.dumps(payload, indent=2))
        return
    click.echo(f"{kept.meta['label']} · {kept.meta['which']} model (epoch {kept.meta['epoch']}) · {kept.path}")
    width = max(len(k) for k in done.metrics)
    click.echo(f"{'metric':<{width}}  {'evaluated':>10}  {source:>18}")
    for name, value in done.metrics.items():
        ref = reference.get(name)
        mark = "" if ref == value else "  (differs)"
        click.echo(f"{name:<{width}}  {value:>10.6g}  {'-' if ref is None else format(ref, '.6g'):>18}{mark}")
    same = all(reference.get(k) == v for k, v in done.metrics.items())
    click.echo(f"{'equal to' if same else 'NOT equal to'} the {source} metrics; evaluated in {done.seconds:.2f} s", err=True)


@main.command()
@click.option("--results", type=click.Path(dir_okay=False), help=f"SQLite results database [default: {DEFAULT_RESULTS}].")
@click.option("--from", "export_file", type=click.Path(dir_okay=False, exists=True), help="A runs CSV (`benchsuite export`, a published board) instead of a database.")
@click.option("--curves", "curves_file", type=click.Path(dir_okay=False, exists=True), help="With --from: per-epoch curves CSV (`export --curves`, or a board's curves.csv).")
@click.option("--grid", "grid_file", type=click.Path(dir_okay=False, exists=True), help="The grid file the runs came from: its `select` applies.")
@click.option("--select", type=click.Choice(["none", "val"]), help="val: per method and noise rate only the setting best on validation.")
@click.option("-t", "--task", "tasks", multiple=True, help="Only these tasks (repeatable).")
@click.option("--title", default="benchsuite report", show_default=True, help="The page title.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for index.html and figures/ (new, empty, or an earlier report).")
def report(
    results: str | None, export_file: str | None, curves_file: str | None, grid_file: str | None, select: str | None,
    tasks: tuple[str, ...], title: str, out: str,
) -> None:  # fmt: skip
    """Write a static HTML report (opens from the file system): sortable, filterable leaderboards,
    per-epoch curves with a band across seeds, CMC and weight curves, each run's provenance."""
    from .plugins import PluginLoadError, get_host
    from .publish import leaderboard_options
    from .report import write_report

    runs, curves = _report_runs(results, export_file, curves_file)
    options = leaderboard_options(grid_file, select)
    source = f"--from {export_file}" + (f" --curves {curves_file}" if curves_file else "") if export_file else f"--results {results or DEFAULT_RESULTS}"
    command = f"benchsuite report {source} --out {out}"
    try:
        host = get_host()
    except PluginLoadError:
        host = None  # the tables and curves need no plugin; only the weight curves do
    files = write_report(runs, out, curves=curves, command=command, title=title, select=options.get("select", "none"), tasks=list(tasks) or None, host=host)
    click.echo(f"wrote {files.index} and {len(files.figures)} figures ({files.total_bytes / 1e6:.2f} MB)", err=True)


@main.group()
def plot() -> None:
    """Figures: of stored runs (curves, fit, cmc, weights --results), of loss methods (weights -m), of kept models (ranked)."""


def _plot_options(f: Any) -> Any:
    options = [
        click.option("--results", type=click.Path(dir_okay=False), help=f"SQLite results database [default: {DEFAULT_RESULTS}]."),
        click.option("-t", "--task", help="The task to draw (needed when the results hold several)."),
        click.option("--noise", metavar="[KIND:]RATES", help="Noise rates to draw (default: all, r = 0 included), e.g. 0,0.4 or symmetric:0.4."),
        click.option("--select", type=click.Choice(["none", "val"]), default="none", show_default=True, help="val: rows chosen on validation, as on the board."),
        click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output file: .png, .svg or .pdf."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _plot_stored(
    kind: str, results: str | None, task: str | None, noise: str | None, select: str, out: str, metric: str | None = None, density: bool = True
) -> None:
    """Draw one figure of stored runs (``report.plot_figure``) into ``out``."""
    from .leaderboard import sections
    from .plotting import FORMATS, save_figure
    from .report import parse_noise, pick_rates, pick_section, plot_figure

    if Path(out).suffix.lstrip(".").lower() not in FORMATS:
        raise BadInput(f"cannot write {out}: the file name must end in one of {', '.join('.' + f for f in FORMATS)}")
    runs, curves = _report_runs(results, None, None)
    kind_name, rates = parse_noise(noise)
    section = pick_section(sections(runs, select), task, kind_name)
    rates = pick_rates(section, rates)
    fig = plot_figure(kind, section, curves, rates, metric=metric, host=_host() if kind == "weights" else None, density=density)
    path = save_figure(fig, out)
    lines = sum(1 for ax in fig.axes for line in ax.get_lines() if str(line.get_gid()).startswith("series-"))
    click.echo(f"{kind} of {section.task} ({section.kind} noise): {lines} lines written to {path}", err=True)


@plot.command(name="curves")
@_plot_options
@click.option("-M", "--metric", help="A per-epoch metric the runs store (default: the board's), e.g. test_acc, loss, lr, weight_focus.")
def plot_curves(results: str | None, task: str | None, noise: str | None, select: str, out: str, metric: str | None) -> None:
    """Per-epoch curves of stored runs: a line per board row (mean over seeds) with the seeds' range as a band."""
    _plot_stored("curves", results, task, noise, select, out, metric)


@plot.command(name="fit")
@_plot_options
def plot_fit(results: str | None, task: str | None, noise: str | None, select: str, out: str) -> None:
    """Per epoch, the fit of the clean-labelled and of the noisy-labelled training examples."""
    _plot_stored("fit", results, task, noise, select, out)


@plot.command(name="cmc")
@_plot_options
def plot_cmc(results: str | None, task: str | None, noise: str | None, select: str, out: str) -> None:
    """CMC curves of a retrieval task's runs (final epoch), a panel per noise rate."""
    _plot_stored("cmc", results, task, noise, select, out)


@plot.command(name="ranked")
@_kept_model_options
@click.option("--queries", type=click.IntRange(1, 50), default=4, show_default=True, help="Queries drawn, evenly spaced over the query list.")
@click.option("--top", type=click.IntRange(1, 50), default=10, show_default=True, help="Gallery entries drawn per query.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output file: .png, .svg or .pdf.")
def plot_ranked(
    model: str | None, results: str | None, method: str | None, task: str | None, noise: str | None, seed: int | None,
    best: bool, queries: int, top: int, task_options: tuple[str, ...], device: str, out: str,
) -> None:  # fmt: skip
    """Ranked lists of a kept MARS model (`run --keep-models`): per query its first frame, then the
    first frames of its top gallery tracklets (torchreid's rules, the test_map gallery), hits framed
    solid green, misses dotted red. MODEL and the filters as for `benchsuite evaluate`."""
    from .engine import resolve_device
    from .models import ranked_lists
    from .plotting import FORMATS, ranked_figure, save_figure

    if Path(out).suffix.lstrip(".").lower() not in FORMATS:
        raise BadInput(f"cannot write {out}: the file name must end in one of {', '.join('.' + f for f in FORMATS)}")
    writable_file(out, "--out")
    kept = _kept_model(model, results, "best" if best else "final", method, task, noise, seed)
    lists = ranked_lists(kept, resolve_device(device), queries, top, _task_options(task_options))
    path = save_figure(ranked_figure(lists, f"{kept.meta['label']} · {kept.meta['which']} model"), out)
    hits = sum(sum(ranked.hits) for ranked in lists)
    click.echo(f"ranked lists of {len(lists)} queries (top {top}, {hits} hits) written to {path}", err=True)


@plot.command(name="weights")
@click.option(
    "-m", "--method", "methods", multiple=True, metavar="SPEC",
    help="name, name@preset or name{k = v}; a list value draws one curve per value; repeatable.",
)
@click.option("--results", type=click.Path(dir_okay=False), help="Instead of -m: the loss methods of the rows of stored runs.")
@click.option("-t", "--task", help="With --results: the task whose rows to draw.")
@click.option("--noise", metavar="[KIND:]RATES", help="With --results: the noise kind whose rows to draw.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output file: .png, .svg or .pdf.")
@click.option("--density", is_flag=True, help="Divide each curve by its integral over [0, 1] (DM's emphasis density).")
def plot_weights(methods: tuple[str, ...], results: str | None, task: str | None, noise: str | None, out: str, density: bool) -> None:
    """Draw the weight curves w(p_y) of loss methods, as the GR/DM/IMAE papers' Figure 1:
    e.g. ``benchsuite plot weights -m "gr{beta = 8, lam = [0.5, 1]}" -m imae --out w.png``;
    with ``--results``, those of the loss methods of the rows of stored runs."""
    from .errors import InvalidInputError
    from .grid import parse_component
    from .plotting import plot_weight_curves

    if bool(methods) == bool(results):
        raise BadInput("give either -m/--method SPEC (repeatable) or --results DB")
    if results:
        _plot_stored("weights", results, task, noise, "none", out, density=density)
        return
    host = _host()
    writable_file(out, "--out")
    instances = []
    for text in methods:
        component = parse_component(text)
        if component.rate_presets:
            raise InvalidInputError(f"{text!r}: a weight curve takes one preset, not one per noise rate")
        cls = host.method_class(component.name)
        instances += [cls(preset=component.preset, **values) for values in component.settings()]
    path = plot_weight_curves(instances, out, density=density)
    click.echo(f"weight curves of {len(instances)} settings written to {path}", err=True)
