"""Leaderboard rendering from a fixed database: numbers, intervals, bold by a paired test, rank
intervals, n/a, diverged, determinism; rows that never mix settings; identical configurations
shown once; privileged data marked; exports that predate the setting columns."""

import json
from pathlib import Path

import pandas as pd
import pytest

from benchsuite.leaderboard import render
from benchsuite.results import to_dataframe
from benchsuite.spec import CellSpec, RunRecord
from benchsuite.store import ResultStore

GOLDEN = Path(__file__).parent / "data" / "leaderboard_golden.md"
PROVENANCE = {
    "benchsuite": "0.1.0", "commit": "0123456789abcdef", "dirty": False, "torch": "2.14.1", "python": "3.11.7",
    "device": "cpu", "device_name": "Test CPU", "hostname": "testhost",
    "plugins": {"cce": {"version": "0.1.0"}, "digits": {"version": "0.1.0"}},
}  # fmt: skip
INFO = {
    "task_metrics": {"test_acc": {"higher_is_better": True, "doc": "test accuracy"}},
    "primary_metric": "test_acc",
    "leaderboard_metrics": ["test_acc"],
}


def make_record(method, params, rate, seed, accs, status="completed", memorised=0.1):
    spec = CellSpec(method, params, "digits", {"width": 256}, "symmetric", rate, seed, "v", "v")
    curves = [
        {"epoch": e + 1, "test_acc": a, "noisy_memorised": memorised, "loss": 0.5} for e, a in enumerate(accs)
    ]
    return RunRecord(
        spec, status, curves=curves if status != "skipped" else [], info=INFO, provenance=PROVENANCE,
        started_at=f"2026-11-2{seed}T10:00:00+00:00", finished_at=f"2026-11-2{seed}T10:01:00+00:00",
        error="needs a trusted set" if status == "skipped" else None,
    )  # fmt: skip


@pytest.fixture
def fixed_db(tmp_path):
    path = tmp_path / "fixed.sqlite"
    with ResultStore(path) as store:
        for seed in (0, 1, 2):
            d = 0.01 * seed
            # cce: best 0.9 early, falls to 0.6 at r=0.4 (memorises)
            store.save(make_record("cce", {}, 0.0, seed, [0.90 + d, 0.95 + d]))
            store.save(make_record("cce", {}, 0.4, seed, [0.90 + d, 0.60 + d], memorised=0.8))
            for q in (0.5, 0.7):
                store.save(make_record("gce", {"q": q}, 0.0, seed, [0.93 + d, 0.94 + d]))
                store.save(make_record("gce", {"q": q}, 0.4, seed, [0.85 + d, 0.90 + d - (q - 0.5)], memorised=0.05))
            store.save(make_record("ieg", {}, 0.0, seed, [], status="skipped"))
            store.save(make_record("ieg", {}, 0.4, seed, [], status="skipped"))
        store.save(make_record("mae", {}, 0.4, 0, [0.5, 0.7]))
        store.save(make_record("mae", {}, 0.4, 1, [0.5, 0.7]))
        store.save(make_record("mae", {}, 0.4, 2, [0.5], status="diverged"))
    return path


def test_render_matches_the_golden_file_byte_for_byte(fixed_db):
    text = render(to_dataframe(fixed_db), command="benchsuite leaderboard --results fixed.sqlite")
    if not GOLDEN.exists():  # first run writes it; review it and commit it
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
    assert render(to_dataframe(fixed_db), command="benchsuite leaderboard --results fixed.sqlite") == text


