"""Read a results database into pandas: one row per run, or one row per run and epoch.

``to_dataframe(path)`` is the raw-numbers entry point (``benchsuite export`` writes it as CSV).
Per run it holds the identity of the cell, its status and timings, the final value of every
per-epoch metric (plain metric names, e.g. ``test_acc``), and for the task's declared metrics the
best value over epochs (``best_<metric>``) and the mean of the last ``LAST_K`` epochs
(``last5_<metric>``). The JSON columns ``spec``, ``info`` and ``provenance`` keep everything else;
``setting`` is the cell's identity without seed and noise rate (runs with equal settings, and
only they, share a leaderboard row) and ``names`` every name the cell was asked for under
(``[{"method", "preset", "params"}, ...]``: ``dm`` and ``gr`` with their defaults are one cell).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .spec import CellSpec
from .store import open_store

LAST_K = 5
RUN_COLUMNS = [
    "cell_hash", "method", "preset", "params", "names", "setting", "task", "task_params", "noise_kind", "noise_rate",
    "seed", "status", "error", "diverged_epoch", "epochs", "started_at", "finished_at", "duration_s",
    "spec", "info", "provenance",
]  # fmt: skip


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True)


def curves_dataframe(path: str | Path) -> pd.DataFrame:
    """Per-epoch metrics: one row per (run, epoch), one column per metric."""
    with open_store(path, "read") as store:
        rows = store.query(
            "SELECT r.cell_hash, c.epoch, c.key, c.value FROM curves c JOIN runs r ON r.id = c.run_id"
        )
    long = pd.DataFrame([tuple(r) for r in rows], columns=["cell_hash", "epoch", "key", "value"])
    if long.empty:
        return pd.DataFrame(columns=["cell_hash", "epoch"])
    wide = long.pivot_table(index=["cell_hash", "epoch"], columns="key", values="value", aggfunc="first")
    wide.columns.name = None
    return wide.reset_index().sort_values(["cell_hash", "epoch"], kind="stable").reset_index(drop=True)


def to_dataframe(path: str | Path) -> pd.DataFrame:
    """One row per run (see the module docstring for the columns)."""
    with open_store(path, "read") as store:
        rows = store.query(
            "SELECT cell_hash, method, preset, spec, task, noise_kind, noise_rate, seed, status, error, "
            "diverged_epoch, epochs, started_at, finished_at, duration_s, info, provenance, final FROM runs"
        )
        recorded_names = store.names()
    records = []
    for r in rows:
        spec = CellSpec.from_dict(json.loads(r["spec"]))
        record = {k: r[k] for k in r.keys() if k != "final"}
        record["params"] = _canonical(spec.method_params)
        record["task_params"] = _canonical(spec.task_params)
        record["setting"] = _canonical(spec.setting())
        names = {_canonical(n) for n in [spec.requested_name(), *recorded_names.get(r["cell_hash"], [])]}
        record["names"] = "[" + ", ".join(sorted(names)) + "]"
        record["error"] = (r["error"] or "").splitlines()[0] if r["error"] else None
        record.update(json.loads(r["final"]))
        records.append(record)
    runs = pd.DataFrame.from_records(records)
    if runs.empty:
        return pd.DataFrame(columns=RUN_COLUMNS)
    runs = runs.drop(columns=["epoch"], errors="ignore")
    curves = curves_dataframe(path)
    summaries = []
    for cell_hash, group in curves.groupby("cell_hash", sort=True):
        info = json.loads(runs.loc[runs.cell_hash == cell_hash, "info"].iloc[0])
        summary = {"cell_hash": cell_hash}
        for metric, meta in info.get("task_metrics", {}).items():
            if metric in group:
                values = group[metric].dropna()
                if len(values):
                    summary[f"best_{metric}"] = values.max() if meta["higher_is_better"] else values.min()
                    summary[f"last{LAST_K}_{metric}"] = values.iloc[-LAST_K:].mean()
        summaries.append(summary)
    if summaries:
        runs = runs.merge(pd.DataFrame(summaries), on="cell_hash", how="left")
    first = [c for c in RUN_COLUMNS if c in runs]
    rest = sorted(c for c in runs if c not in first)
    return runs[first + rest].sort_values(["task", "noise_kind", "method", "params", "noise_rate", "seed"], kind="stable").reset_index(drop=True)
