"""A self-contained static HTML report of stored runs: ``benchsuite report --out DIR``.

``DIR/index.html`` opens from the file system with no server and no network: its style sheet and
script (``report_assets/``, written for this page, no library) are inlined, and its figures are
SVG files in ``DIR/figures/`` that it links relatively. Per task and noise kind it shows:

* the leaderboard tables exactly as the markdown board computes them (``leaderboard.sections``:
  the same rows, mean ± 95 % t-interval cells, bold by the paired test, average ranks with their
  bootstrap interval), sortable by any column and filterable by noise rate and by method;
* per noise rate, the per-epoch curves of every row with a band across seeds (the test metrics;
  the fit of the clean and the noisy subset; training loss, learning rate and emphasis focus
  where the runs store them), the CMC curve of retrieval tasks, and the weight curves w(p_y) of
  the rows' loss methods (``plotting``);
* every run with its provenance on demand (``<details>``).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from . import leaderboard as lb
from . import plotting
from .atomic import write_text_atomically
from .errors import InvalidInputError

#: Marks a folder as written by ``write_report``: only such a folder (or an empty one) is written into.
GENERATOR = "benchsuite report"
FIGURES = "figures"
#: A published board's report is committed only below this size; above, the README gives the command.
PUBLISH_LIMIT_BYTES = 2_000_000


@dataclass
class ReportFiles:
    """What ``write_report`` wrote: the page, the figures, and their total size."""

    index: Path
    figures: list[Path] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in [self.index, *self.figures])


def prepare_output(out: Path) -> None:
    """Make ``out`` ready for a report: new, empty, or holding an earlier report (whose page and
    figures are removed). Any other content is refused: a report never overwrites files it did
    not write."""
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {out} is a file; the report is a folder (index.html and figures/)")
    if not out.exists():
        out.mkdir(parents=True)
        return
    index, figures = out / "index.html", out / FIGURES
    ours = index.is_file() and f'<meta name="generator" content="{GENERATOR}">' in index.read_text(errors="replace")
    if any(out.iterdir()) and not ours:
        raise InvalidInputError(f"--out {out} holds files that are not a benchsuite report; give a new or empty folder")
    if ours:
        index.unlink()
        for svg in figures.glob("*.svg") if figures.is_dir() else []:
            svg.unlink()


def _asset(name: str) -> str:
    return resources.files("benchsuite").joinpath("report_assets", name).read_text(encoding="utf-8")


def _inline_markdown(text: str) -> str:
    """The board's markdown prose as HTML: escaped, with ``**bold**`` and ```code```."""
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def _rate(rate: float) -> str:
    return f"{rate:g}"


def _number(value: float) -> str:
    return "" if pd.isna(value) else f"{value:.6g}"


def table_html(table: lb.Table) -> str:
    """A leaderboard table: each cell carries its mean (``data-value``) for sorting and its noise
    rate (``data-rate``) for the rate filter; bold as on the board."""
    e = html.escape
    head = ["<th>method</th>", *[f'<th data-rate="{_rate(r)}">r={_rate(r)}</th>' for r in table.rates]]
    head += ["<th>avg rank [95 % CI]</th>"] if table.ranked else []
    head += ["<th>privileged data</th>"] if table.marked else []
    rows = []
    for row in table.rows:
        cells = [f"<td>{e(row.label)}</td>"]
        for rate in table.rates:
            cell = row.cells.get(rate)
            text = "–" if cell is None else f"<strong>{e(cell.text)}</strong>" if cell.bold else e(cell.text)
            value = "" if cell is None else _number(cell.mean)
            cells.append(f'<td class="num" data-rate="{_rate(rate)}" data-value="{value}">{text}</td>')
        if table.ranked:
            cells.append(f'<td class="num" data-value="{_number(row.rank)}">{e(row.rank_text)}</td>')
        if table.marked:
            cells.append(f"<td>{e(row.privileged or '–')}</td>")
        rows.append(f'<tr data-label="{e(row.label)}">{"".join(cells)}</tr>')
    return f'<table class="board"><thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _filters(index: int, rates: list[float]) -> str:
    boxes = "".join(
        f'<label><input type="checkbox" class="rate-filter" value="{_rate(r)}" checked> r={_rate(r)}</label>' for r in rates
    )
    return (
        f'<div class="filters"><label for="method-filter-{index}">method contains</label>'
        f'<input type="search" class="method-filter" id="method-filter-{index}" placeholder="e.g. gce"> '
        f"<span>noise rates: {boxes}</span></div>"
    )


