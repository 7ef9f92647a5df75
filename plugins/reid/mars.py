"""mars: video person re-identification on MARS, with real annotation noise (and optional synthetic).

Reads the official release under ``root`` (``docs/reference.md`` §7): ``bbox_train/``,
``bbox_test/`` (one folder per 4-character person id) and ``info/`` from MARS-evaluation:
``train_name.txt``/``test_name.txt`` (one frame file name per line), ``tracks_train_info.mat``/
``tracks_test_info.mat`` (per tracklet: first and last line in the name list, 1-based and
inclusive; person id; camera) and ``query_IDX.mat`` (1-based rows of the test table).

Training is classification over the training identities (625): each example is a tracklet, each
batch item ``seq_len`` of its frames (one drawn uniformly from each of ``seq_len`` equal segments),
decoded from JPEG by DataLoader workers; the ImageNet CNN embeds every frame, the frame features
are averaged, and the method's loss acts on the logits of a linear layer. ``Batch.index`` is the
tracklet index. Testing embeds up to ``test_frames`` evenly spaced frames of every test tracklet,
averages them, and ranks by cosine similarity (L2-normalised features), reporting CMC at ranks
1/5/10/20 and mAP under both rule sets, each on its own gallery:

* torchreid (``test_rank*``, ``test_map``): the gallery is the test tracklets that are neither
  queries nor junk (pid -1); same-id-same-camera entries are removed; queries without a match
  left are skipped.
* official (``*_official``): the gallery is every test tracklet, queries and junk included; junk
  and same-id-same-camera entries are skipped; trapezoid AP; every query counts.

MARS's labels carry their own noise (tracking errors, background-only frames), so ``none`` is the
benchmark; ``symmetric`` additionally moves a fraction of the training tracklets to another
identity, uniformly: identity-level label noise, the synthetic kind used for re-identification.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from benchsuite import Metric, Param, PreparedData, Recipe, Task, hookimpl
from benchsuite.needs import CLEAN_VALIDATION
from benchsuite.task import Batch, PrepareRequest
from benchsuite.toolkit.labels import split_labels
from benchsuite.toolkit.retrieval import RankedList, cosine_distance, evaluate_ranking, top_ranked

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

RANKS = (1, 5, 10, 20)
ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "densenet121", "mobilenet_v3_large", "efficientnet_b0")
INFO_FILES = ("train_name.txt", "test_name.txt", "tracks_train_info.mat", "tracks_test_info.mat", "query_IDX.mat")


class MarsDataError(FileNotFoundError):
    """The MARS folder is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class Tracklets:
    """Tracklets of one split: frame file names and, per tracklet, first frame, length, pid, camera.

    Names are a NumPy bytes array (10 MB for MARS's 510k training frames, where Python strings or
    full paths would take hundreds), which DataLoader workers share without copying.
    """

    folder: str  # bbox_train/ or bbox_test/ of the release; a frame is folder/<first 4 chars>/<name>
    names: np.ndarray
    start: np.ndarray  # 0-based index of the first frame in ``names``
    length: np.ndarray
    pid: np.ndarray
    camid: np.ndarray

    def __len__(self) -> int:
        return len(self.start)

    def path(self, frame: int) -> str:
        name = self.names[frame].decode()
        return f"{self.folder}/{name[:4]}/{name}"

    def frame(self, frame: int, size: tuple[int, int]) -> torch.Tensor:
        """Frame number ``frame`` decoded (``decode_frame``)."""
        return decode_frame(self.path(frame), size)


@dataclass(frozen=True)
class MarsRelease:
    train: Tracklets
    test: Tracklets
    query: np.ndarray  # 0-based rows of ``test``

    @property
    def train_ids(self) -> np.ndarray:
        return np.unique(self.train.pid)


