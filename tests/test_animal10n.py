"""ANIMAL-10N on a fake layout written here: training/ and testing/ of 64×64 <label>_<id>.jpg files."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from benchsuite_plugins.animal10n.animal10n import read_animal10n
from click.testing import CliRunner
from PIL import Image

import benchsuite
from benchsuite.cli import main
from benchsuite.results import to_dataframe
from benchsuite.task import PrepareRequest
from benchsuite.toolkit.datasets import DatasetError

CPU = torch.device("cpu")


def write_fake_animal10n(root: Path, train_per_class: int, test_per_class: int, seed: int = 0) -> Path:
    """Each class a flat colour of its own plus noise, saved as high-quality JPEGs; ids run on
    across classes as in the release (so file order is not label order)."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(30, 225, size=(10, 3))
    for folder, per_class in (("training", train_per_class), ("testing", test_per_class)):
        (root / folder).mkdir(parents=True)
        labels = rng.permutation(np.repeat(np.arange(10), per_class))
        for image_id, label in enumerate(labels):
            pixels = np.clip(colours[label] + rng.normal(0, 8, size=(64, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / folder / f"{label}_{image_id}.jpg", quality=95)
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_fake_animal10n(tmp_path_factory.mktemp("animal10n"), train_per_class=6, test_per_class=2)


def test_reads_the_layout_with_labels_from_the_file_names(root):
    data = read_animal10n(str(root.resolve()))
    assert data.x_train.shape == (60, 3, 64, 64) and data.x_train.dtype == np.uint8 and data.x_test.shape == (20, 3, 64, 64)
    assert [int(name.split("_")[0]) for name in data.train_files] == data.y_train.tolist()
    assert np.bincount(data.y_train).tolist() == [6] * 10 and np.bincount(data.y_test).tolist() == [2] * 10
    first = np.asarray(Image.open(root / "training" / data.train_files[0]).convert("RGB"))
    assert np.array_equal(data.x_train[0], first.transpose(2, 0, 1))


def test_prepare_keeps_the_human_labels_and_marks_the_truth_unknown(root):
    task = benchsuite.load_task("animal10n", root=str(root))
    files = read_animal10n(str(root.resolve()))
    data = task.prepare(PrepareRequest("none", 0.0, 0, CPU, 16))
    # every file's label, in file order, is what the method trains on; none of them counts as checked
    assert torch.equal(data.noisy_labels, torch.as_tensor(files.y_train)) and torch.equal(data.true_labels, data.noisy_labels)
    assert not data.truth_known.any() and not data.is_noisy.any()
    assert math.isnan(data.noise.realised_rate) and data.noise.num_noisy == 0 and "no clean training labels" in data.noise.params["source"]
    assert (data.info["num_train_files"], data.info["num_test"]) == (60, 20)
    with pytest.raises(ValueError, match="animal10n carries real label noise"):
        task.prepare(PrepareRequest("symmetric", 0.2, 0, CPU, 16))
    with pytest.raises(ValueError, match="no clean training labels to draw a trusted set from"):
        task.prepare(PrepareRequest("none", 0.0, 0, CPU, 16, needs={"trusted_set": {"per_class": 1}}))


def test_a_validation_split_carries_the_human_labels(root):
    files = read_animal10n(str(root.resolve()))
    data = benchsuite.load_task("animal10n", root=str(root)).prepare(PrepareRequest("none", 0.0, 0, CPU, 16, needs={"clean_validation": {"fraction": 0.2}}))
    x_val, y_val = data.eval_data.val
    x_train = torch.cat([batch.x for batch in data.train.eval_batches(64)])
    assert len(x_train) + len(y_val) == 60 and data.info["num_val"] == len(y_val) == 10
    # each held-out image keeps the label of its own file, and leaves the training set
    for image, label in zip(x_val, y_val):
        row = next(i for i in range(60) if np.array_equal(files.x_train[i], image.numpy()))
        assert label == files.y_train[row] and not (x_train == image).flatten(1).all(1).any()
    assert not data.truth_known.any()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "testing").rename(r / "test"), "no ANIMAL-10N at .*: missing .*/testing"),
        (lambda r: (r / "training" / "cat_1.jpg").write_bytes(b""), "training/cat_1.jpg: ANIMAL-10N files are named <label>_<id>.jpg"),
        (lambda r: Image.new("RGB", (32, 32)).save(r / "training" / "3_999.jpg"), "training/3_999.jpg is 32×32; ANIMAL-10N images are 64×64"),
    ],
)
def test_a_wrong_layout_is_named(tmp_path, damage, message):
    root = write_fake_animal10n(tmp_path / "a10n", train_per_class=1, test_per_class=1)
    damage(root)
    with pytest.raises(DatasetError, match=message):
        read_animal10n(str(root.resolve()))


def test_the_preset_runs_the_protocol_it_states():
    """The preset's own description is the protocol a reader trusts: the recipe must run exactly it."""
    task = benchsuite.load_task("animal10n", preset="selfie_vgg19")
    stated = type(task).presets["selfie_vgg19"].doc
    found = re.search(r"batch (\d+), SGD momentum ([\d.]+), wd ([\de.-]+), lr ([\d.]+) ÷(\d+) at (\d+) and (\d+) of (\d+) epochs", stated)
    assert found, stated
    batch, momentum, decay, lr, divisor, first, second, epochs = found.groups()
    recipe = task.recipe()
    assert (recipe.batch_size, recipe.momentum, recipe.weight_decay, recipe.lr, recipe.epochs) == (
        int(batch), float(momentum), float(decay), float(lr), int(epochs),
    )  # fmt: skip
    steps = 100 * int(epochs)  # any step count: the drops sit at the stated epochs' share of the run
    factors = np.array([recipe.lr_factor(step, steps) for step in range(steps)])
    drops = np.flatnonzero(factors[1:] != factors[:-1]) + 1
    assert drops.tolist() == [100 * int(first), 100 * int(second)]
    assert factors[[0, drops[0], drops[1]]] == pytest.approx([1.0, 1 / int(divisor), 1 / int(divisor) ** 2])
    assert "no augmentation" in stated and not task.augment
    assert "VGG-19 with BN" in stated
    model = task.build_model()
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 16  # VGG-19: 16 conv layers
    assert model(torch.zeros(2, 3, 64, 64, dtype=torch.uint8)).shape == (2, 10)


def test_a_short_run_through_the_cli(root, tmp_path):
    results = tmp_path / "results.sqlite"
    args = ["run", "-m", "cce", "-t", f"animal10n@smoke{{root = '{root}'}}", "--noise", "none", "--seeds", "0",
            "--iterations", "3", "--batch-size", "16", "--results", str(results), "--no-progress"]  # fmt: skip
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 0, outcome.output
    runs = to_dataframe(results)
    assert list(runs.status) == ["completed"] and runs.step[0] == 3 and 0.0 <= runs.test_acc[0] <= 1.0
    info = json.loads(runs["info"][0])
    assert info["data"]["num_train_files"] == 60 and info["noise"]["kind"] == "none"


def test_cli_without_a_root_says_where_to_get_the_data(tmp_path):
    outcome = CliRunner().invoke(main, ["run", "-m", "cce", "-t", "animal10n", "--results", str(tmp_path / "r.sqlite"), "--dry-run"])
    assert outcome.exit_code == 2 and "animal10n needs a data root" in outcome.output and "dm.kaist.ac.kr" in outcome.output
