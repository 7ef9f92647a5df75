"""Grids: method(s) × parameters × task(s) × noise × seeds, from a TOML file or the command line.

A grid is validated in full before anything runs; every problem is reported with its key path
(``method[2].params.beta[1]``) and all problems are reported at once. A valid grid expands into
``CellSpec``s whose hashes identify finished work in the results store; entries that train the
same thing (``Method.canonical``: ``dm`` and ``gr`` with their defaults) are one cell.

File format (every key optional except that a grid needs at least one method and task, which
default to the default grid's)::

    seeds = [0, 1, 2]
    val_fraction = 0.2                 # clean validation split carved from the training set
    select = "val"                     # report, per method and noise rate, only the parameter setting
                                       # with the best validation score (needs val_fraction > 0)
    executor = "pool"                  # or "pool{workers = 4}", or an [executor] table
    retries = 1                        # reruns of a cell whose worker was lost (killed, OOM)
    cell_timeout = 3600                # seconds; a cell over it is stopped and recorded as timeout
    eval_ema = 0.999                   # score every method on an EMA of its weights (default: off)
    deterministic = true               # deterministic kernels (CUDA; see the README for the cost)

    [noise]                            # or [[noise]] tables for several kinds
    kind = "symmetric"
    rates = [0.0, 0.2, 0.4]
    params = { sampling = "exact_global" }

    [budget]                           # overrides of the task's recipe
    epochs = 30

    [[method]]
    name = "gr"
    preset = "cifar10_sym40"           # optional
    params = { beta = [4, 8] }         # lists expand into the grid

    [[method]]
    name = "imae"
    preset = { "0" = "clean", default = "noisy" }   # a preset per noise rate (see below)

    [[task]]
    name = "digits"

``method``/``task`` may also be lists of command-line specs: ``method = ["cce", "gce{q = [0.5, 0.7]}"]``.

A method's ``preset`` may differ by noise rate, for papers that give one setting for clean and
another for noisy data: a table from noise rates (quoted, as TOML keys are strings) to presets,
with an optional ``default`` for every other rate (without one, the other rates use the method's
defaults). The command-line form lists the same after ``@``: ``imae@0:clean,noisy`` (rate 0:
``clean``, any other rate: ``noisy``) or ``gr@0:cifar10_clean``. Each rate must be one the grid
runs; explicit ``params`` apply at every rate, over the preset. The cells of such an entry carry
the whole mapping as their preset (``0:clean,noisy``), so a leaderboard shows them as one row.
The executor's options go in a table::

    [executor]
    name = "slurm"
    partition = "gpu"
    time = 120                         # minutes per cell
    gpus_per_cell = 1
    array_parallelism = 32
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import InvalidInputError, UsageError
from .fingerprint import code_fingerprint
from .params import ParameterError, close_matches
from .plugins import PluginHost, get_host
from .registry import UnknownNameError
from .spec import RESULTS_VERSION, CellSpec
from .task import Recipe
from .validation import RULES, budget_rule, check, parse_list

DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_NOISE_RATES = (0.0, 0.2, 0.4, 0.6)

#: The main job, what ``benchsuite run`` runs without a grid file, ``-m`` or ``-t``: every seed
#: method with its defaults (CCE, GCE, SL, GR, DM, IMAE, IEG) and the baselines IEG's row needs
#: beside it (the trusted subset alone, and CCE on the noisy set plus the trusted subset), on the
#: embedded digits, without noise and at 40 % and 80 % symmetric noise, 5 seeds for the intervals.
#: Sized to finish in minutes on two CPU cores (``benchmarks/default_grid.py`` measures it); the
#: other methods and tasks are one ``-m``/``-t`` or one shipped grid file away (see the README).
MAIN_GRID: dict[str, Any] = {
    "method": ["cce", "gce", "sl", "gr", "dm", "imae", "ieg", "trusted_only", "cce_trusted"],
    "task": ["digits"],
    "noise": {"kind": "symmetric", "rates": [0.0, 0.4, 0.8]},
    "seeds": [0, 1, 2, 3, 4],
}

#: A noise variant that names given labels (``cifar10n:worst``) rather than rates.
_VARIANT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPEC = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)(?:@([A-Za-z0-9_.\-:,]+))?\s*(\{.*\})?\s*$", re.S)
#: The key of a preset-per-rate table that names the preset of every rate not listed.
OTHER_RATES = "default"
_TOP_KEYS = {
    "seeds", "noise", "budget", "method", "task", "executor", "retries", "cell_timeout", "val_fraction", "select",
    "eval_ema", "deterministic",
}
SELECT_MODES = ("none", "val")
DEFAULT_RETRIES = 1


class GridError(UsageError, ValueError):
    """The grid is invalid; the message lists every problem with its key path."""

    def __init__(self, problems: list[str], source: str = "grid") -> None:
        self.problems = problems
        super().__init__(f"{source} is invalid:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class ComponentSpec:
    """A method or task entry of a grid: a name, an optional preset, parameter values or lists."""

    name: str
    #: The preset of every noise rate without one of its own in ``rate_presets``.
    preset: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: Noise rate -> preset, for the rates whose preset differs (methods only).
    rate_presets: dict[float, str] = field(default_factory=dict)

    def settings(self) -> list[dict[str, Any]]:
        """The cartesian product of list-valued parameters."""
        keys = list(self.params)
        axes = [v if isinstance(v, list) else [v] for v in self.params.values()]
        return [dict(zip(keys, combo)) for combo in itertools.product(*axes)]

    def preset_for(self, rate: float) -> str | None:
        return self.rate_presets.get(rate, self.preset)

    def preset_label(self) -> str | None:
        """The preset as written on the command line: ``name``, or ``0:clean,noisy`` per rate."""
        if not self.rate_presets:
            return self.preset
        items = [f"{rate:g}:{name}" for rate, name in sorted(self.rate_presets.items())]
        return ",".join(items + ([self.preset] if self.preset else []))


@dataclass(frozen=True)
class NoiseSpec:
    kind: str
    rates: tuple[float, ...]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Grid:
    """A validated grid, before expansion. ``noise`` = None means each task's default noise."""

    methods: list[ComponentSpec]
    tasks: list[ComponentSpec]
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    noise: list[NoiseSpec] | None = None
    budget: dict[str, Any] = field(default_factory=dict)
    #: Where the cells run; None: chosen by ``benchsuite.executors.automatic_executor`` (a worker
    #: pool with one thread per worker on a multi-core CPU machine, else in this process).
    executor: ComponentSpec | None = None
    #: How many more times a cell whose worker was lost (killed, out of memory) is run.
    retries: int = DEFAULT_RETRIES
    #: Wall-clock seconds after which a cell is stopped and recorded as ``timeout`` (None: no limit).
    cell_timeout: float | None = None
    val_fraction: float = 0.0
    #: How the leaderboard picks among a method's parameter settings: "none" shows them all,
    #: "val" shows only the one with the best validation score (the DM paper's protocol).
    select: str = "none"
    source: str = "grid"
    #: Score every method on an EMA of its weights with this decay (None: on the weights themselves).
    eval_ema: float | None = None
    #: Deterministic kernels for every cell (``benchsuite.reproducibility``).
    deterministic: bool = False