def _read_tracks(root: Path, split: str, names_file: str, mat_file: str, variable: str) -> Tracklets:
    from scipy.io import loadmat

    names = np.array((root / "info" / names_file).read_bytes().split())  # also strips CRLF line ends
    table = np.asarray(loadmat(root / "info" / mat_file)[variable], dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 4:
        raise MarsDataError(f"{mat_file}: {variable} should be a (tracklets x 4) table, got shape {table.shape}")
    first, last = table[:, 0] - 1, table[:, 1]
    if len(table) and (first.min() < 0 or last.max() > len(names) or (last <= first).any()):
        raise MarsDataError(
            f"{mat_file} refers to lines outside 1..{len(names)} of {names_file} (or to empty ranges); "
            "the info files and name lists must come from the same MARS-evaluation release"
        )
    return Tracklets(str(root / split), names, first, last - first, table[:, 2], table[:, 3])


@lru_cache(maxsize=4)
def load_release(root: str) -> MarsRelease:
    """The parsed info files of the MARS release under ``root`` (cached per process)."""
    from scipy.io import loadmat

    base = Path(root).expanduser()
    missing = [p for p in ("bbox_train", "bbox_test") if not (base / p).is_dir()]
    missing += [f"info/{f}" for f in INFO_FILES if not (base / "info" / f).is_file()]
    if missing:
        raise MarsDataError(
            f"MARS root {base} lacks {', '.join(missing)}. It must hold the bbox_train/ and bbox_test/ "
            "image folders of the release and the info/ folder of github.com/liangzheng06/MARS-evaluation."
        )
    train = _read_tracks(base, "bbox_train", "train_name.txt", "tracks_train_info.mat", "track_train_info")
    test = _read_tracks(base, "bbox_test", "test_name.txt", "tracks_test_info.mat", "track_test_info")
    query = np.asarray(loadmat(base / "info" / "query_IDX.mat")["query_IDX"], dtype=np.int64).ravel() - 1
    if len(query) == 0 or query.min() < 0 or query.max() >= len(test):
        raise MarsDataError(f"query_IDX.mat must hold 1-based rows of the {len(test)} test tracklets")
    if (test.pid[query] <= 0).any():
        raise MarsDataError("query_IDX.mat names junk (-1) or distractor (0) tracklets as queries")
    return MarsRelease(train, test, query)


@lru_cache(maxsize=None)
def feature_dim(arch: str) -> int:
    """Dimension of the frame (and tracklet) features of ``arch`` (built on the meta device)."""
    import torch
    import torchvision

    from benchsuite_plugins.reid.video import strip_classifier

    with torch.device("meta"):
        return strip_classifier(torchvision.models.get_model(arch, weights=None))[1]


def decode_frame(path: str, size: tuple[int, int]) -> torch.Tensor:
    """One JPEG as a uint8 (3, H, W) tensor, resized (bilinear) when it is not ``size``."""
    import torch
    from PIL import Image

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except OSError as exc:
        raise MarsDataError(f"cannot read MARS frame {path}: {exc}") from exc
    if rgb.size != (size[1], size[0]):
        rgb = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)