def test_cells_ranks_and_markers(fixed_db):
    text = render(to_dataframe(fixed_db))
    final = text.split("**Final epoch**")[1].split("**Best epoch")[0]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in final.strip().splitlines()[2:]}
    # gce q=0.5 at r=0.4: finals 0.90, 0.91, 0.92 -> mean 91, sd 1, t(0.975, 2) · 1/√3 = 2.48; best of the column
    assert rows["gce (q=0.5)"][1] == "**91.00 ± 2.48 (3)**"
    assert rows["cce"][1] == "61.00 ± 2.48 (3)"
    assert rows["mae"] == ["–", "70.00 ± 0.00 (2) †1", "3.00 [3.00, 3.00]"]  # r=0 absent; one diverged run
    assert rows["ieg"] == ["n/a", "n/a", "–"]
    assert rows["gce (q=0.5)"][-1] == "1.75 [1.75, 1.75]"  # ranks 2.5 (tie at r=0 with q=0.7) and 1
    assert list(rows)[0] == "gce (q=0.5)" and list(rows)[-1] == "ieg"
    best = text.split("**Best epoch (selected on the test set)**")[1].split("**Mean")[0]
    assert "| cce | **96.00 ± 2.48 (3)** | **91.00 ± 2.48 (3)** | 1.25 [1.25, 1.25] |" in best  # the oracle hides memorisation
    memorisation = text.split("### Memorisation")[1]
    # mae has no run of seed 2: a resample drawing only seed 2 ranks cce 3rd of 3
    assert "| cce | 80.00 ± 0.00 (3) | 4.00 [3.00, 4.00] |" in memorisation
    assert "Budget: 2 epochs — every row." in text
    assert "- Runs: 20 completed, 1 diverged, 6 skipped; seeds: 0, 1, 2; dates: 2026-11-20 to 2026-11-22" in text
    assert "commit 0123456789ab;" in text


def test_empty_database(tmp_path):
    ResultStore(tmp_path / "e.sqlite").close()
    assert "No runs stored yet" in render(to_dataframe(tmp_path / "e.sqlite"))


def test_task_parameters_that_vary_label_the_rows(tmp_path):
    path = tmp_path / "w.sqlite"
    with ResultStore(path) as store:
        for width in (16, 256):
            rec = make_record("cce", {}, 0.4, 0, [0.5, 0.6])
            rec.spec = CellSpec("cce", {}, "digits", {"width": width}, "symmetric", 0.4, 0, "v", "v")
            store.save(rec)
    text = render(to_dataframe(path))
    assert "| cce [width=16] |" in text and "| cce [width=256] |" in text


def test_row_labels_only_name_what_varies_within_their_own_table(tmp_path):
    path = tmp_path / "two.sqlite"
    with ResultStore(path) as store:
        for task, params in (("digits", {"width": 256}), ("other", {"arch": "resnet50"})):
            rec = make_record("cce", {}, 0.4, 0, [0.5, 0.6])
            rec.spec = CellSpec("cce", {}, task, params, "symmetric", 0.4, 0, "v", "v")
            store.save(rec)
    text = render(to_dataframe(path))
    assert text.count("| cce |") == 4 * 2 and "| cce [" not in text.split("## digits")[1]


def _store_records(path, records, names=None):
    with ResultStore(path) as store:
        for rec in records:
            store.save(rec)
        if names:
            store.add_names(names)
    return to_dataframe(path)


def _rows(text, table="**Final epoch**"):
    block = text.split(table)[1].split("\n\n")[1]
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in block.splitlines()[2:]}


def test_runs_that_differ_in_budget_never_share_a_row(tmp_path):
    """The issue's case: cce run for 5 and for 3 epochs into one database became one row."""
    records = []
    for epochs, accs in ((5, [0.88, 0.90]), (3, [0.80, 0.82])):
        for seed, acc in enumerate(accs):
            rec = make_record("cce", {}, 0.4, seed, [acc] * epochs)
            rec.spec = CellSpec("cce", {}, "digits", {"width": 256}, "symmetric", 0.4, seed, "v", "v", budget={"epochs": epochs})
            rec.info = {**INFO, "recipe": {"epochs": epochs, "iterations": None, "batch_size": 64, "lr": 0.1, "weight_decay": 0.0}}
            records.append(rec)
    text = render(_store_records(tmp_path / "b.sqlite", records))
    rows = _rows(text)
    assert rows["cce [budget.epochs=5]"][0] == "**89.00 ± 12.71 (2)**"
    assert rows["cce [budget.epochs=3]"][0] == "81.00 ± 12.71 (2)"
    assert "Budget: 3 epochs, batch 64, lr 0.1 — cce [budget.epochs=3]; 5 epochs, batch 64, lr 0.1 — cce [budget.epochs=5]." in text