def _figure(path: Path, root: Path, caption: str, rate: float | None = None) -> str:
    rate_attr = f' data-rate="{_rate(rate)}"' if rate is not None else ""
    return (
        f'<figure{rate_attr}><img src="{html.escape(path.relative_to(root).as_posix())}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _provenance(run: Any) -> dict[str, Any]:
    details = json.loads(run.provenance) if isinstance(run.provenance, str) else {}
    error = getattr(run, "error", None)
    return {"error": error, **details} if isinstance(error, str) and error else details


def _runs_html(runs: pd.DataFrame) -> str:
    """Every run of a section with its provenance (and its error, if any) on demand: what all
    runs share is shown once, each run shows the rest."""
    e = html.escape
    ordered = runs.drop_duplicates(["label", "cell_hash"]).sort_values(["label", "noise_rate", "seed"], kind="stable")
    runs_provenance = [_provenance(run) for run in ordered.itertuples(index=False)]
    first = runs_provenance[0] if runs_provenance else {}
    shared = {k: v for k, v in first.items() if all(k in p and p[k] == v for p in runs_provenance)}
    rows = []
    for run, provenance in zip(ordered.itertuples(index=False), runs_provenance):
        own = {k: v for k, v in provenance.items() if k not in shared}
        duration = getattr(run, "duration_s", None)
        rows.append(
            f"<tr><td>{e(run.label)}</td><td>{_rate(run.noise_rate)}</td><td>{run.seed}</td><td>{e(str(run.status))}</td>"
            f"<td>{'' if duration is None or pd.isna(duration) else f'{duration:.1f} s'}</td><td><code>{e(str(run.cell_hash))}</code></td>"
            f"<td><details><summary>provenance</summary><pre>{e(json.dumps(own, indent=1, sort_keys=True))}</pre></details></td></tr>"
        )
    return (
        f"<details><summary>Runs and their provenance ({len(ordered)})</summary>"
        f"<details><summary>provenance shared by every run</summary><pre>{e(json.dumps(shared, indent=1, sort_keys=True))}</pre></details>"
        "<table class=\"runs\"><thead><tr><th>row</th><th>r</th><th>seed</th><th>status</th><th>time</th><th>cell</th>"
        f"<th>provenance (besides the shared)</th></tr></thead><tbody>{''.join(rows)}</tbody></table></details>"
    )


def _loss_methods(section: lb.Section, labels: list[str], host: Any) -> list[tuple[str, Any]]:
    """(label, instance) of each row that trains one loss method with one setting at every rate,
    built from its stored setting with the installed code; other rows have no weight curve."""
    from .method import LossMethod
    from .registry import UnknownNameError

    out = []
    for label in labels:
        settings = {s for s in section.runs.setting[section.runs.label == label]}
        if len(settings) != 1:
            continue  # a preset per noise rate: a different weighting at each rate
        trained = json.loads(next(iter(settings)))
        try:
            method = host.method_class(trained["method"])(**trained.get("method_params", {}))
        except (UnknownNameError, TypeError, ValueError):  # its plugin is not installed or no longer takes these parameters
            continue
        if isinstance(method, LossMethod):
            out.append((label, method))
    return out


@dataclass
class _SectionFigures:
    """Writes one section's figures into ``root/figures`` (names starting with ``prefix``) and returns their HTML."""

    section: lb.Section
    curves: pd.DataFrame | None
    root: Path
    prefix: str
    written: list[Path]

    def save(self, fig: Any, name: str) -> Path:
        path = plotting.save_figure(fig, self.root / FIGURES / f"{self.prefix}-{name}.svg")
        self.written.append(path)
        return path

    def labels(self) -> list[str]:
        return section_labels(self.section)

    def epoch_html(self) -> list[str]:
        if self.curves is None or self.curves.empty:
            return ['<p class="note">No per-epoch curves: give the curves (`--results` or `--curves`) to draw them.</p>']
        labels, out = self.labels(), []
        task = f"{self.section.task}, {self.section.kind} noise"
        kinds = {"metrics": [(m, m) for m in self.section.table_metrics], **plotting.FIGURE_PANELS}
        for rate in self.section.rates:
            at_rate = self.curves[(self.curves.noise_rate - rate).abs() < 1e-9]
            for kind, panels in kinds.items():
                present = plotting.present_panels(at_rate, panels)
                if at_rate.empty or not present:
                    continue
                title = f"{task}, noise rate {_rate(rate)}: " + ", ".join(label for _, label in present) + " per epoch"
                path = self.save(plotting.epoch_figure(at_rate, present, [rate], labels), f"{kind}-r{_rate(rate)}")
                out.append(_figure(path, self.root, title, rate))
        return out

    def cmc_html(self) -> list[str]:
        if not plotting.cmc_ranks(self.section.runs):
            return []
        title = f"{self.section.task}, {self.section.kind} noise: CMC at the final epoch"
        fig = plotting.cmc_figure(self.section.runs, self.section.rates, self.labels())
        return [_figure(self.save(fig, "cmc"), self.root, title)]

    def weights_html(self, host: Any) -> list[str]:
        methods = _loss_methods(self.section, self.labels(), host) if host is not None else []
        if not methods:
            return []
        title = "emphasis density w(p_y) / ∫w of the rows' loss methods (installed code)"
        return [_figure(self.save(plotting.weight_figure(methods, density=True), "weights"), self.root, title)]


def _section_curves(section: lb.Section, curves: pd.DataFrame | None) -> pd.DataFrame | None:
    """The section's per-epoch curves by row: per run (curves keyed by ``cell_hash``) or the
    published per-row means."""
    if curves is None:
        return None
    if "cell_hash" in curves:
        return plotting.run_curves(section.runs, curves)
    means = curves[(curves.task == section.task) & (curves.noise_kind == section.kind)]
    return plotting.mean_curves(means) if not means.empty else None


def section_html(section: lb.Section, index: int, curves: pd.DataFrame | None, root: Path, host: Any, written: list[Path]) -> str:
    """One task and noise kind: filters, tables, figures, runs."""
    figures = _SectionFigures(section, _section_curves(section, curves), root, f"{index:02d}-{_slug(section.task)}-{_slug(section.kind)}", written)
    parts = [
        f'<section class="board-section" id="section-{index}"><h2>{html.escape(section.heading)}</h2>',
        f"<p>{_inline_markdown(lb.budget_line(section.runs))}</p>",
        _filters(index, section.rates),
    ]
    for block in section.blocks:
        parts += [f"<h3>{html.escape(block.heading)}</h3>"] if block.heading else []
        parts += [f"<p><strong>{html.escape(block.title)}</strong></p>"] if block.title else []
        parts += [f'<p class="note">{html.escape(block.note)}</p>'] if block.note else []
        parts.append(table_html(block.table))
    parts += ["<h3>Curves</h3>", *figures.epoch_html(), *figures.cmc_html(), *figures.weights_html(host)]
    parts += ["<h3>Runs</h3>", _runs_html(section.runs), "</section>"]
    return "\n".join(parts)


FIGURE_NOTE = (
    "Figures: one line per board row (its label as in the tables); a line is the mean over the completed seeds, "
    "its band the range of those seeds (min to max; no band for a single seed or for published per-row means). "
    "The table cells give the 95 % t-interval of the mean instead: with few seeds it is several times wider than "
    "the range of the runs."
)


def write_report(
    runs: pd.DataFrame,
    out: str | Path,
    *,
    curves: pd.DataFrame | None = None,
    command: str = "benchsuite report",
    title: str = "benchsuite report",
    select: str = "none",
    tasks: list[str] | None = None,
    host: Any = None,
) -> ReportFiles:
    """Write the report of ``runs`` (a ``results.to_dataframe`` table or its CSV export) into the
    folder ``out``. ``curves``: per-epoch metrics, per run (``results.curves_dataframe``, an export's
    curves CSV) or per board row (a published ``curves.csv``); ``host``: the plugin host whose loss
    methods draw the weight curves (none: no weight curves)."""
    root = Path(out)
    views = lb.sections(runs, select, tasks)
    prepare_output(root)
    written: list[Path] = []
    body = [section_html(view, i, curves, root, host, written) for i, view in enumerate(views)]
    header = lb.header_lines(lb.normalise_runs(runs), command) if views else []
    nav = "".join(f'<li><a href="#section-{i}">{html.escape(v.heading)}</a></li>' for i, v in enumerate(views))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{GENERATOR}">
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<title>{html.escape(title)}</title><style>{_asset("report.css")}</style></head>
<body><h1>{html.escape(title)}</h1>
<ul>{"".join(f"<li>{_inline_markdown(line.removeprefix('- '))}</li>" for line in header)}</ul>
<p class="note">{_inline_markdown(lb.DEFINITIONS)}</p><p class="note">{FIGURE_NOTE}</p>
{"<nav><ul>" + nav + "</ul></nav>" if views else "<p>No runs stored yet: <code>benchsuite run</code> fills the database.</p>"}
{"".join(body)}
<script>{_asset("report.js")}</script></body></html>
"""
    index = root / "index.html"
    write_text_atomically(index, page)
    return ReportFiles(index, written)


# -- one figure of one's own runs: ``benchsuite plot curves|fit|cmc|weights --results`` -----------


def parse_noise(text: str | None) -> tuple[str | None, list[float] | None]:
    """``--noise``: ``RATE[,RATE...]``, ``KIND`` or ``KIND:RATE[,RATE...]`` -> (kind, rates)."""
    if not text:
        return None, None
    kind, _, rates = text.rpartition(":") if ":" in text else ("", "", text)
    try:
        return kind or None, [float(r) for r in rates.split(",")]
    except ValueError:
        if ":" in text:
            raise InvalidInputError(f"--noise {text!r}: the rates after ':' must be numbers, e.g. symmetric:0,0.4") from None
        return text, None


def pick_section(views: list[lb.Section], task: str | None, kind: str | None) -> lb.Section:
    """The one section of ``task`` and noise ``kind``; when either is not given, the only one left."""
    matching = [v for v in views if (task is None or v.task == task) and (kind is None or v.kind == kind)]
    if len(matching) == 1:
        return matching[0]
    known = ", ".join(f"{v.task} ({v.kind} noise)" for v in views) or "none"
    if not matching:
        raise InvalidInputError(f"no runs of task {task or 'any'} with {kind or 'any'} noise; the results hold: {known}")
    raise InvalidInputError(f"the results hold several tasks or noise kinds ({known}): choose one with --task and --noise KIND:RATES")


def pick_rates(section: lb.Section, rates: list[float] | None) -> list[float]:
    """The noise rates to draw: all of the section's (r = 0 included), or those asked for, which must exist."""
    if rates is None:
        return section.rates
    missing = [r for r in rates if not any(abs(r - s) < 1e-9 for s in section.rates)]
    if missing:
        raise InvalidInputError(
            f"no runs at noise rate {', '.join(map(_rate, missing))} of {section.task}; it has {', '.join(map(_rate, section.rates))}"
        )
    return [s for s in section.rates if any(abs(r - s) < 1e-9 for r in rates)]


def section_labels(section: lb.Section) -> list[str]:
    """The section's row labels in board order (the first table's), then any other row."""
    first = [row.label for row in section.blocks[0].table.rows] if section.blocks else []
    return first + sorted(set(section.runs.label) - set(first))


def plot_figure(
    kind: str,
    section: lb.Section,
    curves: pd.DataFrame | None,
    rates: list[float],
    metric: str | None = None,
    host: Any = None,
    density: bool = True,
) -> Any:
    """The figure of ``benchsuite plot KIND`` for one section: ``curves`` (a per-epoch metric, by
    default the board's), ``fit`` (clean and noisy subset), ``cmc`` or ``weights``."""
    labels = section_labels(section)
    at_rates = section.runs[section.runs.noise_rate.map(lambda r: any(abs(r - s) < 1e-9 for s in rates))]
    title = f"{section.task}, {section.kind} noise"
    if kind == "cmc":
        return plotting.cmc_figure(at_rates, rates, labels, f"{title}: CMC at the final epoch")
    if kind == "weights":
        methods = _loss_methods(section, labels, host)
        if not methods:
            raise InvalidInputError(f"no row of {section.task} trains a loss method with one setting at every rate: no weight curve to draw")
        what = "emphasis density" if density else "weight curves"
        return plotting.weight_figure(methods, density=density, title=f"{title}: {what} of the rows' loss methods")
    frame = plotting.run_curves(at_rates, curves) if curves is not None else pd.DataFrame()
    if kind == "fit":
        panels = plotting.present_panels(frame, plotting.FIGURE_PANELS["fit"])
        if not panels:
            raise InvalidInputError(f"the runs of {section.task} store no fit curves (clean_fit, noisy_memorised)")
    else:
        metrics = [metric] if metric else section.table_metrics
        stored = sorted(c for c in frame if c not in ("cell_hash", "epoch", "label", "noise_rate", "seed") and frame[c].notna().any())
        unknown = [m for m in metrics if m not in stored]
        if unknown:
            raise InvalidInputError(f"no per-epoch metric {', '.join(unknown)} in the runs of {section.task}; stored: {', '.join(stored) or 'none'}")
        panels = [(m, m) for m in metrics]
    return plotting.epoch_figure(frame, panels, rates, labels, f"{title}: " + ", ".join(c for c, _ in panels) + " per epoch")