def parse_component(text: str) -> ComponentSpec:
    """Parse ``name``, ``name@preset``, ``name{k = v, k2 = [a, b]}`` (a TOML inline table)."""
    match = _SPEC.match(text)
    if not match:
        raise InvalidInputError(f"{text!r} is not of the form name, name@preset or name{{key = value, ...}}")
    name, preset_text, table = match.groups()
    params: dict[str, Any] = {}
    if table:
        try:
            params = tomllib.loads(f"_ = {table}")["_"]
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInputError(f"{text!r}: the parameters {table} are not a TOML inline table ({exc})") from None
    preset, rate_presets = parse_presets(preset_text) if preset_text else (None, {})
    return ComponentSpec(name, preset, params, rate_presets)


def parse_presets(text: str) -> tuple[str | None, dict[float, str]]:
    """``name`` or ``RATE:name,...[,name]`` -> (preset of the other rates, rate -> preset)."""
    table: dict[str, str] = {}
    for item in text.split(","):
        rate, _, name = item.rpartition(":")
        key = rate or OTHER_RATES
        if not name or key in table:
            what = "an empty item" if not name else f"two presets for {'rate ' + rate if rate else 'the other rates'}"
            raise InvalidInputError(f"preset {text!r} has {what}; write RATE:PRESET items and at most one bare PRESET")
        table[key] = name
    problems: list[str] = []
    presets = _preset_table(table, "preset", problems)
    if problems:
        raise InvalidInputError(f"preset {text!r}: " + "; ".join(problems))
    return presets