def test_bold_marks_every_row_not_significantly_worse_than_the_best(tmp_path):
    """Bold follows a paired t-test over seeds: a row whose gap to the best is small but the same
    on every seed is worse; a noisier row with a larger mean gap may not be."""
    seed_effect = [0.70, 0.80, 0.75, 0.85, 0.78]
    rows = {"best": [0.02] * 5, "steady": [0.01, 0.011, 0.009, 0.01, 0.012], "noisy": [0.05, -0.04, 0.06, -0.03, -0.01]}
    records = [
        make_record(name, {}, 0.4, seed, [base + gaps[seed]])
        for name, gaps in rows.items()
        for seed, base in enumerate(seed_effect)
    ]
    text = render(_store_records(tmp_path / "p.sqlite", records))
    final = _rows(text)
    assert final["best"][0].startswith("**") and final["noisy"][0].startswith("**")
    assert not final["steady"][0].startswith("**")  # 1 point below on every seed: p < 0.05, paired
    assert final["best"][1].startswith("1.") and "[" in final["best"][1]
    assert render(_store_records(tmp_path / "p.sqlite", [])) == text  # deterministic, bootstrap included


def test_privileged_data_is_marked_from_what_the_runs_recorded(tmp_path):
    records = [make_record("cce", {}, 0.4, s, [0.6]) for s in (0, 1)]
    for s in (0, 1):
        rec = make_record("needs_trust", {}, 0.4, s, [0.9])
        rec.info = {**INFO, "privileged": {"trusted_per_class": 10, "trusted_examples": 100, "training_examples": 1347, "strong_view": True}}
        records.append(rec)
    text = render(_store_records(tmp_path / "t.sqlite", records))
    assert "| method | r=0.4 | avg rank [95 % CI] | privileged data |" in text
    final = _rows(text)
    assert final["needs_trust"][-1] == "trusted 10/class (100 = 7.4 %), strong view" and final["cce"][-1] == "–"


def test_a_plugin_s_own_kind_of_privileged_data_is_marked_in_its_words(tmp_path):
    records = [make_record("cce", {}, 0.4, s, [0.6]) for s in (0, 1)]
    for s in (0, 1):
        rec = make_record("oracle_loss", {}, 0.4, s, [0.9])
        rec.info = {**INFO, "privileged": {"noise_transition": "true T from the clean training labels", "side_channel": True}}
        records.append(rec)
    final = _rows(render(_store_records(tmp_path / "o.sqlite", records)))
    assert final["oracle_loss"][-1] == "true T from the clean training labels, side channel"


def test_an_export_without_the_setting_columns_still_renders(fixed_db, tmp_path):
    runs = to_dataframe(fixed_db)
    old = runs.drop(columns=["names", "setting"])
    assert render(old) == render(runs)  # this database's rows differ by method and parameters only


def test_a_preset_per_noise_rate_is_one_row_beside_the_plain_name(tmp_path):
    """gr@0:cifar10_clean runs GR's clean setting at r = 0 and its defaults at r = 0.4, where its
    cell is plain gr's (and dm@0:cifar10_clean's: the same weighting). One row for the per-rate
    entries (named by both), spanning both rates; plain gr keeps its own row and shares the
    r = 0.4 runs with it."""
    from benchsuite.grid import expand, grid_from_dict
    from benchsuite.plugins import get_host

    grid = grid_from_dict({
        "method": ["gr", "gr@0:cifar10_clean", "dm@0:cifar10_clean"], "task": ["digits"], "seeds": [0, 1],
        "noise": {"kind": "symmetric", "rates": [0.0, 0.4]},
    })  # fmt: skip
    expansion = expand(grid, get_host())
    assert len(expansion.cells) == 2 * 3  # per seed: gr at r = 0, the clean setting at r = 0, r = 0.4 shared
    records = []
    for cell in expansion.cells:
        acc = 0.7 if cell.noise_rate else (0.95 if cell.method_params["lam"] == 0.0 else 0.9)
        record = make_record(cell.method, cell.method_params, cell.noise_rate, cell.seed, [acc + 0.01 * cell.seed])
        record.spec = cell
        records.append(record)
    rows = _rows(render(_store_records(tmp_path / "per_rate.sqlite", records, expansion.names)))
    assert rows["dm@0:cifar10_clean = gr@0:cifar10_clean"][:2] == ["**95.50 ± 6.35 (2)**", "**70.50 ± 6.35 (2)**"]
    assert rows["gr"][:2] == ["90.50 ± 6.35 (2)", "**70.50 ± 6.35 (2)**"]
    assert len(rows) == 2


