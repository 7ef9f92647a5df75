"""Leaderboard rendering from a fixed database: numbers, bold, ranks, n/a, diverged, determinism."""

import json
from pathlib import Path

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
    # gce q=0.5 at r=0.4: finals 0.90, 0.91, 0.92 -> 91.00 ± 1.00 (3), best of the column
    assert rows["gce (q=0.5)"][1] == "**91.00 ± 1.00 (3)**"
    assert rows["cce"][1] == "61.00 ± 1.00 (3)"
    assert rows["mae"] == ["–", "70.00 ± 0.00 (2) †1", "3.00"]  # r=0 absent; one diverged run
    assert rows["ieg"] == ["n/a", "n/a", "–"]
    assert rows["gce (q=0.5)"][-1] == "1.75"  # ranks 2.5 (tie at r=0 with q=0.7) and 1
    assert list(rows)[0] == "gce (q=0.5)" and list(rows)[-1] == "ieg"
    best = text.split("**Best epoch (selected on the test set)**")[1].split("**Mean")[0]
    assert "| cce | **96.00 ± 1.00 (3)** | **91.00 ± 1.00 (3)** | 1.25 |" in best  # the oracle hides memorisation
    memorisation = text.split("### Memorisation")[1]
    assert "| cce | 80.00 ± 0.00 (3) | 4.00 |" in memorisation
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
    assert text.count("| cce |") == 4 * 2 and "[" not in text.split("## digits")[1]


def test_a_preset_per_noise_rate_is_one_row_beside_the_defaults(tmp_path):
    """imae@0:clean,noisy runs T = 0.5 at r = 0 and T = 8 elsewhere: one row, labelled by its
    presets; the default imae (T = 8 everywhere) keeps its own row, named by T where they differ."""
    from dataclasses import replace

    from benchsuite.leaderboard import row_labels

    path = tmp_path / "per_rate.sqlite"
    with ResultStore(path) as store:
        for seed in (0, 1):
            for rate, per_rate_t in ((0.0, 0.5), (0.4, 8.0)):
                plain = make_record("imae", {"T": 8.0, "eps": 1e-8}, rate, seed, [0.9])
                store.save(plain)
                record = make_record("imae", {"T": per_rate_t, "eps": 0.0}, rate, seed, [0.8])
                record.spec = replace(record.spec, preset="0:clean,noisy")
                store.save(record)
    runs = to_dataframe(path)
    labels = row_labels(runs)
    mapped = labels[runs.preset == "0:clean,noisy"]
    assert set(mapped) == {"imae@0:clean,noisy (eps=0.0)"}
    assert set(labels[runs.preset.isna()]) == {"imae (T=8.0, eps=1e-08)"}
    text = render(runs, command="benchsuite leaderboard")
    row = next(line for line in text.splitlines() if line.startswith("| imae@0:clean,noisy (eps=0.0) |"))
    assert row.count("80.00 ± 0.00 (2)") == 2  # both noise rates on the one row
