"""Kept models (`run --keep-models`) and `benchsuite evaluate`: the files, what the record says about
them, scores equal to the stored ones (digits, and the fake MARS release under both rule sets), and
bad input refused with exit status 2."""

from __future__ import annotations

import json
import re
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fake_mars import make_fake_mars
from PIL import Image

from benchsuite.checkpoint import checkpoint_dir
from benchsuite.cli import main
from benchsuite.grid import expand, grid_from_dict
from benchsuite.models import FORMAT, KIND, ModelKeeper, load_kept, models_dir
from benchsuite.plotting import RANKED_PANEL
from benchsuite.plugins import get_host
from benchsuite.runner import run_grid
from benchsuite.spec import CellSpec
from benchsuite.store import ResultStore
from benchsuite.toolkit.retrieval import evaluate_ranking, top_ranked

DIGITS = ["-t", "digits{width = 16}", "--noise", "symmetric:0.4", "--seeds", "0", "--epochs", "3"]
QUIET = ["--no-progress", "--no-leaderboard"]
MARS_OPTIONS = "arch = 'resnet18', weights = 'random', height = 64, width = 32, seq_len = 2, test_frames = 3, epoch_iterations = 2, num_workers = 0"


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def stored(results: Path) -> dict[str, tuple[dict, dict, list[dict]]]:
    """Cell hash -> (final metrics, provenance, curves by epoch) of every stored run."""
    with sqlite3.connect(results) as conn:
        runs = conn.execute("SELECT id, cell_hash, final, provenance FROM runs").fetchall()
        out = {}
        for run_id, cell_hash, final, prov in runs:
            rows: dict[int, dict] = {}
            for epoch, key, value in conn.execute("SELECT epoch, key, value FROM curves WHERE run_id = ?", (run_id,)):
                rows.setdefault(epoch, {})[key] = value
            out[cell_hash] = (json.loads(final), json.loads(prov), [rows[e] for e in sorted(rows)])
    return out