def test_the_hardware_line_names_cpu_generations_and_kernels_where_recorded():
    """Runs from two CPU generations, or with AVX2 and AVX-512 kernels, differ in their last bits:
    the header names every one; runs stored before these were recorded keep the old line."""
    from benchsuite.leaderboard import header_lines
    from benchsuite.publish import compact_runs

    def runs(*provenances: dict) -> pd.DataFrame:
        return pd.DataFrame({
            "provenance": [json.dumps(p) for p in provenances], "status": "completed", "seed": 0,
            "started_at": "2026-12-02T10:00:00+00:00", "finished_at": "2026-12-02T10:01:00+00:00",
        })  # fmt: skip

    def hardware(frame: pd.DataFrame) -> str:
        return next(line for line in header_lines(frame, "cmd") if line.startswith("- Hardware"))

    zen5 = {**PROVENANCE, "cpu_id": "AuthenticAMD family 26 model 2 stepping 1", "reproducibility": {"cpu_capability": "AVX512"}}
    zen5_avx2 = {**zen5, "reproducibility": {"cpu_capability": "AVX2"}}
    assert hardware(runs(PROVENANCE)) == "- Hardware: Test CPU (cpu); hosts: testhost"
    assert hardware(runs(zen5, zen5_avx2)) == (
        "- Hardware: Test CPU [AuthenticAMD family 26 model 2 stepping 1] (cpu; torch CPU kernels: AVX2, AVX512); hosts: testhost"
    )
    published = compact_runs(runs(zen5_avx2).assign(info="{}"))
    assert json.loads(published.provenance[0])["reproducibility"] == {"cpu_capability": "AVX2"}
    assert hardware(published) == hardware(runs(zen5_avx2))


def test_cells_group_runs_by_row_and_rate_in_run_order():
    """A table's cells: per (row, noise rate), in the order the runs first show them, the
    statuses counted, the completed runs' values and seeds in run order (a NaN value left out),
    a seed run twice averaged, and the mean and t-interval half-width of the values."""
    import numpy as np
    import pandas as pd

    from benchsuite.leaderboard import _cells
    from benchsuite.stats import t_half_width

    runs = pd.DataFrame(
        {
            "label": ["b", "a", "b", "a", "b", "a", "b", "b"],
            "noise_rate": [0.4, 0.0, 0.4, 0.0, 0.0, 0.0, 0.4, 0.4],
            "seed": [1, 0, 0, 1, 0, 2, 2, 0],
            "status": ["completed", "completed", "completed", "diverged", "skipped", "completed", "completed", "completed"],
            "test_acc": [0.5, 0.9, 0.7, np.nan, np.nan, np.nan, 0.6, 0.8],
        }
    )
    cells = _cells(runs, "test_acc")
    assert list(cells) == [("b", 0.4), ("a", 0.0), ("b", 0.0)]
    b, a, skipped = cells.values()
    assert (b.values, b.seeds, dict(b.statuses)) == ([0.5, 0.7, 0.6, 0.8], [1, 0, 2, 0], {"completed": 4})
    assert b.by_seed == {1: 0.5, 0: 0.75, 2: 0.6}
    assert b.mean == np.mean([0.5, 0.7, 0.6, 0.8]) and b.half_width == t_half_width(np.array([0.5, 0.7, 0.6, 0.8]))
    assert (a.values, a.seeds, dict(a.statuses)) == ([0.9], [0], {"completed": 2, "diverged": 1})
    assert np.isnan(a.half_width) and a.text(percent=True) == "90.00 ± – (1) †1"
    assert (skipped.values, dict(skipped.statuses), skipped.text(percent=True)) == ([], {"skipped": 1}, "n/a")
    assert _cells(runs, "missing_metric")[("b", 0.4)].values == [] and _cells(runs.iloc[:0], "test_acc") == {}


