"""clothing1m: release parsing, the balanced sampler, worker-independent augmentation, end to end."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

import benchsuite
from benchsuite.engine import train
from benchsuite.results import to_dataframe
from benchsuite.spec import CellSpec
from benchsuite.task import PrepareRequest
from benchsuite.toolkit.models.pretrained import MissingWeightsError
from benchsuite_plugins.clothing1m import clothing1m
from benchsuite_plugins.clothing1m.clothing1m import load_release
from benchsuite_plugins.clothing1m.images import ImageFiles, ImageTrainSource, balanced_subset_size, class_balanced_subset

CLASSES = [
    "T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker",
    "Jacket", "Downcoat", "Suit", "Shawl", "Dress", "Vest", "Underwear",
]  # fmt: skip
COMMA_KEY = "images/3/17/3761328114,905362226.jpg"
NOISY_PER_CLASS = 3
OVERLAP = 14  # noisy images that also have a clean label
OVERLAP_WRONG = 5  # ... of which the noisy label is wrong


def _jpeg(path: Path, colour: tuple[int, int, int], size: tuple[int, int]) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")


def make_release(root: Path) -> dict[str, list[tuple[str, int]]]:
    """A tiny Clothing1M release: all seven text files, 14 class names, JPEGs under images/<d>/<dd>/
    (one with a comma in its name); keys written with ``images/`` in the kv files and in some lists."""
    rng = np.random.default_rng(0)
    splits: dict[str, list[tuple[str, int]]] = {"noisy_train": [], "clean_train": [], "clean_val": [], "clean_test": []}
    counter = 0

    def new_key(label: int) -> str:
        nonlocal counter
        counter += 1
        return f"images/{counter % 10}/{10 + counter % 7}/{1000 + counter}.jpg"

    for label in range(14):
        for _ in range(NOISY_PER_CLASS):
            splits["noisy_train"].append((new_key(label), label))
        for _ in range(2):
            splits["clean_train"].append((new_key(label), label))
        splits["clean_val"].append((new_key(label), label))
        splits["clean_test"].append((new_key(label), label))
    splits["noisy_train"][0] = (COMMA_KEY, 0)
    for split in splits.values():
        for key, label in split:
            size = (int(rng.integers(40, 64)), int(rng.integers(40, 64)))
            _jpeg(root / key, (18 * label, 255 - 18 * label, 60), size)
    noisy_kv = list(splits["noisy_train"])
    clean_kv = splits["clean_train"] + splits["clean_val"] + splits["clean_test"]
    # the overlap: the first OVERLAP noisy images also have a clean label; OVERLAP_WRONG disagree
    for i, (key, label) in enumerate(splits["noisy_train"][:OVERLAP]):
        clean_kv.append((key, (label + 1) % 14 if i < OVERLAP_WRONG else label))
    (root / "category_names_eng.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "noisy_label_kv.txt").write_text("".join(f"{k} {y}\n" for k, y in noisy_kv))
    (root / "clean_label_kv.txt").write_text("".join(f"{k} {y}\n" for k, y in clean_kv))
    for split, name in clothing1m.KEY_LISTS.items():
        # noisy_train keys keep images/, the clean lists drop it: both forms must resolve
        keys = [k if split == "noisy_train" else k[len("images/") :] for k, _ in splits[split]]
        (root / name).write_text("\n".join(keys) + "\n")
    return splits


@pytest.fixture(scope="module")
def release_root(tmp_path_factory) -> tuple[Path, dict[str, list[tuple[str, int]]]]:
    root = tmp_path_factory.mktemp("clothing1m")
    return root, make_release(root)


@pytest.fixture(autouse=True)
def _fresh_release_cache_one_thread():
    """Parse each test's release afresh; one torch thread (tiny convolutions on a shared CPU)."""
    load_release.cache_clear()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    load_release.cache_clear()


def small_task(root: Path, **overrides) -> clothing1m.Clothing1M:
    params = dict(root=str(root), arch="shufflenet_v2_x0_5", weights="random", resize=36, crop=32, samples_per_epoch=28, num_workers=0)
    return benchsuite.load_task("clothing1m", **{**params, **overrides})