def _preset_table(table: dict[str, Any], where: str, problems: list[str]) -> tuple[str | None, dict[float, str]]:
    """A preset-per-rate table (``{"0" = "clean", default = "noisy"}``), checked key by key."""
    by_rate: dict[float, str] = {}
    other = None
    for key, name in table.items():
        if not isinstance(name, str):
            problems.append(f"{where}.{key}: {name!r} must be a preset name")
        elif key == OTHER_RATES:
            other = name
        elif (rate := _rate(key)) is None:
            problems.append(f"{where}.{key}: not a noise rate in [0, 1] (or {OTHER_RATES!r} for every other rate)")
        elif rate in by_rate:
            problems.append(f"{where}.{key}: rate {rate:g} is given twice")
        else:
            by_rate[rate] = name
    return other, by_rate


def _rate(text: str) -> float | None:
    try:
        rate = float(text)
    except ValueError:
        return None
    return rate if 0 <= rate <= 1 else None


def parse_noise(text: str) -> NoiseSpec:
    """Parse ``kind:rate[,rate...]``, ``none``, or the name of a kind with a variant whose labels
    are given (``cifar10n:worst``, rate 0; ``cifar10n:worst:0`` says the same); every rate under
    the rule of a grid file's rates."""
    kind, _, rates = text.rpartition(":")
    if not kind:
        if text.strip() == "none":
            return NoiseSpec("none", (0.0,))
        raise InvalidInputError(f"{text!r} must look like symmetric:0,0.2,0.4 (or none, or cifar10n:worst)")
    if _VARIANT.fullmatch(rates.strip()) and rates.strip().lower() not in ("inf", "infinity", "nan"):
        return NoiseSpec(text.strip(), (0.0,))
    try:
        return NoiseSpec(kind.strip(), tuple(parse_list(rates, RULES["rate"])))
    except ValueError as exc:
        raise InvalidInputError(f"{text!r}: {exc}") from None


def load_grid_file(path: str | Path) -> Grid:
    """Read and structurally validate a TOML grid file (names and values are checked by ``expand``)."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise GridError([f"no such file: {path}"], source)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise GridError([f"not valid TOML: {exc}"], source) from None
    return grid_from_dict(raw, source)


def grid_from_dict(raw: dict[str, Any], source: str = "grid") -> Grid:
    """A grid from a parsed grid file (or ``{}``: the default grid); every key is validated and
    every problem reported at once, with its key path (``GridError``)."""
    problems = [f"{key}: unknown key; {close_matches(key, sorted(_TOP_KEYS))}" for key in sorted(set(raw) - _TOP_KEYS)]
    methods = _components(raw.get("method"), "method", problems)
    tasks = _components(raw.get("task"), "task", problems)
    seeds = _seeds(raw.get("seeds", list(DEFAULT_SEEDS)), "seeds", problems)
    noise = _noise_entries(raw["noise"], problems) if "noise" in raw else None
    budget = _budget(raw.get("budget", {}), problems)
    executor = _executor(raw["executor"], problems) if "executor" in raw else None
    retries, cell_timeout, val_fraction, eval_ema = (
        _number(raw, key, problems) for key in ("retries", "cell_timeout", "val_fraction", "eval_ema")
    )
    select = _select(raw.get("select", "none"), val_fraction, problems)
    deterministic = raw.get("deterministic", False)
    if not isinstance(deterministic, bool):
        problems.append(f"deterministic: {deterministic!r} must be true or false")
    if problems:
        raise GridError(problems, source)
    return Grid(
        methods, tasks, seeds, noise, budget, executor,
        DEFAULT_RETRIES if retries is None else retries, cell_timeout, val_fraction or 0.0, select, source, eval_ema,
        deterministic,
    )  # fmt: skip


def _number(raw: dict[str, Any], key: str, problems: list[str]) -> Any:
    """The grid's number at ``key`` under its rule (``validation.RULES``), None when absent or invalid."""
    value = raw.get(key)
    return None if value is None else check(RULES[key], value, key, problems)


