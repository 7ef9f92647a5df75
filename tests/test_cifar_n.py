"""CIFAR-10N / CIFAR-100N noise kinds on fake CIFAR releases and fake label files written in the
release's format (torch.save of a dict of numpy arrays)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from benchsuite_plugins.cifar.cifar_n import CIFAR10N, read_human_labels
from benchsuite_plugins.cifar.fake_release import write_fake_cifar, write_fake_cifar_n
from benchsuite_plugins.cifar.release import read_cifar
from click.testing import CliRunner

import benchsuite
from benchsuite.cli import main
from benchsuite.plugins import get_host
from benchsuite.results import to_dataframe
from benchsuite.task import PrepareRequest, stratified_holdout
from benchsuite.toolkit.datasets import DatasetError

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Fake CIFAR-10 (10 train images per class) and CIFAR-100 (4 per class), with their CIFAR-N files."""
    path = tmp_path_factory.mktemp("cifar_n")
    write_fake_cifar(path, "cifar10", train_per_class=10, test_per_class=2)
    write_fake_cifar(path, "cifar100", train_per_class=4, test_per_class=1)
    write_fake_cifar_n(path / "CIFAR-10_human.pt", path, "cifar10")
    write_fake_cifar_n(path / "CIFAR-100_human.pt", path, "cifar100")
    return path


def stored(path: Path) -> dict:
    """The fake file as torch reads it (the test's own independent reader)."""
    return torch.load(path, weights_only=False)


def request(kind: str, **kw) -> PrepareRequest:
    return PrepareRequest(noise_kind=kind, noise_rate=0.0, seed=3, device=CPU, batch_size=16, **kw)


def test_the_kinds_are_registered_by_the_cifar_plugins():
    host = get_host()
    assert host.plugins["cifar10"].noise_kinds == [f"cifar10n:{v}" for v in ("aggregate", "random1", "random2", "random3", "worst")]
    assert host.plugins["cifar100"].noise_kinds == ["cifar100n:noisy"]
    assert "cifar10n:worst" not in host.task_class("vehicles10").noise_kinds  # its labels are a subset, re-indexed


@pytest.mark.parametrize(
    ("variant", "key", "rate"),
    [("aggregate", "aggre_label", 0.1), ("random1", "random_label1", 0.2), ("random3", "random_label3", 0.3), ("worst", "worse_label", 0.4)],
)
def test_cifar10n_trains_on_the_file_labels_and_records_the_realised_rate(root, variant, key, rate):
    task = benchsuite.load_task("cifar10", root=str(root), human_labels=str(root / "CIFAR-10_human.pt"))
    data = task.prepare(request(f"cifar10n:{variant}"))
    file = stored(root / "CIFAR-10_human.pt")
    assert np.array_equal(data.noisy_labels.numpy(), file[key]) and np.array_equal(data.true_labels.numpy(), file["clean_label"])
    assert data.noise.realised_rate == rate and data.noise.num_noisy == round(rate * 100)
    assert data.noise.kind == f"cifar10n:{variant}" and data.noise.params == {"labels": key}  # nothing sampled
    recorded = data.info["human_labels"]
    assert recorded["file"] == "CIFAR-10_human.pt" and recorded["key"] == key and recorded["file_noise_rate"] == rate
    assert len(recorded["sha256"]) == 64


def test_held_out_examples_keep_their_place_in_the_file(root):
    task = benchsuite.load_task("cifar10", root=str(root), human_labels=str(root / "CIFAR-10_human.pt"))
    data = task.prepare(request("cifar10n:worst", needs={"clean_validation": {"fraction": 0.2}, "trusted_set": {"per_class": 2}}))
    y_train = read_cifar("cifar10", root).y_train
    keep = np.setdiff1d(np.arange(100), stratified_holdout(y_train, 0.2, 3))
    keep = np.setdiff1d(keep, data.info["trusted_indices"])
    worse = stored(root / "CIFAR-10_human.pt")["worse_label"]
    assert data.num_train == 60 and np.array_equal(data.noisy_labels.numpy(), worse[keep])
    assert data.noise.realised_rate == pytest.approx(np.mean(worse[keep] != y_train[keep]))


def test_cifar100n_noisy_labels(root):
    task = benchsuite.load_task("cifar100", root=str(root), human_labels=str(root / "CIFAR-100_human.pt"))
    data = task.prepare(request("cifar100n:noisy"))
    assert np.array_equal(data.noisy_labels.numpy(), stored(root / "CIFAR-100_human.pt")["noisy_label"])
    assert data.noise.realised_rate == 0.4 and data.info["human_labels"]["key"] == "noisy_label"


