"""The mars task on a tiny fake release in the official layout (a few ids, cameras, junk, distractors)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_mars import COLOURS, QUERIES, TEST, TRAIN, make_fake_mars
from scipy.io import savemat

import benchsuite
from benchsuite.engine import train
from benchsuite.spec import CellSpec
from benchsuite.task import PrepareRequest
from benchsuite.toolkit.models.pretrained import MissingWeightsError
from benchsuite.toolkit.retrieval import cosine_distance, evaluate_ranking
from benchsuite_plugins.reid.mars import ARCHS, MarsDataError, decode_frame, evenly_spaced, feature_dim, load_release
from benchsuite_plugins.reid.video import VideoEncoder, strip_classifier

SMALL = dict(arch="resnet18", weights="random", height=64, width=32, seq_len=2, test_frames=3, epoch_iterations=2, num_workers=0)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_mars(tmp_path_factory.mktemp("mars"))


@pytest.fixture(scope="module")
def task(fake):
    return benchsuite.load_task("mars", root=str(fake.root), **SMALL)


@pytest.fixture(scope="module")
def model(task):
    torch.manual_seed(0)
    return task.build_model()


def test_release_is_parsed_from_the_info_files(fake):
    release = load_release(str(fake.root))
    assert release.train.length.tolist() == fake.train_lengths
    assert release.train.start.tolist() == np.concatenate([[0], np.cumsum(fake.train_lengths)[:-1]]).tolist()
    assert release.train.pid.tolist() == [p for p, cams in TRAIN.items() for _ in cams]
    assert release.test.pid.tolist() == [p for p, _ in TEST] and release.test.camid.tolist() == [c for _, c in TEST]
    assert release.query.tolist() == QUERIES and release.train_ids.tolist() == [1, 3, 5, 7]
    assert release.test.path(0) == f"{fake.root}/bbox_test/00-1/00-1C1T0001F001.jpg"  # CRLF stripped, junk folder
    assert all(Path(release.train.path(i)).is_file() for i in range(sum(fake.train_lengths)))


def test_data_errors_name_the_problem(fake, tmp_path):
    with pytest.raises(MarsDataError, match="pass root"):
        benchsuite.load_task("mars").prepare(PrepareRequest("none", 0.0, 0, CPU, 4))
    with pytest.raises(MarsDataError, match="lacks bbox_train, bbox_test, info/train_name.txt"):
        load_release(str(tmp_path))
    broken = tmp_path / "broken"
    make_fake_mars(broken)
    savemat(broken / "info" / "query_IDX.mat", {"query_IDX": np.array([[1]], dtype=np.uint16)})  # a junk row
    with pytest.raises(MarsDataError, match="junk"):
        load_release(str(broken))
    savemat(broken / "info" / "tracks_train_info.mat", {"track_train_info": np.array([[1, 999, 1, 1]], dtype=np.int32)})
    with pytest.raises(MarsDataError, match="lines outside"):
        load_release(str(broken))
    with pytest.raises(MarsDataError, match="cannot read MARS frame"):
        decode_frame(str(tmp_path / "missing.jpg"), (64, 32))


def test_evenly_spaced_frames():
    lines, owner = evenly_spaced(np.array([0, 10, 12]), np.array([10, 2, 7]), 4)
    assert lines.tolist() == [0, 2, 5, 7, 10, 11, 12, 13, 15, 17]
    assert owner.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]


def _mean_colour(frames: torch.Tensor) -> np.ndarray:
    return frames.float().mean(dim=(-1, -2)).numpy()


def test_training_batches_hold_frames_of_their_tracklets(task, fake):
    data = task.prepare(PrepareRequest("none", 0.0, 0, CPU, batch_size=3))
    assert len(data.train) == 2  # epoch_iterations
    release = load_release(str(fake.root))
    batches = list(data.train.batches(torch.Generator().manual_seed(1)))
    for batch in batches:
        assert batch.x.shape == (3, 2, 3, 64, 32) and batch.x.dtype == torch.uint8
        pids = release.train.pid[batch.index.numpy()]
        assert batch.y.tolist() == [sorted(TRAIN).index(p) for p in pids]
        colours = _mean_colour(batch.x)  # (3, 2, 3): each frame's colour is its identity's (+ tint)
        expected = np.array([COLOURS[p] for p in pids], dtype=float)[:, None, :]
        assert np.abs(colours - expected).max() < 45
    again = list(task.prepare(PrepareRequest("none", 0.0, 0, CPU, batch_size=3)).train.batches(torch.Generator().manual_seed(1)))
    assert all(torch.equal(a.x, b.x) and torch.equal(a.index, b.index) for a, b in zip(batches, again))
    ordered = list(data.train.eval_batches(5))
    assert [b.index.tolist() for b in ordered] == [[0, 1, 2, 3, 4], [5, 6, 7]]
    assert ordered[0].x.shape == (5, 2, 3, 64, 32)


def test_workers_decode_the_same_batches(fake):
    generator_seed = 3
    results = []
    for workers in (0, 2):
        task = benchsuite.load_task("mars", root=str(fake.root), **{**SMALL, "num_workers": workers})
        data = task.prepare(PrepareRequest("none", 0.0, 0, CPU, batch_size=4))
        results.append([b.x for b in data.train.batches(torch.Generator().manual_seed(generator_seed))])
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_identity_noise_moves_tracklets_to_other_ids(task):
    data = task.prepare(PrepareRequest("symmetric", 0.5, 0, CPU, batch_size=4))
    assert data.noise.num_noisy == 4 and int(data.is_noisy.sum()) == 4
    assert torch.equal(data.train.y.cpu(), data.noisy_labels)
    assert set(data.noisy_labels.tolist()) <= {0, 1, 2, 3}


def test_tracklet_features_are_means_of_frame_features(task, model, fake):
    release = load_release(str(fake.root))
    feats = task.tracklet_features(model, release.test, batch_size=7, device=CPU)
    model.eval()
    with torch.no_grad():
        for row in (0, 4, 13):
            start, length = release.test.start[row], release.test.length[row]
            picks = [start + k * length // min(length, 3) for k in range(min(length, 3))]
            frames = torch.stack([decode_frame(release.test.path(j), (64, 32)) for j in picks])
            torch.testing.assert_close(feats[row], model.embed(frames).mean(0), rtol=1e-4, atol=1e-5)
        # A (B, T) tracklet batch is the mean over its frames, as training sees it.
        clip = frames[None]
        torch.testing.assert_close(model.encoder(clip)[0], model.embed(frames).mean(0), rtol=1e-4, atol=1e-5)


def test_evaluate_uses_each_rule_sets_gallery(task, model, fake):
    data = task.prepare(PrepareRequest("none", 0.0, 0, CPU, batch_size=4))
    assert data.info["gallery_torchreid"] == 5 and data.info["gallery_official"] == 14  # minus 7 queries, 2 junk
    metrics = task.evaluate(model, data, CPU)
    release = load_release(str(fake.root))
    feats = task.tracklet_features(model, release.test, batch_size=64, device=CPU)
    pid, cam, q = release.test.pid, release.test.camid, np.array(QUERIES)
    g = np.array([r for r in range(len(TEST)) if r not in QUERIES and TEST[r][0] != -1])
    reid = evaluate_ranking(cosine_distance(feats[q], feats[g]), pid[q], pid[g], cam[q], cam[g], 20)
    official = evaluate_ranking(cosine_distance(feats[q], feats), pid[q], pid, cam[q], cam, 20, rules="official")
    assert metrics["test_map"] == pytest.approx(reid.mAP) and metrics["test_rank1"] == pytest.approx(reid.cmc[0])
    assert metrics["test_map_official"] == pytest.approx(official.mAP)
    assert metrics["test_rank20_official"] == pytest.approx(official.cmc[19])
    # torchreid's gallery lacks the other queries: only the queries of ids 2 (camera 1) and 6
    # (camera 2) keep a match, the rest are skipped (as 140 of MARS's 1,980 are). The official
    # gallery keeps them, so only id 8 (seen by one camera) has no match: a miss, still counted.
    assert reid.valid.tolist() == [True, False, False, False, True, False, False]
    assert official.valid.all() and metrics["test_rank20_official"] <= 6 / 7
    assert set(metrics) == set(task.metrics)


def test_validation_split_reports_val_acc(task, model):
    data = task.prepare(PrepareRequest("none", 0.0, 0, CPU, batch_size=2, needs={"clean_validation": {"fraction": 0.5}}))
    assert data.info["num_val_tracklets"] == 4 and data.num_train == 4
    metrics = task.evaluate(model, data, CPU)
    assert 0.0 <= metrics["val_acc"] <= 1.0 and metrics["val_acc"] * 4 == round(metrics["val_acc"] * 4)


def test_end_to_end_through_the_engine(task, fake):
    method = benchsuite.load_method("cce")
    spec = CellSpec(
        "cce", {}, "mars", task.identity_config(), "symmetric", 0.25, 0, "1", task.version,
        budget={"epochs": 1, "batch_size": 4}, task_options={"root": str(fake.root)},
    )
    record = train(method, task, spec, CPU)
    assert record.status == "completed", record.error
    assert len(record.curves) == 1 and record.curves[-1]["step"] == 2  # epoch_iterations
    final = record.final
    assert set(task.metrics) <= set(final) and all(0.0 <= final[k] <= 1.0 for k in task.metrics)
    assert final["test_map"] > 0.8  # colour-coded identities: even a barely trained CNN retrieves them
    assert math.isfinite(final["loss"]) and final["train_acc_noisy"] >= 0
    assert record.info["data"]["feature_dim"] == 512 and record.info["noise"]["num_noisy"] == 2
    assert "root" not in spec.identity()["task_params"]


@pytest.mark.parametrize("arch", ARCHS)
def test_feature_dimension_of_every_backbone(arch):
    expected = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "densenet121": 1024,
                "mobilenet_v3_large": 1280, "efficientnet_b0": 1280}
    assert feature_dim(arch) == expected[arch]


def test_video_encoder_shapes_and_missing_weights(tmp_path, monkeypatch):
    import torchvision

    backbone, dim = strip_classifier(torchvision.models.resnet18())
    encoder = VideoEncoder(backbone).eval()
    clips = torch.randint(0, 256, (2, 3, 3, 32, 16), dtype=torch.uint8)
    with torch.no_grad():
        pooled, frames = encoder(clips), encoder(clips.flatten(0, 1))
    assert pooled.shape == (2, dim) and frames.shape == (6, dim)
    torch.testing.assert_close(pooled, frames.view(2, 3, dim).mean(1))
    with pytest.raises(ValueError, match="tracklets or"):
        encoder(clips[0, 0, 0])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="never downloads"):
        benchsuite.load_task("mars", root=str(tmp_path), arch="resnet18").build_model()