def _seeds(seeds: Any, where: str, problems: list[str]) -> tuple[int, ...]:
    """A non-empty list of distinct seeds, each under the seed rule (the defaults when invalid)."""
    if not isinstance(seeds, list) or not seeds:
        problems.append(f"{where}: {seeds!r} must be a non-empty list of integers, x ≥ 0")
        return DEFAULT_SEEDS
    before = len(problems)
    for i, seed in enumerate(seeds):
        check(RULES["seed"], seed, f"{where}[{i}]", problems)
    if len(problems) == before and len(set(seeds)) != len(seeds):
        problems.append(f"{where}: {seeds!r} has duplicates")
    return tuple(seeds) if len(problems) == before else DEFAULT_SEEDS


def _noise_entries(value: Any, problems: list[str]) -> list[NoiseSpec]:
    entries = value if isinstance(value, list) else [value]
    if not entries:
        problems.append("noise: [] must be a table with kind and rates, or a non-empty list of them")
    wheres = [f"noise[{i}]" if len(entries) > 1 else "noise" for i in range(len(entries))]
    return [n for entry, where in zip(entries, wheres) if (n := _noise(entry, where, problems))]


def _budget(budget: Any, problems: list[str]) -> dict[str, Any]:
    if not isinstance(budget, dict):
        problems.append("budget: must be a table, e.g. [budget] epochs = 10")
        return {}
    problems += validate_budget(budget)
    return budget


def _select(select: Any, val_fraction: float | None, problems: list[str]) -> str:
    if select not in SELECT_MODES:
        problems.append(f"select: {select!r} must be one of {', '.join(repr(m) for m in SELECT_MODES)}")
        return "none"
    if select == "val" and not val_fraction:
        problems.append('select: "val" needs a validation split to select on: set val_fraction, e.g. val_fraction = 0.2')
    return select


def override_cells(grid: Grid, methods: tuple[str, ...], tasks: tuple[str, ...], noises: tuple[str, ...]) -> None:
    """Replace the grid's methods, tasks and noise by specs given on the command line, checked by
    the rules of a grid file's; a problem names the option and the spec as typed."""
    problems: list[str] = []
    if methods:
        grid.methods = _components(list(methods), "method", problems, option="--method")
    if tasks:
        grid.tasks = _components(list(tasks), "task", problems, option="--task")
    if noises:
        grid.noise = []
        for text in noises:
            try:
                grid.noise.append(parse_noise(text))
            except InvalidInputError as exc:
                problems.append(f"--noise {exc}")
    if problems:
        raise GridError(problems, "command line")


def parse_executor(text: str) -> ComponentSpec:
    """Parse an ``--executor`` spec (``pool``, ``pool{workers = 4}``) and validate its options."""
    problems: list[str] = []
    executor = _executor(text, problems)
    if problems:
        raise GridError(problems, "--executor")
    return executor


def _executor(value: Any, problems: list[str]) -> ComponentSpec:
    """A name, a spec string ``name{option = value}``, or a table with ``name`` and options."""
    if isinstance(value, str):
        try:
            spec = parse_component(value)
        except ValueError as exc:
            problems.append(f"executor: {exc}")
            return ComponentSpec("local")
        if spec.preset is not None or spec.rate_presets:
            problems.append(f"executor: {value!r}: executors have options, not presets")
    elif isinstance(value, dict):
        options = dict(value)
        name = options.pop("name", None)
        if not isinstance(name, str):
            problems.append('executor.name: missing or not a string, e.g. name = "pool"')
            return ComponentSpec("local")
        spec = ComponentSpec(name, None, options)
    else:
        problems.append('executor: must be a name such as "pool" or a table with a name and options')
        return ComponentSpec("local")
    executors = get_host().executors
    if spec.name not in executors:
        problems.append(f"executor: unknown executor {spec.name!r}; {close_matches(spec.name, executors.names())}")
        return ComponentSpec("local")
    cls = executors.get(spec.name)
    try:
        cls(**spec.params)
    except ParameterError as exc:
        problems.append(f"executor ({spec.name}): {exc}")
    return spec