def test_release_is_parsed_with_commas_and_both_key_forms(release_root):
    root, splits = release_root
    release = load_release(str(root))
    assert release.image_dir == root / "images"
    assert release.class_names == CLASSES
    assert release.keys["noisy_train"][0] == COMMA_KEY[len("images/") :]
    assert release.labels["noisy_train"].tolist() == [y for _, y in splits["noisy_train"]]
    assert release.labels["clean_val"].tolist() == [y for _, y in splits["clean_val"]]
    truth = release.noisy_train_truth
    assert (truth[:OVERLAP] >= 0).all() and (truth[OVERLAP:] == -1).all()
    assert int((truth[:OVERLAP] != release.labels["noisy_train"][:OVERLAP]).sum()) == OVERLAP_WRONG
    image, index = ImageFiles(release.image_dir, release.keys["noisy_train"], 36, 32)[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and index == 0


def test_images_directly_under_root_also_resolve(tmp_path):
    make_release(tmp_path)
    for folder in (tmp_path / "images").iterdir():
        shutil.move(str(folder), tmp_path / folder.name)
    assert load_release(str(tmp_path)).image_dir == tmp_path


def test_layout_errors_name_what_was_expected_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="needs the Clothing1M release"):
        benchsuite.load_task("clothing1m").release()
    make_release(tmp_path)
    (tmp_path / "clean_val_key_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing clean_val_key_list\.txt"):
        load_release(str(tmp_path))
    load_release.cache_clear()
    (tmp_path / "clean_val_key_list.txt").write_text("9/99/nothing.jpg\n")
    with pytest.raises(ValueError, match="keys of clean_val_key_list.txt have no label in clean_label_kv.txt"):
        load_release(str(tmp_path))
    load_release.cache_clear()
    make_release(tmp_path)
    shutil.rmtree(tmp_path / "images")
    with pytest.raises(FileNotFoundError, match=r"should be at .*images/3/17/3761328114,905362226\.jpg"):
        load_release(str(tmp_path))


def test_malformed_kv_line_is_reported_with_its_line(tmp_path):
    make_release(tmp_path)
    with open(tmp_path / "noisy_label_kv.txt", "a") as handle:
        handle.write("images/0/10/a, b.jpg 3\n")  # a space inside a key: three fields
    with pytest.raises(ValueError, match=r"noisy_label_kv\.txt:43: expected '<image key> <label 0-13>'"):
        load_release(str(tmp_path))


