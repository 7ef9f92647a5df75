# tests/test_wine.py
import subprocess
import sys

import torch

import benchsuite
from benchsuite import PrepareRequest


def prepare(noise_kind="symmetric", rate=0.4, seed=0, **asked):
    request = PrepareRequest(noise_kind, rate, seed, torch.device("cpu"), batch_size=16, **asked)
    return benchsuite.load_task("wine").prepare(request)


def test_noise_goes_into_the_training_labels_only_and_is_recorded():
    data = prepare()
    assert data.num_train == 124 and data.noise.num_noisy == 49  # 40 % of the 124 training wines
    assert data.is_noisy.sum() == 49 and data.noise.params["sampling"] == "exact_classbalanced"
    assert torch.equal(prepare().noisy_labels, data.noisy_labels)  # a function of the seed
    assert not torch.equal(prepare(seed=1).noisy_labels, data.noisy_labels)


def test_trusted_set_and_validation_split_are_held_out_before_the_noise():
    data = prepare(needs={"trusted_set": {"per_class": 5}, "clean_validation": {"fraction": 0.2}})
    assert len(data.provided["trusted_set"].y) == 15 and data.info["num_val"] == 25
    assert data.num_train == 124 - 15 - 25


def test_a_short_benchmark_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchsuite", "run", "-m", "cce", "-m", "gce", "-t", "wine",
         "--noise", "symmetric:0.2", "--epochs", "3", "--seeds", "0",
         "--results", str(tmp_path / "results.sqlite"), "--no-progress",
         # cells in the driver: a pool would start workers that each import torch for 2 tiny cells
         "--executor", "local"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "2 cells: ran 2 completed" in result.stderr and "| gce |" in result.stdout
