"""Figures: the weight curves w(p_y) of loss methods (the GR/DM/IMAE papers' Figure 1).

Curves are measured, not re-derived: each method's ``compute`` runs on probe logits whose target
probability sweeps (0, 1), and the weights it reports are plotted. So the figure shows exactly
what training uses, for built-in and third-party methods alike. Matplotlib is used through its
object API (no pyplot, no global backend), so plotting is safe in any process.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    import torch

    from .method import LossMethod

FORMATS = ("png", "svg", "pdf")


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
        raise ValueError(
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
    import torch
    from matplotlib.figure import Figure

    from .method import LossMethod
    from .checks import method_id, resolve_method

    out = Path(out)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"cannot write {out}: the file name must end in one of {', '.join('.' + f for f in FORMATS)}")
    instances = [resolve_method(m) for m in methods]
    if not instances:
        raise ValueError("plot_weight_curves needs at least one method")
    p = torch.linspace(0, 1, num_points + 2, dtype=torch.float64)[1:-1]
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    for method in instances:
        if not isinstance(method, LossMethod):
            raise ValueError(f"{method.name} is a step-level method; only loss methods have a weight curve w(p_y)")
        w = weight_curve(method, p, num_classes)
        if density:
            w = w / torch.trapezoid(w, p)
        ax.plot(p.numpy(), w.numpy(), label=method_id(method))
    ax.set_xlabel("$p_y$, probability of the labelled class")
    density_label = "emphasis density $w / \\int_0^1 w\\,dp$"
    ax.set_ylabel(density_label if density else "weight $w$ = $\\|\\partial \\ell / \\partial z\\|_1$")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format=fmt, dpi=150)
    return out


def plot_epoch_curves(means: Any, columns: list[tuple[str, str]], rate: float, out: str | Path, title: str) -> Path:
    """One panel per ``(column, axis label)``: the per-epoch mean over seeds of each board row at
    noise ``rate`` (``means`` as written by ``benchsuite.publish.curve_means``), labelled as the
    leaderboard's rows are. Curves written before the ``row`` column are labelled by method, preset
    and the parameters that vary between a method's settings."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from .leaderboard import labelled_rows, normalise_runs

    at_rate = means[(means.noise_rate - rate).abs() < 1e-9]
    if at_rate.empty:
        raise ValueError(f"no curves at noise rate {rate:g} to plot")
    if "row" not in at_rate:
        at_rate = at_rate.astype({"preset": object}).assign(task_params="{}")
        at_rate = labelled_rows(normalise_runs(at_rate.where(at_rate.preset.notna(), at_rate.fillna({"preset": ""}))), "row")
    colours = colormaps["tab20"].colors
    fig = Figure(figsize=(5.0 * len(columns), 4.8), layout="constrained")
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    for ax, (column, axis_label) in zip(axes, columns):
        for i, label in enumerate(sorted(set(at_rate.row))):
            curve = at_rate[at_rate.row == label]
            if column in curve and curve[column].notna().any():
                style = "-" if i < len(colours) else "--"
                ax.plot(curve.epoch, curve[column], style, color=colours[i % len(colours)], label=label, linewidth=1.2)
        ax.set_xlabel("epoch")
        ax.set_ylabel(axis_label)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3 * len(columns), len(labels)), fontsize="small")
    fig.suptitle(title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format=out.suffix.lstrip("."), dpi=110)
    return out