def test_a_file_over_other_training_labels_is_refused_naming_it(root, tmp_path):
    other = tmp_path / "other"
    write_fake_cifar(other, "cifar10", train_per_class=10, test_per_class=2, seed=1)  # same counts, other order
    path = write_fake_cifar_n(tmp_path / "CIFAR-10_human.pt", other, "cifar10")
    y_train = read_cifar("cifar10", root).y_train
    differ = int(np.sum(read_cifar("cifar10", other).y_train != y_train))
    with pytest.raises(DatasetError, match=rf"{path}: 'clean_label' differs from the cifar10 training labels under root at {differ} of 100 images"):
        read_human_labels(CIFAR10N, path, y_train)
    short = tmp_path / "short.pt"
    torch.save({k: v[:50] for k, v in stored(root / "CIFAR-10_human.pt").items()}, short)
    with pytest.raises(DatasetError, match="has 50 labels but the cifar10 training set under root has 100"):
        read_human_labels(CIFAR10N, short, y_train)


class Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_without_running_it(root, tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "CIFAR-10_human.pt"
    torch.save({"clean_label": Exploit(marker)}, path)
    with pytest.raises(DatasetError, match=r"only dicts of numpy arrays are loaded") as error:
        read_human_labels(CIFAR10N, path, read_cifar("cifar10", root).y_train)
    assert "refusing to load posix.system" in str(error.value) and str(path) in str(error.value)
    assert not marker.exists()


def test_tensors_and_foreign_files_are_refused(root, tmp_path):
    y_train = read_cifar("cifar10", root).y_train
    tensors = tmp_path / "tensors.pt"
    torch.save({"clean_label": torch.as_tensor(y_train)}, tensors)
    with pytest.raises(DatasetError, match=r"refusing to load torch\._utils\._rebuild_tensor_v2"):
        read_human_labels(CIFAR10N, tensors, y_train)
    text = tmp_path / "labels.csv"
    text.write_text("0,1,2\n")
    with pytest.raises(DatasetError, match="not a CIFAR-10N file: the release's files are torch zip archives"):
        read_human_labels(CIFAR10N, text, y_train)
    keys = tmp_path / "keys.pt"
    torch.save({"clean_label": y_train}, keys)
    with pytest.raises(DatasetError, match="has no 'aggre_label' entry"):
        read_human_labels(CIFAR10N, keys, y_train)


def test_the_grid_refuses_a_missing_file_and_a_rate_before_anything_runs(root, tmp_path):
    base = ["run", "-m", "cce", "--results", str(tmp_path / "r.sqlite"), "--dry-run"]
    missing = CliRunner().invoke(main, [*base, "-t", f"cifar10{{root = '{root}'}}", "--noise", "cifar10n:worst"])
    assert missing.exit_code == 2
    assert "noise[0] (cifar10n:worst) on task 'cifar10': the CIFAR-10N noise kinds read CIFAR-10_human.pt" in missing.output
    assert "set the task parameter human_labels" in missing.output
    rated = CliRunner().invoke(
        main, [*base, "-t", f"cifar100{{root = '{root}', human_labels = '{root}/CIFAR-100_human.pt'}}", "--noise", "cifar100n:noisy:0.4"]
    )
    assert rated.exit_code == 2 and "kind 'cifar100n:noisy' gives its labels as they are and takes only rate 0" in rated.output


def test_a_short_run_through_the_cli_records_the_file_and_its_rate(root, tmp_path):
    results = tmp_path / "results.sqlite"
    task = f"cifar10@smoke{{root = '{root}', human_labels = '{root}/CIFAR-10_human.pt'}}"
    args = ["run", "-m", "cce", "-t", task, "--noise", "cifar10n:worst", "--seeds", "0", "--iterations", "3",
            "--batch-size", "16", "--results", str(results), "--no-progress"]  # fmt: skip
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 0, outcome.output
    runs = to_dataframe(results)
    assert list(runs.status) == ["completed"] and list(runs.noise_kind) == ["cifar10n:worst"] and runs.noise_rate[0] == 0
    info = json.loads(runs["info"][0])
    assert info["noise"]["realised_rate"] == 0.4 and info["data"]["human_labels"]["file_noise_rate"] == 0.4
    assert "human_labels" not in json.loads(runs.task_params[0])  # a path is not part of the identity


def test_the_cifar_n_preset_is_the_starter_code_recipe():
    task = benchsuite.load_task("cifar100", preset="cifar_n_resnet34")
    recipe = task.recipe()
    assert task.model == "resnet34" and (recipe.epochs, recipe.batch_size, recipe.lr, recipe.weight_decay) == (100, 128, 0.1, 5e-4)
    assert recipe.milestones == (0.6,) and recipe.lr_factor(59 * 10, 1000) == 1.0 and recipe.lr_factor(600, 1000) == pytest.approx(0.1)
    assert sum(p.numel() for p in task.build_model().parameters()) == 21_328_292  # ResNet-34 with a 100-way head
