"""Figures: per-epoch curves of stored runs with a band across seeds, CMC curves of retrieval
tasks, and the weight curves w(p_y) of loss methods (the GR/DM/IMAE papers' Figure 1).

One line per board row (the leaderboard's row identity, so ``dm = gr`` is one line, not two lines
hiding each other), styled by ``series_styles``: ten colours, and per line a marker and a dash
pattern such that any two of up to 20 lines differ in colour or dash *and* in marker or dash,
so they stay apart in greyscale too. The band around a line is the 95 % Student-t interval of the
mean over seeds per epoch, the band the range of the seeds (min to max): the half-width of the
tables' t-interval is 8.98 standard deviations of the seeds for 2 seeds and 2.48 for 3, so with few
seeds it would leave the metric's range; the range shows the runs themselves. A row with a single seed has no band. Epoch axes have integer ticks; legends sit outside the axes in a constrained
layout, so nothing is clipped.

Weight curves are measured, not re-derived: each method's ``compute`` runs on probe logits whose
target probability sweeps (0, 1), and the weights it reports are plotted. So the figure shows
exactly what training uses, for built-in and third-party methods alike. Matplotlib is used through
its object API (no pyplot, no global backend), so plotting is safe in any process.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import pandas as pd

from .atomic import atomic_open
from .errors import InvalidInputError

if TYPE_CHECKING:
    import torch

    from .method import LossMethod

FORMATS = ("png", "svg", "pdf")
#: Ten colours (matplotlib's tab10, designed to be told apart), markers and dash patterns; see
#: ``series_styles`` for how they combine.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
DASHES = ("-", "--", ":", "-.")
#: Lines ``series_styles`` keeps apart; beyond, styles repeat.
DISTINCT_SERIES = 20
#: Per-epoch curves drawn per figure kind: (column, axis label); a column a run does not store is left out.
FIGURE_PANELS: dict[str, tuple[tuple[str, str], ...]] = {
    "fit": (
        ("clean_fit", "clean-labelled training examples fitted"),
        ("noisy_memorised", "noisy-labelled examples fitted to their wrong label"),
    ),
    "training": (
        ("loss", "training loss"),
        ("lr", "learning rate"),
        ("weight_focus", "emphasis focus Σ w·p_y / Σ w"),
    ),
}


def series_styles(labels: list[str]) -> dict[str, dict[str, Any]]:
    """Colour, marker and dash of each label, by position: line i has colour i mod 10, marker
    i mod 10 and dash i div 5. Two lines i < j < 20 differ in dash unless i div 5 = j div 5, and
    then differ in colour and marker (j − i < 5): distinct in colour or dash, and in greyscale by
    marker or dash."""
    return {
        label: {
            "color": COLOURS[i % len(COLOURS)],
            "marker": MARKERS[i % len(MARKERS)],
            "linestyle": DASHES[(i % DISTINCT_SERIES) // 5],
        }
        for i, label in enumerate(labels)
    }


def save_figure(fig: Any, out: str | Path) -> Path:
    """Write ``fig`` to ``out`` in the format its suffix names (.png, .svg, .pdf); SVG keeps text as
    text and carries no date, so the same figure gives the same bytes."""
    from matplotlib import rc_context

    out = Path(out)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise InvalidInputError(f"cannot write {out}: the file name must end in one of {', '.join('.' + f for f in FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"Date": None} if fmt == "svg" else {}
    # a short font list: SVG text names its fonts on every label, and the default list is 12 long
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "benchsuite", "font.sans-serif": ["DejaVu Sans", "Arial"]}):
        with atomic_open(out, "wb") as handle:
            fig.savefig(handle, format=fmt, dpi=150, metadata=metadata)
    return out


def logits_for_target_prob(p: torch.Tensor, num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (and targets, all class 0) whose softmax gives ``p`` to the target and spreads
    ``1 − p`` evenly over the other classes: a probe for a weight curve ``w(p_y)``."""
    import torch

    p = p.to(torch.float64)
    rest = ((1 - p) / (num_classes - 1)).log()
    logits = torch.cat([p.log()[:, None], rest[:, None].expand(-1, num_classes - 1)], dim=1)
    return logits, torch.zeros(len(p), dtype=torch.long)


