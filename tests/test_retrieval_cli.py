"""The retrieval tasks end to end through `benchsuite run`: a fake MARS release and digits_retrieval."""

from __future__ import annotations

import json

from conftest import cli_in_process
from fake_mars import make_fake_mars

from benchsuite.results import to_dataframe


def test_run_mars_and_digits_retrieval_through_the_cli(tmp_path):
    fake = make_fake_mars(tmp_path / "MARS")
    mars = (
        f"mars{{root = '{fake.root}', arch = 'resnet18', weights = 'random', height = 64, width = 32, "
        "seq_len = 2, test_frames = 3, epoch_iterations = 2, num_workers = 1}"
    )
    results = tmp_path / "res" / "results.sqlite"
    # In this process, cells in the driver: what is tested is the tasks through the command, not its
    # process or a pool (whose two workers would each import torch for these two small cells).
    result = cli_in_process(
        "run", "-m", "cce", "-t", mars, "-t", "digits_retrieval", "--noise", "none", "--epochs", "1",
        "--batch-size", "4", "--seeds", "0", "--results", str(results), "--no-progress", "--executor", "local",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    runs = to_dataframe(results).set_index("task")
    assert list(runs.status) == ["completed", "completed"]
    for metric in ("test_map", "test_rank1", "test_rank20", "test_map_official", "test_rank1_official"):
        assert 0.0 <= runs.loc["mars", metric] <= 1.0
    assert runs.loc["mars", "test_map"] > 0.8  # colour-coded identities
    assert 0.6 < runs.loc["digits_retrieval", "test_map"] < 0.9 and runs.loc["digits_retrieval", "test_rank8"] > 0.9
    info = json.loads(runs.loc["mars", "info"])
    assert info["data"]["feature_dim"] == 512 and info["data"]["num_queries"] == 7
    assert "root" not in json.loads(runs.loc["mars", "task_params"])  # moving the data re-runs nothing
    board = (tmp_path / "res" / "leaderboard.md").read_text()
    assert "## mars" in board and "## digits_retrieval" in board and "test_map" in board