def validate_budget(budget: dict[str, Any], prefix: str = "budget") -> list[str]:
    """Problems with recipe overrides, each under its ``validation.budget_rule``."""
    problems: list[str] = []
    for key, value in budget.items():
        kind = Recipe.OVERRIDABLE.get(key)
        if kind is None:
            problems.append(f"{prefix}.{key}: unknown budget key; {close_matches(key, list(Recipe.OVERRIDABLE))}")
        else:
            check(budget_rule(key, kind), value, f"{prefix}.{key}", problems)
    return problems


def _components(value: Any, kind: str, problems: list[str], option: str | None = None) -> list[ComponentSpec]:
    """The method or task entries of a grid (tables or spec strings); ``option`` names the
    command-line option the specs came from, for the messages."""
    if value is None:
        return []
    entries = value if isinstance(value, list) else [value]
    out = []
    for i, entry in enumerate(entries):
        where = f"{option} {entry!r}" if option else f"{kind}[{i}]"
        if isinstance(entry, str):
            component = _component_from_text(entry, kind, where, problems)
        elif isinstance(entry, dict):
            component = _component_from_table(entry, kind, where, problems)
        else:
            problems.append(f"{where}: must be a table or a string such as \"gce{{q = 0.7}}\"")
            continue
        if component is None:
            continue
        empty = [key for key, values in component.params.items() if values == []]
        for key in empty:
            problems.append(f"{where}.params.{key}: [] expands to no setting; give at least one value")
        if not empty:
            out.append(component)
    return out


def _component_from_text(entry: str, kind: str, where: str, problems: list[str]) -> ComponentSpec | None:
    try:
        component = parse_component(entry)
    except InvalidInputError as exc:
        problems.append(f"{where}: {exc}")
        return None
    if component.rate_presets and kind != "method":
        problems.append(f"{where}: {entry!r}: presets per noise rate are for methods; a {kind} takes one preset")
    return component


def _component_from_table(entry: dict[str, Any], kind: str, where: str, problems: list[str]) -> ComponentSpec | None:
    unknown = set(entry) - {"name", "preset", "params"}
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}; allowed: name, preset, params")
    name, preset, params = entry.get("name"), entry.get("preset"), entry.get("params", {})
    rate_presets: dict[float, str] = {}
    if isinstance(preset, dict) and kind == "method":
        preset, rate_presets = _preset_table(preset, f"{where}.preset", problems)
    if not isinstance(name, str):
        problems.append(f"{where}.name: missing or not a string")
    elif preset is not None and not isinstance(preset, str):
        per_rate = ", or a table of presets per noise rate" if kind == "method" else ""
        problems.append(f"{where}.preset: must be a string{per_rate}")
    elif not isinstance(params, dict):
        problems.append(f"{where}.params: must be a table, e.g. params = {{ q = 0.7 }}")
    else:
        return ComponentSpec(name, preset, params, rate_presets)
    return None


def _noise(entry: Any, where: str, problems: list[str]) -> NoiseSpec | None:
    if not isinstance(entry, dict):
        problems.append(f"{where}: must be a table with kind and rates")
        return None
    unknown = set(entry) - {"kind", "rates", "params"}
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}; allowed: kind, rates, params")
    kind, rates, params = entry.get("kind"), entry.get("rates", [0.0]), entry.get("params", {})
    if not isinstance(kind, str):
        problems.append(f"{where}.kind: missing or not a string")
        return None
    if not isinstance(rates, list) or not rates:
        problems.append(f"{where}.rates: {rates!r} must be a non-empty list of rates, each {RULES['rate'].describe()}")
        return None
    before = len(problems)
    for j, rate in enumerate(rates):
        check(RULES["rate"], rate, f"{where}.rates[{j}]", problems)
    ok = len(problems) == before
    if not isinstance(params, dict):
        problems.append(f"{where}.params: must be a table")
        ok = False
    return NoiseSpec(kind, tuple(float(r) for r in rates), params) if ok else None


def default_grid(host: PluginHost) -> Grid:
    """Every default-grid method with its defaults × every available default task × each task's
    default noise × seeds 0, 1, 2."""
    methods = [ComponentSpec(n) for n in host.methods.names() if host.method_class(n).in_default_grid]
    tasks = [
        ComponentSpec(n)
        for n in host.tasks.names()
        if host.task_class(n).in_default_grid and host.task_class(n).available() is None
    ]
    return Grid(methods, tasks, source="default grid")