def evaluated(*args: str) -> dict:
    code, out, err = cli("evaluate", *args, "--device", "cpu", "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def digits_results(tmp_path_factory) -> Path:
    """Two digits cells with a validation split (cce on the weights, cce on an EMA of them) and one
    without (dividemix, whose predictor is the ensemble of its two networks)."""
    results = tmp_path_factory.mktemp("kept") / "results.sqlite"
    for extra in (["-m", "cce", "--val-fraction", "0.2"], ["-m", "cce", "--val-fraction", "0.2", "--eval-ema", "0.9"], ["-m", "dividemix"]):
        code, _, err = cli("run", *DIGITS, *extra, "--keep-models", "--device", "cpu", "--results", str(results), *QUIET)
        assert code == 0, err
    return results


def test_kept_files_are_named_by_the_record_and_read_with_weights_only(digits_results):
    runs = stored(digits_results)
    assert len(runs) == 3
    for cell_hash, (final, prov, curves) in runs.items():
        kept = prov["kept_models"]
        with_val = "val_acc" in final
        assert set(kept) == ({"final", "best"} if with_val else {"final"})
        assert kept["final"] == {**kept["final"], "path": f"results.sqlite.models/{cell_hash}/final.pt", "epoch": 3}
        path = digits_results.parent / kept["final"]["path"]
        assert path.stat().st_size == kept["final"]["bytes"] > 0
        payload = torch.load(path, weights_only=True)  # tensors and a JSON string only
        meta = json.loads(payload["meta"])
        assert (meta["kind"], meta["format"], meta["which"], meta["cell_hash"]) == (KIND, FORMAT, "final", cell_hash)
        assert CellSpec.from_dict(meta["spec"]).cell_hash == cell_hash
        assert meta["metrics"]["test_acc"] == final["test_acc"]
        if with_val:  # best: the epoch of the highest validation accuracy (the first of equals)
            scores = [row["val_acc"] for row in curves]
            assert kept["best"]["epoch"] == scores.index(max(scores)) + 1
    assert not list(models_dir(digits_results).glob("*/*.partial"))


def test_evaluate_reproduces_the_stored_final_metrics_exactly(digits_results):
    runs = stored(digits_results)
    for cell_hash, (final, _, _) in runs.items():
        out = evaluated(cell_hash[:8], "--results", str(digits_results))
        assert out["cell"] == cell_hash and out["which"] == "final"
        assert out["metrics"] == {k: final[k] for k in out["metrics"]}
        assert "test_acc" in out["metrics"] and out["reference"] == out["metrics"]


def test_evaluate_the_best_model_gives_its_epochs_metrics(digits_results):
    for cell_hash, (final, prov, curves) in stored(digits_results).items():
        if "best" not in prov["kept_models"]:
            continue
        out = evaluated(cell_hash, "--best", "--results", str(digits_results))
        row = curves[prov["kept_models"]["best"]["epoch"] - 1]
        assert out["which"] == "best" and out["metrics"] == {"test_acc": row["test_acc"], "val_acc": row["val_acc"]}


def test_evaluate_by_filters_or_by_file_and_the_text_output(digits_results):
    final = {h: f for h, (f, _, _) in stored(digits_results).items()}
    out = evaluated("--results", str(digits_results), "-m", "dividemix", "--noise", "symmetric:0.4", "--seed", "0")
    assert out["metrics"]["test_acc"] == final[out["cell"]]["test_acc"]
    path = models_dir(digits_results) / out["cell"] / "final.pt"
    assert evaluated(str(path))["metrics"] == out["metrics"]  # a file alone: compared with what it kept
    code, text, err = cli("evaluate", str(path), "--results", str(digits_results), "--device", "cpu")
    assert code == 0 and "dividemix" in text and "stored final" in text and "(differs)" not in text
    assert "equal to the stored final metrics" in err


def _bad(*args: str) -> str:
    code, _, err = cli("evaluate", *args, "--device", "cpu")
    assert code == 2, err
    return err


def test_bad_input_exits_2_naming_it(digits_results, tmp_path, monkeypatch):
    results = str(digits_results)
    assert "no kept model at" in _bad(str(tmp_path / "missing.pt"))
    assert "no kept final model matches method=coteaching" in _bad("--results", results, "-m", "coteaching")
    assert "3 kept final models match any cell" in _bad("--results", results)
    assert "no kept best model matches method=dividemix" in _bad("--results", results, "-m", "dividemix", "--best")
    text = tmp_path / "notes.pt"
    text.write_text("not a model")
    assert f"{text} is not a kept model" in _bad(str(text))
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    assert f"{foreign} is not a kept model (no benchsuite metadata)" in _bad(str(foreign))
    pickled = tmp_path / "pickled.pt"
    torch.save({"meta": object()}, pickled)  # weights_only refuses arbitrary objects
    assert "refused it" in _bad(str(pickled))
    # weights of another network (layers twice as wide) under the metadata of a cce cell
    kept = next(p for p in sorted(models_dir(digits_results).glob("*/final.pt")) if load_kept(p).spec.method == "cce")
    payload = torch.load(kept, weights_only=True)
    other = tmp_path / "other.pt"
    payload["model"] = {k: torch.cat([v, v]) for k, v in payload["model"].items()}
    torch.save(payload, other)
    assert f"{other} does not fit the network of digits" in _bad(str(other))
    monkeypatch.setattr("benchsuite.spec.RESULTS_VERSION", "changed")
    assert f"{kept} was kept by other code than is installed: host results version changed" in _bad(str(kept))


def test_a_kept_best_model_survives_a_resume_and_a_failed_write(tmp_path):
    spec = CellSpec("cce", {}, "digits", {}, "symmetric", 0.4, 0, "1", "1")
    model = torch.nn.Linear(2, 2)
    keeper = ModelKeeper(tmp_path / "models", spec, "test_acc")
    keeper.epoch_end(model, 1, 10, {"test_acc": 0.5, "val_acc": 0.6})
    keeper.epoch_end(model, 2, 20, {"test_acc": 0.5, "val_acc": 0.5})  # worse: not kept
    assert load_kept(keeper.path("best")).meta["epoch"] == 1
    resumed = ModelKeeper(tmp_path / "models", spec, "test_acc")  # resumed after epoch 2
    resumed.epoch_end(model, 3, 30, {"test_acc": 0.4, "val_acc": 0.55})
    assert load_kept(keeper.path("best")).meta["epoch"] == 1 and resumed.provenance()["best"]["epoch"] == 1
    fresh = ModelKeeper(tmp_path / "models", spec, "test_acc")  # a fresh run (--force) starts over
    fresh.epoch_end(model, 1, 10, {"test_acc": 0.4, "val_acc": 0.3})
    assert load_kept(keeper.path("best")).meta["metrics"]["val_acc"] == 0.3
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")
    failing = ModelKeeper(blocked, spec, "test_acc")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        failing.finish(model, 3, 30, {"test_acc": 0.4})
    assert "not kept" in str(caught[0].message) and failing.provenance()["errors"][0].startswith("final: ")


@pytest.fixture(scope="module")
def mars_results(tmp_path_factory) -> Path:
    fake = make_fake_mars(tmp_path_factory.mktemp("mars"))
    results = tmp_path_factory.mktemp("mars_kept") / "results.sqlite"
    task = f"mars{{root = '{fake.root}', {MARS_OPTIONS}}}"
    args = ["-m", "cce", "-t", task, "--noise", "symmetric:0.25", "--seeds", "0", "--epochs", "2", "--batch-size", "4"]
    code, _, err = cli("run", *args, "--val-fraction", "0.5", "--keep-models", "--device", "cpu", "--results", str(results), *QUIET)
    assert code == 0, err
    return results


def test_evaluate_a_kept_mars_model_under_both_rule_sets(mars_results):
    ((cell_hash, (final, prov, _)),) = stored(mars_results).items()
    assert set(prov["kept_models"]) == {"final", "best"}
    out = evaluated("--results", str(mars_results), "-t", "mars")
    rules = {"test_map", "test_rank1", "test_rank20", "test_map_official", "test_rank1_official", "test_rank20_official"}
    assert rules <= set(out["metrics"]) and "val_acc" in out["metrics"]
    assert out["metrics"] == {k: final[k] for k in out["metrics"]}
    assert 0 < out["metrics"]["test_map_official"] < 1  # not a saturated number that any model would give


def test_top_ranked_agrees_with_the_metrics_first_hit():
    rng = np.random.default_rng(0)
    dist = rng.integers(0, 6, (40, 30)).astype(np.float32)  # many ties: the stable order matters
    q_pids, g_pids = rng.integers(0, 5, 40), rng.integers(0, 5, 30)
    q_cams, g_cams = rng.integers(0, 3, 40), rng.integers(0, 3, 30)
    result = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, max_rank=30)
    index, hits = top_ranked(dist, q_pids, g_pids, q_cams, g_cams, 30)
    removed = (q_pids[:, None] == g_pids) & (q_cams[:, None] == g_cams)
    assert ((index >= 0).sum(1) == (~removed).sum(1)).all()
    first = np.where(hits.any(1), hits.argmax(1) + 1, 0)
    assert (first == result.first_hit).all() and first.any()
    shown = index[:, :3]
    assert (hits[:, :3] == ((shown >= 0) & (g_pids[shown] == q_pids[:, None]))).all()


