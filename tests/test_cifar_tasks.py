"""CIFAR-10/100 and Vehicles-10 on tiny fake releases: reader, errors, prepare, recipes, training."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import benchsuite
from benchsuite.cli import main
from benchsuite.results import to_dataframe
from benchsuite.task import PrepareRequest
from benchsuite.toolkit.datasets import DatasetError
from benchsuite_plugins.cifar.fake_release import CIFAR100_COARSE_OF_FINE, write_fake_cifar
from benchsuite_plugins.cifar.release import read_cifar

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """One folder holding fake CIFAR-10 (6/3 images per class) and CIFAR-100 (4/2 per class)."""
    path = tmp_path_factory.mktemp("cifar")
    write_fake_cifar(path, "cifar10", train_per_class=6, test_per_class=3)
    write_fake_cifar(path, "cifar100", train_per_class=4, test_per_class=2)
    return path


def request(kind: str = "symmetric", rate: float = 0.5, **kw) -> PrepareRequest:
    return PrepareRequest(noise_kind=kind, noise_rate=rate, seed=0, device=CPU, batch_size=16, **kw)


# -- reader ----------------------------------------------------------------------------------


def test_reads_cifar10_pickles_in_the_official_layout(root):
    data = read_cifar("cifar10", root)
    assert data.x_train.shape == (60, 3, 32, 32) and data.x_train.dtype == np.uint8
    assert data.x_test.shape == (30, 3, 32, 32)
    assert np.bincount(data.y_train).tolist() == [6] * 10 and data.y_train.dtype == np.int64
    assert data.class_names[:3] == ("airplane", "automobile", "bird") and data.coarse_of is None
    with open(root / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    first = raw["data"][0]  # the R plane, then G, then B, each 32×32 row-major
    assert np.array_equal(data.x_train[0, 0], first[:1024].reshape(32, 32))
    assert np.array_equal(data.x_train[0, 2, 5], first[2048 + 5 * 32 : 2048 + 6 * 32])
    assert data.y_train[0] == raw["labels"][0]


def test_reads_cifar100_with_its_coarse_labels(root):
    data = read_cifar("cifar100", root)
    assert data.x_train.shape == (400, 3, 32, 32) and len(data.class_names) == 100
    assert data.coarse_of.tolist() == list(CIFAR100_COARSE_OF_FINE)
    assert data.coarse_names[18:] == ("vehicles_1", "vehicles_2")


def test_missing_root_says_where_to_get_the_data():
    with pytest.raises(DatasetError) as err:
        read_cifar("cifar10", None)
    message = str(err.value)
    assert "CIFAR-10 needs a data root" in message and "cifar-10-batches-py/" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message and "download = true" in message


def test_missing_folder_lists_what_was_expected(tmp_path):
    with pytest.raises(DatasetError) as err:
        read_cifar("cifar100", tmp_path)
    message = str(err.value)
    assert f"no CIFAR-100 at {tmp_path}: expected {tmp_path / 'cifar-100-python'}/ with train, test, meta" in message
    assert "(missing: train, test, meta)" in message and "cifar-100-python.tar.gz" in message


def test_root_pointing_inside_the_release_gets_a_hint(root):
    with pytest.raises(DatasetError, match=f"set root = '{root}' instead"):
        read_cifar("cifar10", root / "cifar-10-batches-py")


def copy_release(src: Path, dst: Path, folder: str) -> Path:
    (dst / folder).mkdir(parents=True)
    for f in (src / folder).iterdir():
        (dst / folder / f.name).write_bytes(f.read_bytes())
    return dst / folder


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x80\x02}q\x00(X", "is not a readable CIFAR pickle"),
        (pickle.dumps([1, 2], protocol=2), "holds a list, not the dict of the official release"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8)}, protocol=2), r"has no 'labels' entry \(it has: data\)"),
        (
            pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, protocol=2),
            r"'data' must be uint8 of shape \(N, 3072\), got uint8 \(2, 100\)",
        ),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}, protocol=2), "2 images but 'labels'"),
        (pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [12]}, protocol=2), r"labels outside \[0, 10\)"),
    ],
)
def test_malformed_files_are_named(root, tmp_path, content, message):
    folder = copy_release(root, tmp_path, "cifar-10-batches-py")
    (folder / "data_batch_3").write_bytes(content)
    with pytest.raises(DatasetError, match=message) as err:
        read_cifar("cifar10", tmp_path)
    assert str(folder / "data_batch_3") in str(err.value)


def test_pickles_cannot_run_code(root, tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("owned",))

    folder = copy_release(root, tmp_path, "cifar-10-batches-py")
    (folder / "test_batch").write_bytes(pickle.dumps({"data": Exploit()}, protocol=2))
    with pytest.raises(DatasetError, match=r"refusing to load (__builtin__|builtins)\.print"):
        read_cifar("cifar10", tmp_path)


def test_inconsistent_coarse_labels_are_reported(root, tmp_path):
    folder = copy_release(root, tmp_path, "cifar-100-python")
    with open(folder / "train", "rb") as f:
        content = pickle.load(f, encoding="latin1")
    first = content["fine_labels"][0]
    content["coarse_labels"][0] = (content["coarse_labels"][0] + 1) % 20
    (folder / "train").write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(DatasetError, match=rf"fine classes \[{first}\] have several coarse labels"):
        read_cifar("cifar100", tmp_path)


def test_download_uses_torchvision_then_reads(root, tmp_path, monkeypatch):
    calls = []

    def fake_download(url, download_root, filename, md5):
        calls.append((url, filename, md5))
        write_fake_cifar(download_root, "cifar10", train_per_class=1, test_per_class=1)

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", fake_download)
    data = read_cifar("cifar10", tmp_path, download=True)
    assert calls == [
        ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")
    ]
    assert len(data.y_train) == 10
    read_cifar("cifar10", tmp_path, download=True)
    assert len(calls) == 1  # present now: no second download


# -- tasks -----------------------------------------------------------------------------------


def test_prepare_keeps_uint8_on_the_device_and_records_the_noise(root):
    task = benchsuite.load_task("cifar10", root=str(root))
    data = task.prepare(request("cifar10_asymmetric", 0.5))
    assert data.train.x.dtype == torch.uint8 and data.train.x.shape == (60, 3, 32, 32)
    assert data.noise.num_noisy == 15  # 3 of the 6 images of each of the 5 source classes
    assert data.noise.params == {"sampling": "exact_classbalanced"}
    assert data.info["class_names"][9] == "truck" and data.info["num_test"] == 30
    batch = next(data.train.batches(torch.Generator().manual_seed(0)))
    assert batch.x.dtype == torch.uint8 and batch.x.shape == (16, 3, 32, 32)
    assert not torch.equal(batch.x, data.train.x[batch.index])  # augmented
    plain = benchsuite.load_task("cifar10", root=str(root), augment=False).prepare(request())
    batch = next(plain.train.batches(torch.Generator().manual_seed(0)))
    assert torch.equal(batch.x, plain.train.x[batch.index])


def test_grid_noise_params_choose_the_sampling(root):
    task = benchsuite.load_task("cifar10", root=str(root))
    data = task.prepare(request("symmetric", 0.5, noise_params={"sampling": "exact_global"}))
    assert data.noise.params == {"sampling": "exact_global"} and data.noise.num_noisy == 30


def test_cifar100_superclass_noise_uses_the_pickles_coarse_labels(root):
    task = benchsuite.load_task("cifar100", root=str(root))
    data = task.prepare(request("cifar100_superclass_pairswap", 0.5))
    pairs = data.noise.params["pairs"]
    coarse = np.asarray(CIFAR100_COARSE_OF_FINE)
    assert len(pairs) == 20 and all(coarse[a] == coarse[b] for a, b in pairs)
    assert data.noise.num_noisy == 80  # 2 of 4 images in each of the 40 paired classes
    assert "coarse_of" not in data.noise.params


def test_tasks_refuse_noise_kinds_they_do_not_take(root):
    task = benchsuite.load_task("vehicles10", root=str(root))
    with pytest.raises(ValueError, match="task 'vehicles10' does not take noise kind 'cifar10_asymmetric'"):
        task.prepare(request("cifar10_asymmetric"))


def test_vehicles10_relabels_the_vehicle_classes_in_fine_index_order(root):
    task = benchsuite.load_task("vehicles10", root=str(root))
    data = task.prepare(request("none", 0.0))
    assert data.info["class_names"] == [
        "bicycle", "bus", "lawn_mower", "motorcycle", "pickup_truck", "rocket", "streetcar", "tank", "tractor", "train",
    ]  # fmt: skip
    assert np.bincount(data.true_labels.numpy()).tolist() == [4] * 10
    assert data.eval_data.test[0].shape == (20, 3, 32, 32)
    full = read_cifar("cifar100", root)
    tractor = torch.from_numpy(full.x_train[full.y_train == 89])
    assert torch.equal(data.train.x[data.train.y == 8], tractor)


def test_validation_split_and_trusted_set(root):
    task = benchsuite.load_task("cifar10", root=str(root))
    data = task.prepare(request("symmetric", 0.5, needs={"clean_validation": {"fraction": 1 / 3}, "trusted_set": {"per_class": 1}}))
    trusted = data.provided["trusted_set"]
    assert data.info["num_val"] == 20 and len(trusted.y) == 10
    assert data.num_train == 30 and data.noise.num_noisy == 15
    assert torch.equal(trusted.y.sort().values, torch.arange(10))


def test_recipes_follow_the_papers_iteration_schedules():
    he = benchsuite.load_task("cifar10", preset="he_resnet56_64k")
    recipe = he.recipe()
    assert he.model == "resnet56" and (recipe.iterations, recipe.batch_size, recipe.lr) == (64_000, 128, 0.1)
    factors = [recipe.lr_factor(s, 64_000) for s in (31_999, 32_000, 47_999, 48_000)]
    assert factors == pytest.approx([1, 0.1, 0.1, 0.01])
    long = benchsuite.load_task("cifar10", preset="he_resnet56_100k").recipe()
    assert [long.lr_factor(s, 100_000) for s in (31_999, 32_000, 48_000)] == pytest.approx([1, 0.1, 0.01])
    dm = benchsuite.load_task("cifar100")
    recipe = dm.recipe()
    assert dm.model == "resnet44" and (recipe.iterations, recipe.batch_size, recipe.weight_decay) == (30_000, 256, 1e-4)
    factors = [recipe.lr_factor(s, 30_000) for s in (14_999, 15_000, 21_999, 22_000)]
    assert factors == pytest.approx([1, 0.1, 0.1, 0.01])
    assert benchsuite.load_task("cifar10", preset="dm_googlenet").model == "googlenet"


# -- through the command line ----------------------------------------------------------------


@pytest.mark.parametrize(
    "task_name, kind",
    [("cifar10", "cifar10_asymmetric"), ("cifar100", "cifar100_superclass_pairswap"), ("vehicles10", "symmetric")],
)
def test_short_training_run_through_the_cli(root, tmp_path, task_name, kind):
    results = tmp_path / "results.sqlite"
    args = ["run", "-m", "cce", "-t", f"{task_name}@smoke{{root = '{root}'}}", "--noise", f"{kind}:0.5", "--seeds", "0",
            "--iterations", "3", "--batch-size", "16", "--results", str(results), "--no-progress"]  # fmt: skip
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 0, outcome.output
    runs = to_dataframe(results)
    assert list(runs.status) == ["completed"] and list(runs.noise_kind) == [kind]
    assert 0.0 <= runs.test_acc[0] <= 1.0 and runs.step[0] == 3
    info = json.loads(runs["info"][0])
    assert info["data"]["class_names"][:1] == [{"cifar10": "airplane", "cifar100": "apple", "vehicles10": "bicycle"}[task_name]]
    noise = info["noise"]
    assert noise["kind"] == kind and noise["num_noisy"] == {"cifar10": 15, "cifar100": 80, "vehicles10": 20}[task_name]
    assert json.loads(runs.task_params[0])["model"] == "resnet20"  # the smoke preset; root is not part of the identity
    assert "root" not in json.loads(runs.task_params[0])


def test_cli_run_without_a_root_says_how_to_get_the_data(tmp_path):
    args = ["run", "-m", "cce", "-t", "cifar10@smoke", "--noise", "symmetric:0.2", "--seeds", "0",
            "--results", str(tmp_path / "r.sqlite"), "--no-progress", "--no-leaderboard"]  # fmt: skip
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 2  # refused before anything runs
    assert "task[0] (cifar10): CIFAR-10 needs a data root" in outcome.output and "download = true" in outcome.output


def test_cli_run_with_a_wrong_layout_names_what_is_missing(tmp_path):
    args = ["run", "-t", f"cifar100{{root = '{tmp_path}'}}", "--results", str(tmp_path / "r.sqlite"), "--dry-run"]
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 2
    assert f"no CIFAR-100 at {tmp_path}: expected {tmp_path}/cifar-100-python/ with train, test, meta" in outcome.output


def test_cli_rejects_a_noise_kind_the_task_does_not_take(root, tmp_path):
    args = ["run", "-m", "cce", "-t", f"vehicles10{{root = '{root}'}}", "--noise", "cifar100_block5_pairswap:0.4",
            "--results", str(tmp_path / "r.sqlite"), "--dry-run"]  # fmt: skip
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 2
    assert "task 'vehicles10' does not accept noise 'cifar100_block5_pairswap'" in outcome.output


def test_ieg_trains_on_cifar_with_the_strong_view(root, tmp_path):
    """IEG's trusted set and AutoAugment strong view on CIFAR images, end to end (3 steps)."""
    results = tmp_path / "results.sqlite"
    args = ["run", "-m", "ieg{probe_per_class = 2}", "-t", f"cifar10@smoke{{root = '{root}'}}", "--noise", "uniform:0.4",
            "--seeds", "0", "--iterations", "3", "--batch-size", "8", "--results", str(results), "--no-progress"]  # fmt: skip
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 0, outcome.output
    runs = to_dataframe(results)
    assert list(runs.status) == ["completed"], runs.error.tolist()
    info = json.loads(runs["info"][0])
    assert info["num_trusted"] == 20 and info["num_train"] == 60 - 20