def evenly_spaced(start: np.ndarray, length: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame lines of up to ``count`` evenly spaced frames per tracklet (all of a shorter one),
    and the tracklet each line belongs to."""
    taken = np.minimum(length, count)
    owner = np.repeat(np.arange(len(start)), taken)
    step = np.arange(len(owner)) - np.repeat(np.cumsum(taken) - taken, taken)
    return start[owner] + step * length[owner] // taken[owner], owner


class TrackletSource:
    """Training tracklets, ``seq_len`` frames each, decoded from disk by DataLoader workers.

    Which tracklets and frames form each batch is drawn on the main process from the run's
    generator (so a run is reproducible whatever the number of workers); the workers only decode.
    Augmentation (horizontal flip of whole tracklets) is a batched op on the device.
    """

    def __init__(
        self,
        tracks: Tracklets,
        rows: np.ndarray,
        labels: torch.Tensor,
        batch_size: int,
        seq_len: int,
        size: tuple[int, int],
        num_workers: int,
        epoch_iterations: int,
    ) -> None:
        self.tracks = tracks
        self.start, self.length = tracks.start[rows], tracks.length[rows]
        self.y = labels
        self.batch_size = min(batch_size, len(rows))
        self.seq_len, self.size, self.num_workers = seq_len, size, num_workers
        self.epoch_iterations = epoch_iterations

    def __len__(self) -> int:
        return self.epoch_iterations or max(1, len(self.start) // self.batch_size)

    def _loader(self, lines: list[np.ndarray]) -> DataLoader:
        from torch.utils.data import DataLoader

        from benchsuite_plugins.reid.frames import FrameBatches

        return DataLoader(
            FrameBatches(self.tracks, lines, self.size),
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.y.device.type == "cuda",
        )

    def batches(self, generator: torch.Generator) -> Iterator[Batch]:
        import torch

        device, n, b, t = self.y.device, len(self.start), self.batch_size, self.seq_len
        draws = len(self) * b  # whole permutations back to back: every tracklet equally often
        perms = [torch.randperm(n, generator=generator, device=generator.device) for _ in range(-(-draws // n))]
        order = torch.cat(perms)[:draws].cpu().numpy()
        # One frame drawn uniformly from each of t equal segments of the tracklet, in time order.
        where = np.arange(t) + torch.rand(draws, t, generator=generator, device=generator.device).cpu().numpy()
        length = self.length[order, None]
        offsets = np.minimum((where * length / t).astype(np.int64), length - 1)
        lines = (self.start[order, None] + offsets).reshape(len(self), b, t)
        flips = torch.rand(len(self), b, generator=generator, device=generator.device) < 0.5
        for i, frames in enumerate(self._loader(list(lines))):
            x = frames.to(device, non_blocking=True)
            x = torch.where(flips[i].to(device)[:, None, None, None, None], x.flip(-1), x)
            index = torch.as_tensor(order[i * b : (i + 1) * b], device=device)
            yield Batch(x=x, y=self.y[index], index=index)

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        """Every tracklet once, in order: ``seq_len`` evenly spaced frames (repeated when short)."""
        import torch

        steps = np.arange(self.seq_len)
        lines = self.start[:, None] + steps * self.length[:, None] // self.seq_len
        chunks = [lines[i : i + batch_size] for i in range(0, len(lines), batch_size)]
        for i, frames in enumerate(self._loader(chunks)):
            index = torch.arange(i * batch_size, i * batch_size + len(frames), device=self.y.device)
            yield Batch(x=frames.to(self.y.device), y=self.y[index], index=index)


@dataclass
class MarsEval:
    """Test tracklets and the two rule sets' galleries (rows of the test table), plus an optional
    validation split of training tracklets (for ``val_acc``)."""

    test: Tracklets
    query: np.ndarray
    gallery_torchreid: np.ndarray
    val: TrackletSource | None


class Mars(Task):
    name = "mars"
    summary = "MARS video person re-identification (625 training ids), ImageNet CNN, CMC/mAP; needs the data"
    num_classes = 625
    evaluation = "retrieval"
    input_kind = "video"
    provides = frozenset({CLEAN_VALIDATION})
    noise_kinds = ("none", "symmetric")
    default_noise = ("none", (0.0,))  # MARS's own label noise is the benchmark
    metrics = {
        **{f"test_rank{k}": Metric(f"CMC rank {k}, torchreid rules and gallery") for k in RANKS},
        "test_map": Metric("mAP, torchreid rules and gallery (the usual 'MARS mAP')"),
        **{f"test_rank{k}_official": Metric(f"CMC rank {k}, official MATLAB rules, full gallery") for k in RANKS},
        "test_map_official": Metric("mAP, official MATLAB rules (trapezoid AP), full gallery"),
    }
    primary_metric = "test_map"
    leaderboard_metrics = ("test_map", "test_rank1")
    parameters = {
        "root": Param(None, "folder with bbox_train/, bbox_test/ and info/", type=str, nullable=True, identity=False),
        "arch": Param("resnet50", "torchvision ImageNet CNN embedding each frame", choices=ARCHS),
        "weights": Param(
            "imagenet",
            "'imagenet' (torchvision's weights from the torch hub cache), a state-dict path, or 'random' (no "
            "pretraining)",
        ),
        "height": Param(256, "frame height fed to the network (MARS crops are 256x128)", low=16),
        "width": Param(128, "frame width fed to the network", low=16),
        "seq_len": Param(4, "frames sampled per training tracklet (one from each of seq_len segments)", low=1),
        "test_frames": Param(15, "evenly spaced frames averaged per test tracklet (all of shorter ones)", low=1),
        "epoch_iterations": Param(
            5000,
            "training iterations between evaluations (0: one pass over the training tracklets); an "
            "evaluation embeds every test tracklet, so this sets the cost and resolution of the curves",
            low=0,
        ),
        "num_workers": Param(4, "DataLoader processes decoding JPEGs", low=0, identity=False),
    }
    def check_data(self) -> None:
        self._release()

    def _release(self) -> MarsRelease:
        if self.root is None:
            raise MarsDataError(
                "mars needs the data set's location: pass root, e.g. -t \"mars{root = '/data/MARS'}\" "
                "(a folder holding bbox_train/, bbox_test/ and the info/ folder of MARS-evaluation)"
            )
        return load_release(self.root)

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    def prepare(self, request: PrepareRequest) -> PreparedData:
        import torch

        release = self._release()
        train = release.train
        ids, clean = np.unique(train.pid, return_inverse=True)
        split = split_labels(request, clean, len(ids))
        rows = split.train
        val = None
        if split.val is not None:
            held = split.val
            val = self._source(train, held, torch.as_tensor(clean[held], device=request.device), request.batch_size, 0)
        clean, noisy = split.clean, split.noisy
        noisy_t = torch.as_tensor(noisy, dtype=torch.long)
        test = release.test
        not_query = np.ones(len(test), dtype=bool)
        not_query[release.query] = False
        gallery = np.flatnonzero(not_query & (test.pid != -1))
        return PreparedData(
            train=self._source(train, rows, noisy_t.to(request.device), request.batch_size, self.epoch_iterations),
            noisy_labels=noisy_t,
            true_labels=torch.as_tensor(clean, dtype=torch.long),
            truth_known=torch.ones(len(clean), dtype=torch.bool),
            noise=split.noise,
            info={
                **split.info,
                "num_train_ids": len(ids),
                "num_train_tracklets": len(rows),
                "num_train_frames": int(train.length[rows].sum()),
                "num_val_tracklets": 0 if val is None else len(val.start),
                "num_test_tracklets": len(test),
                "num_queries": len(release.query),
                "gallery_torchreid": len(gallery),
                "gallery_official": len(test),
                "feature_dim": feature_dim(self.arch),
                "frame_size": list(self.size),
            },
            eval_data=MarsEval(test, release.query, gallery, val),
        )

    def _source(
        self, tracks: Tracklets, rows: np.ndarray, labels: torch.Tensor, batch_size: int, epoch_iterations: int
    ) -> TrackletSource:
        return TrackletSource(
            tracks, rows, labels, batch_size, self.seq_len, self.size, self.num_workers, epoch_iterations
        )

    def build_model(self) -> nn.Module:
        from torch import nn

        from benchsuite.toolkit.models.embedding import EmbeddingClassifier
        from benchsuite.toolkit.models.pretrained import torchvision_backbone
        from benchsuite_plugins.reid.video import VideoEncoder, strip_classifier

        weights = None if self.weights == "random" else self.weights
        backbone, dim = strip_classifier(torchvision_backbone(self.arch, weights))
        return EmbeddingClassifier(VideoEncoder(backbone), nn.Linear(dim, len(self._release().train_ids)))

    def recipe(self) -> Recipe:
        # GR (ICLR 2020 submission) §4.4 / DM §4.3: SGD momentum 0.9, wd 5e-4, lr 0.01 halved every
        # 10k of 50k iterations, batch 180 frames (here 45 tracklets x seq_len 4). They used GoogLeNet
        # V2, which torchvision lacks; ResNet-50 is the usual re-identification backbone instead.
        return Recipe(
            epochs=10,
            iterations=50_000,
            batch_size=45,
            lr=0.01,
            momentum=0.9,
            weight_decay=5e-4,
            schedule="multistep",
            milestones=(0.2, 0.4, 0.6, 0.8),
            gamma=0.5,
            eval_batch_size=128,
        )

    def tracklet_features(
        self, model: nn.Module, test: Tracklets, batch_size: int, device: torch.device
    ) -> torch.Tensor:
        """Mean of the frame features of up to ``test_frames`` evenly spaced frames per tracklet."""
        import torch
        from torch.utils.data import DataLoader

        from benchsuite_plugins.reid.frames import FrameBatches

        with torch.no_grad():
            lines, owner = evenly_spaced(test.start, test.length, self.test_frames)
            chunks = [lines[i : i + batch_size] for i in range(0, len(lines), batch_size)]
            loader = DataLoader(FrameBatches(test, chunks, self.size), batch_size=None, num_workers=self.num_workers)
            owner_t = torch.as_tensor(owner, device=device)
            sums = torch.zeros(len(test), feature_dim(self.arch), device=device)
            was_training = model.training
            model.eval()
            try:
                for i, frames in enumerate(loader):
                    feats = model.embed(frames.to(device)).float()
                    sums.index_add_(0, owner_t[i * batch_size : i * batch_size + len(feats)], feats)
            finally:
                model.train(was_training)
            return sums / torch.as_tensor(np.minimum(test.length, self.test_frames), device=device)[:, None]

    def evaluate(self, model: nn.Module, data: PreparedData, device: torch.device) -> dict[str, float]:
        import torch

        ev: MarsEval = data.eval_data
        batch_size = self.recipe().eval_batch_size
        feats = self.tracklet_features(model, ev.test, batch_size, device)
        pid, cam = ev.test.pid, ev.test.camid
        q, g = ev.query, ev.gallery_torchreid
        reid = evaluate_ranking(cosine_distance(feats[q], feats[g]), pid[q], pid[g], cam[q], cam[g], max(RANKS))
        official = evaluate_ranking(cosine_distance(feats[q], feats), pid[q], pid, cam[q], cam, max(RANKS), "official")
        metrics = {**reid.named(RANKS), **official.named(RANKS, suffix="_official")}
        if ev.val is not None:
            hits = total = 0
            was_training = model.training
            model.eval()
            with torch.no_grad():
                for batch in ev.val.eval_batches(max(1, batch_size // self.seq_len)):
                    hits += int((model(batch.x).argmax(1) == batch.y).sum())
                    total += len(batch.y)
            model.train(was_training)
            metrics["val_acc"] = hits / total
        return metrics

    def ranked_lists(self, model: nn.Module, data: PreparedData, device: torch.device, queries: int, k: int) -> list[RankedList]:
        """The top ``k`` of the torchreid-rules ranking (the ``test_map`` gallery) of ``queries``
        queries evenly spaced over the query list, as first frames of the tracklets at the crops'
        own 256x128 (for ``benchsuite plot ranked``)."""
        ev: MarsEval = data.eval_data
        test = ev.test
        feats = self.tracklet_features(model, test, self.recipe().eval_batch_size, device)
        q = ev.query[np.unique(np.linspace(0, len(ev.query) - 1, min(queries, len(ev.query))).round().astype(int))]
        g = ev.gallery_torchreid
        index, hits = top_ranked(cosine_distance(feats[q], feats[g]), test.pid[q], test.pid[g], test.camid[q], test.camid[g], k)

        def frame(row: int) -> np.ndarray:
            return decode_frame(test.path(int(test.start[row])), (256, 128)).permute(1, 2, 0).numpy()

        def caption(row: int) -> str:
            return f"id {test.pid[row]} cam {test.camid[row]}"

        lists = []
        for query, shown, hit in zip(q, index, hits):
            rows = [int(g[i]) for i in shown if i >= 0]
            lists.append(
                RankedList(frame(query), caption(query), [frame(r) for r in rows], [caption(r) for r in rows], hit[: len(rows)].tolist())
            )
        return lists


@hookimpl
def register_tasks(register):
    register(Mars)