@dataclass
class Expansion:
    """The cells of a grid, and the cells that cannot run (method not applicable to the task).

    Grid entries that train the same thing (``Method.canonical``) are one cell; ``names`` lists,
    per cell hash, every name the grid asked for it under (``CellSpec.requested_name``), the
    cell's own first."""

    cells: list[CellSpec]
    not_applicable: dict[str, str]  # cell hash -> reason
    names: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class _MethodEntry:
    """A grid's method entry, resolved: one instance per parameter setting for each preset it uses."""

    index: int
    component: ComponentSpec
    by_preset: dict[str | None, list[Any]]

    def instances(self, rate: float) -> list[Any]:
        return self.by_preset.get(self.component.preset_for(rate), [])


def expand(grid: Grid, host: PluginHost) -> Expansion:
    """Resolve every name, preset and parameter against the registered plugins and build the cells."""
    problems: list[str] = []
    defaults = default_grid(host) if not (grid.methods and grid.tasks) else None
    methods = grid.methods or (defaults.methods if defaults else [])
    tasks = grid.tasks or (defaults.tasks if defaults else [])
    if not methods:
        problems.append("method: no method given and no registered method joins the default grid")
    if not tasks:
        problems.append("task: no task given and no available task joins the default grid")
    entries = [entry for i, comp in enumerate(methods) if (entry := _resolve_method(host, i, comp, problems))]
    resolved_tasks = _resolve_tasks(host, tasks, problems)
    noise = _known_noise(grid.noise, host, problems)

    cells: list[CellSpec] = []
    not_applicable: dict[str, str] = {}
    rates_run: set[float] = set()
    for task in resolved_tasks:
        for task_noise in _task_noise(noise, task, problems):
            rates_run.update(task_noise.rates)
            for seed, rate, entry in itertools.product(grid.seeds, task_noise.rates, entries):
                for method in entry.instances(rate):
                    cell = _cell(grid, method, entry.component.preset_label(), task, task_noise, rate, seed)
                    cells.append(cell)
                    if (why := method.applicability(task)) is not None:
                        not_applicable[cell.cell_hash] = why
    for entry in entries:
        for rate in sorted(set(entry.component.rate_presets) - rates_run):
            runs = ", ".join(f"{r:g}" for r in sorted(rates_run)) or "none"
            problems.append(f'method[{entry.index}].preset."{rate:g}": this grid runs no noise rate {rate:g} (it runs: {runs})')
    if problems:
        raise GridError(problems, grid.source)
    return _deduplicated(cells, not_applicable)


def _resolve_method(host: PluginHost, i: int, comp: ComponentSpec, problems: list[str]) -> _MethodEntry | None:
    """Every parameter setting of a method entry under each preset it uses (per noise rate or not)."""
    cls = _lookup(host, "method", i, comp, problems)
    if cls is None:
        return None
    by_preset: dict[str | None, list[Any]] = {}
    wheres = {comp.preset: f"method[{i}] ({comp.name})"}
    wheres.update({name: f'method[{i}].preset."{rate:g}" ({comp.name})' for rate, name in comp.rate_presets.items()})
    for preset, where in wheres.items():
        try:
            by_preset[preset] = [cls(preset=preset, **values) for values in comp.settings()]
        except ParameterError as exc:
            problems.append(f"{where}: {exc}")
    return _MethodEntry(i, comp, by_preset)


def _resolve_tasks(host: PluginHost, tasks: list[ComponentSpec], problems: list[str]) -> list[Any]:
    """Every available task setting whose data checks out."""
    resolved = []
    for i, comp in enumerate(tasks):
        cls = _lookup(host, "task", i, comp, problems)
        if cls is not None and (why := cls.available()) is not None:
            problems.append(f"task[{i}] {comp.name!r} is not available here: {why}")
            continue
        for task in _instances(cls, "task", i, comp, problems) if cls is not None else []:
            try:
                task.check_data()
            except Exception as exc:  # whatever the plugin raises, it is the user's data problem
                problems.append(f"task[{i}] ({comp.name}): {exc}")
                continue
            resolved.append(task)
    return resolved