def _dividemix_walk(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """The sampler as DivideMix writes it: a sequential walk over a shuffled list."""
    order = rng.permutation(len(labels))
    counts = np.zeros(14, dtype=int)
    accepted = []
    for i in order:
        if counts[labels[i]] < size / 14 and len(accepted) < size:
            accepted.append(i)
            counts[labels[i]] += 1
    accepted = np.array(accepted)
    return accepted[rng.permutation(len(accepted))]


@pytest.mark.parametrize("size", [14, 100, 1000, 5000])
def test_class_balanced_subset_is_dividemix_rule(size):
    labels = np.random.default_rng(1).choice(14, size=3000, p=np.r_[np.full(7, 0.8 / 7), np.full(7, 0.2 / 7)])
    subset = class_balanced_subset(labels, size, 14, np.random.default_rng(7))
    assert np.array_equal(subset, _dividemix_walk(labels, size, np.random.default_rng(7)))
    assert len(subset) == balanced_subset_size(labels, size, 14) and len(np.unique(subset)) == len(subset)
    assert np.bincount(labels[subset], minlength=14).max() <= np.ceil(size / 14)
    assert not np.array_equal(subset, class_balanced_subset(labels, size, 14, np.random.default_rng(8)))


def test_augmentation_does_not_depend_on_worker_count(release_root):
    root, _ = release_root
    release = load_release(str(root))
    files = ImageFiles(release.image_dir, release.keys["noisy_train"], 36, 32)
    epochs = {}
    for workers in (0, 2):
        source = ImageTrainSource(files, release.labels["noisy_train"], 8, torch.device("cpu"), workers, subset_size=28, num_classes=14)
        generator = torch.Generator().manual_seed(3)
        epochs[workers] = [[(b.x, b.y, b.index) for b in source.batches(generator)] for _ in range(2)]
    assert len(epochs[0][0]) == len(source) == 3  # 28 balanced images (2 per class) in batches of 8
    for (x0, y0, i0), (x2, y2, i2) in zip(epochs[0][0] + epochs[0][1], epochs[2][0] + epochs[2][1]):
        assert torch.equal(x0, x2) and torch.equal(y0, y2) and torch.equal(i0, i2)
    first, second = torch.cat([i for _, _, i in epochs[0][0]]), torch.cat([i for _, _, i in epochs[0][1]])
    assert not torch.equal(first, second)  # a fresh subset each epoch
    assert np.bincount(release.labels["noisy_train"][first.numpy()], minlength=14).max() <= 2


def test_trusted_set_comes_from_the_clean_training_subset(release_root):
    root, splits = release_root
    task = small_task(root)
    request = PrepareRequest("none", 0.0, seed=0, device=torch.device("cpu"), batch_size=8, needs={"trusted_set": {"per_class": 2}})
    data = task.prepare(request)
    trusted = data.provided["trusted_set"]
    assert len(trusted.y) == 28 and torch.equal(trusted.y.bincount(minlength=14), torch.full((14,), 2))
    assert data.num_train == 14 * NOISY_PER_CLASS  # the noisy set stays whole
    assert data.info["trusted_indices"] == list(range(28))
    with pytest.raises(ValueError, match="real label noise"):
        task.prepare(PrepareRequest("symmetric", 0.2, seed=0, device=torch.device("cpu"), batch_size=8))


def test_the_noise_record_comes_from_the_shared_label_pipeline(release_root):
    """Clothing1M's record is the label pipeline's (``split_labels(truth=...)``, as ANIMAL-10N's):
    the realised rate measured on the overlap with clean labels, the truth known only there."""
    root, splits = release_root
    request = PrepareRequest("none", 0.0, seed=3, device=torch.device("cpu"), batch_size=8, needs={"trusted_set": {"per_class": 1}})
    data = small_task(root).prepare(request)
    assert asdict(data.noise) == {
        "kind": "none",
        "rate": 0.0,
        "seed": 3,
        "realised_rate": pytest.approx(OVERLAP_WRONG / OVERLAP),
        "num_noisy": OVERLAP_WRONG,
        "params": {"source": "real (Clothing1M); rate measured where a clean label is known"},
    }
    noisy = [label for _, label in splits["noisy_train"]]
    assert data.noisy_labels.tolist() == noisy
    assert data.truth_known.tolist() == [True] * OVERLAP + [False] * (len(noisy) - OVERLAP)
    # the clean label on the overlap (OVERLAP_WRONG of them differ), the noisy one elsewhere
    assert data.true_labels.tolist() == [(y + 1) % 14 if i < OVERLAP_WRONG else y for i, y in enumerate(noisy)]
    assert data.info["num_truth_known"] == OVERLAP and len(data.info["trusted_indices"]) == 14


def test_missing_imagenet_weights_are_reported(release_root, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="never downloads weights"):
        small_task(release_root[0], weights="imagenet").build_model()


def test_end_to_end_through_the_engine(release_root):
    root, _ = release_root
    task = small_task(root)
    spec = CellSpec(
        "cce", {}, "clothing1m", task.identity_config(), "none", 0.0, 0, "1", task.version,
        budget={"iterations": 6, "batch_size": 7}, task_options={"root": str(root)},
    )  # fmt: skip
    record = train(benchsuite.load_method("cce"), task, spec, torch.device("cpu"))
    assert record.status == "completed", record.error
    assert [row["epoch"] for row in record.curves] == [1, 2] and record.curves[-1]["step"] == 6
    final = record.final
    for metric in ("val_acc", "test_acc"):
        assert final[metric] * 14 == pytest.approx(round(final[metric] * 14))  # 14 images per split
    assert {"train_acc_true", "noisy_memorised", "clean_fit"} <= set(final)
    noise = record.info["noise"]
    assert noise["kind"] == "none" and noise["num_noisy"] == OVERLAP_WRONG
    assert noise["realised_rate"] == pytest.approx(OVERLAP_WRONG / OVERLAP)
    assert record.info["data"]["num_truth_known"] == OVERLAP


def test_end_to_end_through_the_cli(release_root, tmp_path):
    root, _ = release_root
    results = tmp_path / "res" / "results.sqlite"
    task = (
        f"clothing1m{{root = '{root}', arch = 'shufflenet_v2_x0_5', weights = 'random', resize = 36, crop = 32, "
        "samples_per_epoch = 28, num_workers = 2}"
    )
    result = run_cli(
        "run", "-m", "cce", "-t", task, "--iterations", "6", "--batch-size", "7", "--seeds", "0",
        "--results", str(results), "--no-progress", env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    runs = to_dataframe(results)
    assert len(runs) == 1 and runs.status[0] == "completed"
    assert runs.noise_kind[0] == "none" and runs.epochs[0] == 2  # the task's default noise: its own labels
    assert 0 <= runs.val_acc[0] <= 1 and 0 <= runs.test_acc[0] <= 1
    board = (tmp_path / "res" / "leaderboard.md").read_text()
    assert "clothing1m" in board and "val_acc" in board