def _per_cell_bold(cells, rate, higher_is_better, percent):
    """The bold rows of a column decided one row at a time from the cells' seed dictionaries, as
    the leaderboard did before it tested paired rows as arrays."""
    from benchsuite.stats import significantly_worse

    column = {label: cell.by_seed for (label, r), cell in cells.items() if r == rate and cell.values}
    means = {label: cells[label, rate].mean for label in column}
    best_mean = max(means.values()) if higher_is_better else min(means.values())
    best = sorted(label for label, m in means.items() if abs(m - best_mean) <= (5e-5 if percent else 1e-12))
    return set(best) | {label for label, by_seed in column.items() if significantly_worse(by_seed, column[best[0]], higher_is_better) is False}


def test_the_seed_matrix_and_bold_equal_the_per_cell_computation():
    """``_seed_matrix`` holds each cell's ``by_seed`` values (a seed run twice averaged in run
    order, NaN and unfinished runs left out, seeds missing in some rows), and the bold decided
    on it equals the per-cell paired / Welch / untestable decisions, with ties and one-run cells."""
    import numpy as np
    import pandas as pd

    from benchsuite.leaderboard import _cells, _not_worse, _seed_matrix

    rng = np.random.default_rng(4)
    rows = []
    for label in [f"m{i}" for i in range(12)]:
        for rate in (0.0, 0.4):
            seeds = rng.choice(8, size=int(rng.integers(1, 8)), replace=False).tolist()
            seeds += seeds[:1] if label == "m3" else []  # a seed run twice
            for seed in seeds:
                status = "diverged" if rng.random() < 0.1 else "completed"
                value = np.nan if status == "diverged" or rng.random() < 0.05 else round(float(rng.normal(0.7, 0.05)), 2)
                rows.append((label, rate, seed, status, value))
    rows += [("m10", 0.0, s, "completed", 0.9) for s in range(4)] + [("m11", 0.0, s, "completed", 0.9) for s in range(4)]  # tied best
    runs = pd.DataFrame(rows, columns=["label", "noise_rate", "seed", "status", "test_acc"]).sample(frac=1, random_state=0)
    cells = _cells(runs, "test_acc")
    labels, rates = sorted({label for label, _ in cells}), [0.0, 0.4]
    matrix = _seed_matrix(runs, "test_acc", labels, rates)
    seeds = sorted({s for cell in cells.values() for s in cell.seeds})
    expected = np.full(matrix.shape, np.nan)
    for (label, rate), cell in cells.items():
        for seed, value in cell.by_seed.items():
            expected[labels.index(label), rates.index(rate), seeds.index(seed)] = value
    assert np.array_equal(matrix, expected, equal_nan=True)
    assert any(len(cell.values) == 1 for cell in cells.values()) and any(len(set(c.seeds)) < len(c.seeds) for c in cells.values())
    sizes = []
    for i, rate in enumerate(rates):
        for higher_is_better in (True, False):
            got = _not_worse(cells, rate, higher_is_better, True, matrix[:, i], labels)
            assert got == _per_cell_bold(cells, rate, higher_is_better, True)
            sizes.append(len(got))
    assert 1 <= min(sizes) and max(sizes) > 2 and max(sizes) < len(labels)


def test_varying_values_compare_as_their_json_texts():
    """``_as_json`` keys two values equal exactly when their JSON texts are: 1, 1.0, True and "1"
    differ, as do 0.0 and -0.0; NaNs are one value; tables compare by content."""
    import itertools
    import json

    from benchsuite.leaderboard import _as_json, _varying

    values = [1, 1.0, True, False, 0, "1", None, "", 0.0, -0.0, float("nan"), float("nan"), [1], [1.0], {"a": 1, "b": 2}, {"b": 2, "a": 1}, 10**20]
    for a, b in itertools.product(values, repeat=2):
        assert (_as_json(a) == _as_json(b)) == (json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)), (a, b)
    assert _varying([{"x": 1, "y": float("nan")}, {"x": True, "y": float("nan")}]) == ["x"]