def _known_noise(noise: list[NoiseSpec] | None, host: PluginHost, problems: list[str]) -> dict[int, NoiseSpec] | None:
    """The grid's noise entries (by position) whose kind exists; an unknown kind is one problem,
    with the nearest known names, however many tasks the grid has."""
    if noise is None:
        return None
    known = {"none", *host.noise_kinds, *(k for name in host.tasks.names() for k in host.task_class(name).noise_kinds)}
    out = {}
    for n, entry in enumerate(noise):
        given_labels = entry.kind == "none" or (entry.kind in host.noise_kinds and not host.noise_kinds[entry.kind].takes_rate)
        if entry.kind not in known:
            problems.append(f"noise[{n}].kind: unknown noise kind {entry.kind!r}; {close_matches(entry.kind, sorted(known))}")
        elif given_labels and any(r != 0 for r in entry.rates):
            problems.append(f"noise[{n}]: kind {entry.kind!r} gives its labels as they are and takes only rate 0")
        else:
            out[n] = entry
    return out


def _task_noise(noise: dict[int, NoiseSpec] | None, task: Any, problems: list[str]) -> list[NoiseSpec]:
    """The grid's noise (or the task's default) that the task accepts; the rest become problems."""
    accepted = []
    task_cls = type(task)
    entries = {0: NoiseSpec(*task_cls.default_noise)} if noise is None else noise
    for n, entry in entries.items():
        if entry.kind not in task_cls.noise_kinds:
            problems.append(
                f"noise[{n}].kind: task {task_cls.name!r} does not accept noise {entry.kind!r}; "
                f"it accepts: {', '.join(task_cls.noise_kinds)}"
            )
        elif (problem := _noise_problem(task, entry.kind)) is not None:
            problems.append(f"noise[{n}] ({entry.kind}) on task {task_cls.name!r}: {problem}")
        else:
            accepted.append(entry)
    return accepted


def _noise_problem(task: Any, kind: str) -> str | None:
    """What keeps the configured ``task`` from running noise ``kind``, or None."""
    try:
        task.check_noise(kind)
    except Exception as exc:  # whatever the plugin raises, it is the user's configuration
        return str(exc)
    return None


def _cell(grid: Grid, method: Any, preset: str | None, task: Any, noise: NoiseSpec, rate: float, seed: int) -> CellSpec:
    """The cell of one grid entry: what it trains (``Method.canonical``) and the code behind it."""
    trains = method.canonical()
    task_cls = type(task)
    return CellSpec(
        method=method.name,
        method_params=method.identity_config(),
        task=task_cls.name,
        task_params=task.identity_config(),
        noise_kind=noise.kind,
        noise_rate=rate,
        seed=seed,
        method_version=trains.method.version,
        task_version=task_cls.version,
        noise_params=dict(noise.params),
        budget=dict(grid.budget),
        val_fraction=grid.val_fraction,
        preset=preset,
        task_options={k: v for k, v in task.config.items() if k not in task.identity_config()},
        trains=trains.method.name,
        trains_params=trains.params,
        method_code=code_fingerprint(trains.method.__module__),
        task_code=code_fingerprint(task_cls.__module__),
        results_version=RESULTS_VERSION,
        eval_ema=grid.eval_ema,
        deterministic=grid.deterministic,
    )


def _deduplicated(cells: list[CellSpec], not_applicable: dict[str, str]) -> Expansion:
    """One cell per hash (the first entry that asked for it), with every name it was asked under."""
    unique: dict[str, CellSpec] = {}
    names: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        unique.setdefault(cell.cell_hash, cell)
        known = names.setdefault(cell.cell_hash, [])
        if cell.requested_name() not in known:
            known.append(cell.requested_name())
    return Expansion(list(unique.values()), not_applicable, names)


def _lookup(host: PluginHost, kind: str, i: int, comp: ComponentSpec, problems: list[str]) -> type | None:
    try:
        return host.method_class(comp.name) if kind == "method" else host.task_class(comp.name)
    except UnknownNameError as exc:
        problems.append(f"{kind}[{i}]: {exc}")
        return None


def _instances(cls: type, kind: str, i: int, comp: ComponentSpec, problems: list[str]) -> Iterable[Any]:
    """One instance of ``cls`` per parameter setting of the grid entry (problems for the invalid ones)."""
    out = []
    for values in comp.settings():
        try:
            out.append(cls(preset=comp.preset, **values))
        except ParameterError as exc:
            problems.append(f"{kind}[{i}] ({comp.name}): {exc}")
    return out