def test_ranked_picture_of_a_kept_mars_model(mars_results, tmp_path):
    out = tmp_path / "ranked.png"
    code, _, err = cli("plot", "ranked", "--results", str(mars_results), "--queries", "3", "--top", "4", "--device", "cpu", "--out", str(out))
    assert code == 0, err
    hits = int(re.search(r"ranked lists of 3 queries \(top 4, (\d+) hits\)", err).group(1))
    columns, rows = 1 + 4, 3  # the torchreid gallery of the fake release has 5 tracklets, so 4 fill every row
    width, height = RANKED_PANEL
    with Image.open(out) as image:
        assert image.size == (round(width * columns * 150), round((height * rows + 0.4) * 150))
        assert len(image.getcolors(1 << 20)) > 100  # frames drawn, not a blank canvas
    svg = tmp_path / "ranked.svg"
    code, _, err = cli("plot", "ranked", "--results", str(mars_results), "--queries", "3", "--top", "4", "--device", "cpu", "--out", str(svg))
    assert code == 0, err
    text = svg.read_text()
    assert len(re.findall(r'<g id="query-\d"', text)) == rows and len(re.findall(r'<g id="rank-\d-\d"', text)) == rows * 4
    assert len(re.findall(r">\d: hit<", text)) == hits and len(re.findall(r">\d: miss<", text)) == rows * 4 - hits
    assert 0 < hits <= rows  # the query of id 2 finds its other camera; ids 4 and 8 have no match in this gallery
    code, _, err = cli("plot", "ranked", "--results", str(mars_results), "--out", str(tmp_path / "ranked.txt"))
    assert code == 2 and "must end in one of .png, .svg, .pdf" in err


def test_ranked_picture_needs_a_task_that_draws_them(digits_results, tmp_path):
    code, _, err = cli("plot", "ranked", "--results", str(digits_results), "-m", "dividemix", "--device", "cpu", "--out", str(tmp_path / "r.png"))
    assert code == 2 and "task 'digits' draws no ranked lists (MARS does)" in err


def test_models_are_kept_without_checkpoints_and_on_a_pool_executor(tmp_path):
    from benchsuite.executors import PoolExecutor

    grid = grid_from_dict(
        {"method": ["cce"], "task": ["digits{width = 16}"], "noise": {"kind": "symmetric", "rates": [0.4]},
         "seeds": [0, 1], "budget": {"epochs": 1, "batch_size": 256}}, source="test")  # fmt: skip
    expansion = expand(grid, get_host())
    for name, executor in (("local", None), ("pool", PoolExecutor(workers=2))):
        results = tmp_path / name / "results.sqlite"
        with ResultStore(results) as store:
            outcome = run_grid(expansion, store, executor=executor, device="cpu", progress=False, checkpoint_every=None, keep_models=True)
        assert outcome.statuses["completed"] == 2
        for cell_hash, (final, prov, _) in stored(results).items():
            assert prov["checkpoints"]["every_seconds"] is None and prov["checkpoints"]["written"] == 0
            assert load_kept(results.parent / prov["kept_models"]["final"]["path"]).meta["metrics"]["test_acc"] == final["test_acc"]
        assert not checkpoint_dir(results).exists() or not any(checkpoint_dir(results).iterdir())


def test_keep_models_says_when_stored_cells_keep_none(digits_results):
    code, _, err = cli("run", *DIGITS, "-m", "dividemix", "--keep-models", "--device", "cpu", "--results", str(digits_results), *QUIET)
    assert code == 0 and "--keep-models: 1 cells were already stored and keep no new model (--force runs them again)" in err