def weight_curve(method: LossMethod, p: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """The weights ``method`` reports for examples whose target probability is ``p`` (0 < p < 1)."""
    logits, targets = logits_for_target_prob(p, num_classes)
    weights = method.compute(logits, targets).weights
    if weights is None:
        raise InvalidInputError(
            f"method {method.name!r} reports no per-example weights (LossOutput.weights is None), "
            "so it has no weight curve; return the L1 norm of each example's logit gradient"
        )
    return weights.detach()


def plot_weight_curves(
    methods: Iterable[Any],
    out: str | Path,
    *,
    num_points: int = 999,
    num_classes: int = 10,
    density: bool = False,
    title: str | None = None,
) -> Path:
    """Draw w(p_y) for each method (a name, class or instance) into ``out`` (.png, .svg or .pdf).

    ``density=True`` divides each curve by its integral over [0, 1] (the DM paper's emphasis
    density function, Eq. 8), which puts differently scaled weightings on one axis. For losses
    of p_y alone the curve does not depend on ``num_classes``; for others (the full MSE) the
    non-target probability is spread evenly over the other classes.
    """
    from .checks import method_id, resolve_method

    if Path(out).suffix.lstrip(".").lower() not in FORMATS:
        raise InvalidInputError(f"cannot write {out}: the file name must end in one of {', '.join('.' + f for f in FORMATS)}")
    instances = [resolve_method(m) for m in methods]
    if not instances:
        raise InvalidInputError("plot_weight_curves needs at least one method")
    labelled = [(method_id(m), m) for m in instances]
    fig = weight_figure(labelled, num_points=num_points, num_classes=num_classes, density=density, title=title)
    return save_figure(fig, out)


def weight_figure(
    methods: list[tuple[str, Any]],
    *,
    num_points: int = 999,
    num_classes: int = 10,
    density: bool = False,
    title: str | None = None,
) -> Any:
    """A figure of w(p_y) of each (label, loss-method instance), styled by ``series_styles``."""
    import torch
    from matplotlib.figure import Figure

    from .method import LossMethod

    p = torch.linspace(0, 1, num_points + 2, dtype=torch.float64)[1:-1]
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    styles = series_styles([label for label, _ in methods])
    for i, (label, method) in enumerate(methods):
        if not isinstance(method, LossMethod):
            raise InvalidInputError(f"{method.name} is a step-level method; only loss methods have a weight curve w(p_y)")
        w = weight_curve(method, p, num_classes)
        if density:
            w = w / torch.trapezoid(w, p)
        (line,) = ax.plot(p.numpy(), w.numpy(), label=label, markevery=num_points // 8, markersize=4, **styles[label])
        line.set_gid(f"series-0-{i}")
    ax.set_xlabel("$p_y$, probability of the labelled class")
    density_label = "emphasis density $w / \\int_0^1 w\\,dp$"
    ax.set_ylabel(density_label if density else "weight $w$ = $\\|\\partial \\ell / \\partial z\\|_1$")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _finish(fig, [label for label, _ in methods], dict(zip(*reversed(ax.get_legend_handles_labels()))), title)
    return fig


# -- per-epoch curves of stored runs -------------------------------------------------------------


def run_curves(labelled: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch metrics of the completed runs of ``labelled`` (runs with their board row in
    ``label``, as ``leaderboard.labelled_rows`` gives them) from ``curves`` (one row per run and
    epoch, keyed by ``cell_hash``: ``results.curves_dataframe`` or an export's curves CSV). A run
    in two board rows appears under both."""
    completed = labelled[labelled.status == "completed"][["cell_hash", "label", "noise_rate", "seed"]]
    return curves.merge(completed, on="cell_hash")


def mean_curves(means: pd.DataFrame) -> pd.DataFrame:
    """Published per-row means (``publish.curve_means``: one row per board row, rate and epoch) in
    ``run_curves``'s shape, one pseudo-run per row: drawn without a band. Curves written before the
    ``row`` column are labelled by method, preset and the parameters that vary between a method's
    settings."""
    from .leaderboard import labelled_rows, normalise_runs

    if "row" not in means:
        means = means.astype({"preset": object}).assign(task_params="{}", cell_hash=means.index.astype(str))
        means = labelled_rows(normalise_runs(means.where(means.preset.notna(), means.fillna({"preset": ""}))), "row")
    return means.rename(columns={"row": "label"}).assign(seed=0)


def _draw_series(ax: Any, frame: pd.DataFrame, column: str, styles: dict[str, dict[str, Any]], panel: int) -> int:
    """One line per label (mean over seeds per epoch) with its band; returns the lines drawn."""
    drawn = 0
    for index, (label, style) in enumerate(styles.items()):
        rows = frame[(frame.label == label)][["epoch", column]].dropna()
        if rows.empty:
            continue
        stats = rows.groupby("epoch", sort=True)[column].agg(["mean", "min", "max"])
        epochs = stats.index.to_numpy(dtype=float)
        markevery = max(1, len(epochs) // 8)
        (line,) = ax.plot(epochs, stats["mean"], label=label, markevery=markevery, markersize=4, linewidth=1.3, **style)
        line.set_gid(f"series-{panel}-{index}")
        if (stats["max"] > stats["min"]).any():
            band = ax.fill_between(epochs, stats["min"], stats["max"], color=style["color"], alpha=0.15, linewidth=0)
            band.set_gid(f"band-{panel}-{index}")
        drawn += 1
    return drawn


def epoch_figure(
    frame: pd.DataFrame, panels: list[tuple[str, str]], rates: list[float], labels: list[str], title: str | None = None
) -> Any:
    """Per-epoch curves: a panel per (column, axis label) and noise rate — side by side for one
    rate, else a row per column and a column per rate — and a line per label in ``labels`` (whose
    order fixes the styles) with a band across seeds."""
    import textwrap

    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    styles = series_styles(labels)
    shape = (1, len(panels)) if len(rates) == 1 else (len(panels), len(rates))
    fig = Figure(figsize=(2.4 + 3.4 * shape[1], 0.8 + 2.9 * shape[0]), layout="constrained")
    axes = fig.subplots(*shape, squeeze=False).reshape(len(panels), len(rates))
    handles: dict[str, Any] = {}
    for row, (column, axis_label) in enumerate(panels):
        for col, rate in enumerate(rates):
            ax = axes[row][col]
            at_rate = frame[(frame.noise_rate - rate).abs() < 1e-9]
            if column not in at_rate or not _draw_series(ax, at_rate, column, styles, row * len(rates) + col):
                ax.text(0.5, 0.5, "no values at this noise rate", transform=ax.transAxes, ha="center", va="center", color="0.4")
                ax.set_yticks([])
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(textwrap.fill(axis_label, 36) if col == 0 else "")
            ax.set_title(f"noise rate {rate:g}", fontsize="medium")
            ax.grid(alpha=0.3)
            handles.update(zip(*reversed(ax.get_legend_handles_labels())))
    _finish(fig, labels, handles, title)
    return fig


def _finish(fig: Any, labels: list[str], handles: dict[str, Any], title: str | None) -> None:
    """The legend outside the axes, in ``labels`` order, and the title wrapped to the figure's width."""
    import textwrap

    ordered = [label for label in labels if label in handles]
    fig.legend([handles[label] for label in ordered], ordered, loc="outside right upper", fontsize="small")
    if title:  # left-aligned and wrapped short of the legend's column, which it would otherwise run into
        fig.suptitle(textwrap.fill(title, int(10 * (fig.get_figwidth() - 2.5))), fontsize="medium", x=0.02, ha="left")


def present_panels(frame: pd.DataFrame, panels: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The panels whose column holds at least one value in ``frame``."""
    return [(c, label) for c, label in panels if c in frame and frame[c].notna().any()]


def cmc_ranks(runs: pd.DataFrame) -> list[int]:
    """The ranks k of the CMC points ``test_rank<k>`` (torchreid's rules, the leaderboard's) that
    ``runs`` hold values of, in order."""
    points = [c for c in runs if c.startswith("test_rank") and c.removeprefix("test_rank").isdigit() and runs[c].notna().any()]
    return sorted(int(c.removeprefix("test_rank")) for c in points)


def cmc_figure(labelled: pd.DataFrame, rates: list[float], labels: list[str], title: str | None = None) -> Any:
    """CMC curves of a retrieval task: matching rate at rank k of the final epoch, mean over the
    completed seeds with their range as a band, a panel per noise rate."""
    from matplotlib.figure import Figure

    ranks = cmc_ranks(labelled)
    if not ranks:
        raise InvalidInputError("these runs store no CMC points (test_rank<k> metrics): only retrieval tasks do")
    styles = series_styles(labels)
    completed = labelled[labelled.status == "completed"]
    fig = Figure(figsize=(1.6 + 3.6 * len(rates), 3.6), layout="constrained")
    axes = fig.subplots(1, len(rates), squeeze=False)[0]
    handles: dict[str, Any] = {}
    for col, (ax, rate) in enumerate(zip(axes, rates)):
        at_rate = completed[(completed.noise_rate - rate).abs() < 1e-9]
        for index, (label, style) in enumerate(styles.items()):
            runs = at_rate[at_rate.label == label]
            values = runs[[f"test_rank{k}" for k in ranks]].dropna().to_numpy(dtype=float)
            if not len(values):
                continue
            (line,) = ax.plot(ranks, values.mean(axis=0), label=label, markersize=4, linewidth=1.3, **style)
            line.set_gid(f"series-{col}-{index}")
            if len(values) > 1:
                ax.fill_between(ranks, values.min(axis=0), values.max(axis=0), color=style["color"], alpha=0.15, linewidth=0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ranks, [str(k) for k in ranks])
        ax.minorticks_off()
        ax.set_xlabel("rank k")
        ax.set_ylabel("matching rate (CMC)" if col == 0 else "")
        ax.set_title(f"noise rate {rate:g}", fontsize="medium")
        ax.grid(alpha=0.3)
        handles.update(zip(*reversed(ax.get_legend_handles_labels())))
    _finish(fig, labels, handles, title)
    return fig


def plot_epoch_curves(means: Any, columns: list[tuple[str, str]], rate: float, out: str | Path, title: str) -> Path:
    """The published boards' per-epoch figure at noise ``rate``: a panel per ``(column, axis
    label)``, a line per board row (``means`` as written by ``benchsuite.publish.curve_means``)."""
    frame = mean_curves(means)
    at_rate = frame[(frame.noise_rate - rate).abs() < 1e-9]
    if at_rate.empty:
        raise InvalidInputError(f"no curves at noise rate {rate:g} to plot")
    labels = sorted(set(frame.label))
    panels = present_panels(at_rate, columns)
    fig = epoch_figure(at_rate, [(c, label) for c, label in columns if (c, label) in panels], [rate], labels, title)
    return save_figure(fig, out)


#: Inches per panel of a ranked-list picture (a 256x128 person crop and a two-line caption).
RANKED_PANEL = (1.15, 2.9)
#: Borders of the gallery panels: a hit is a solid green frame, a miss a dotted red one (apart in
#: greyscale by the dash).
HIT_STYLE = {"color": "#2ca02c", "linestyle": "-"}
MISS_STYLE = {"color": "#d62728", "linestyle": ":"}


def _image_panel(ax: Any, image: Any, caption: str, gid: str, border: dict[str, Any] | None = None) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(caption, fontsize="small")
    ax.set_gid(gid)
    for spine in ax.spines.values():
        if border is None:
            spine.set_linewidth(0.8)
        else:
            spine.set(linewidth=4, **border)


def ranked_figure(lists: list[Any], title: str | None = None) -> Any:
    """The ranked lists of a few queries (``benchsuite.toolkit.retrieval.RankedList``): a row per
    query, its image first, then the top gallery entries in rank order, hits framed solid green
    and misses dotted red. The figure is ``RANKED_PANEL`` inches per panel, whatever the captions."""
    from matplotlib.figure import Figure

    if not lists:
        raise InvalidInputError("no queries to draw")
    columns = 1 + max(len(ranked.gallery) for ranked in lists)
    width, height = RANKED_PANEL
    fig = Figure(figsize=(width * columns, height * len(lists) + (0.4 if title else 0)), layout="constrained")
    axes = fig.subplots(len(lists), columns, squeeze=False)
    for row, ranked in enumerate(lists):
        _image_panel(axes[row][0], ranked.query, f"query\n{ranked.query_caption}", f"query-{row}")
        for col, ax in enumerate(axes[row][1:], start=1):
            if col > len(ranked.gallery):
                ax.set_axis_off()
                continue
            hit = ranked.hits[col - 1]
            caption = f"{col}: {'hit' if hit else 'miss'}\n{ranked.captions[col - 1]}"
            _image_panel(ax, ranked.gallery[col - 1], caption, f"rank-{row}-{col}", HIT_STYLE if hit else MISS_STYLE)
    if title:
        fig.suptitle(title)
    return fig
