"""In-cell checkpoints: a cell interrupted at an epoch boundary and run again resumes from its
checkpoint and ends bit-identical to an uninterrupted run; checkpoints are only for their cell,
written atomically, never fatal, and removed once the cell's record is stored."""

from __future__ import annotations

import json

import pytest
import torch

import benchsuite
from benchsuite import checkpoint as checkpoint_module
from benchsuite.checkpoint import CheckpointError, CheckpointPolicy, check_loadable, checkpoint_dir
from benchsuite.cell import CellTimeout, execute_cell
from benchsuite.spec import CellSpec

EPOCHS = 3
#: Loss, step and stateful methods: IEG (trusted-batch stream, its own schedule), ELR (per-example
#: targets), Co-teaching and DivideMix (second networks, their optimisers and schedules, Beta
#: draws), truncated GCE (pruning mask, best model), cce_trusted (chunks of a trusted batch
#: cut mid-way), mixup (a NumPy generator), forward (the estimated T).
METHODS = ["cce", "ieg", "elr", "coteaching", "dividemix", "gce_truncated", "cce_trusted", "mixup", "forward"]
PARAMS = {"dividemix": {"warmup_epochs": 1}, "cce_trusted": {"probe_per_class": 7}}


class Injected(Exception):
    """The failure injected after an epoch (a crash at an epoch boundary)."""


def cell(method: str, seed: int = 0, **budget) -> CellSpec:
    instance = benchsuite.load_method(method, **PARAMS.get(method, {}))
    task = benchsuite.load_task("digits", width=32)
    return CellSpec(
        method, instance.identity_config(), "digits", task.identity_config(), "symmetric", 0.4, seed, "t", "t",
        budget={"epochs": EPOCHS, "batch_size": 256, **budget},
    )


def numbers(record) -> list[dict[str, float]]:
    assert record.status == "completed", record.error
    return [{k: v for k, v in row.items() if k != "epoch_time"} for row in record.curves]


def fail_after(epoch: int):
    def on_epoch(done: int, epochs: int, row: dict[str, float]) -> None:
        if done == epoch:
            raise Injected(f"after epoch {done}")

    return on_epoch


@pytest.mark.parametrize("method", METHODS)
def test_a_cell_resumed_after_a_crash_is_bit_identical_to_an_uninterrupted_run(tmp_path, method):
    spec = cell(method)
    uninterrupted = numbers(execute_cell(spec, "cpu"))
    policy = CheckpointPolicy(tmp_path, every_seconds=0)
    crashed = execute_cell(spec, "cpu", on_epoch=fail_after(2), checkpoints=policy)
    assert crashed.status == "failed" and "Injected" in crashed.error
    assert policy.path(spec.cell_hash).is_file()

    trained: list[int] = []
    resumed = execute_cell(spec, "cpu", on_epoch=lambda e, n, row: trained.append(e), checkpoints=policy)
    assert trained == [3]  # only the epoch after the checkpoint was trained again
    assert resumed.provenance["resumed_from"]["epoch"] == 2
    assert resumed.provenance["resumed_from"]["step"] == resumed.curves[1]["step"] > 0
    assert numbers(resumed) == uninterrupted


def test_the_comparison_can_fail_a_method_state_left_out_of_the_checkpoint_changes_the_result(tmp_path, monkeypatch):
    """ELR without its targets in the checkpoint resumes with zero targets: the numbers differ."""
    spec = cell("elr")
    uninterrupted = numbers(execute_cell(spec, "cpu"))
    policy = CheckpointPolicy(tmp_path, every_seconds=0)
    monkeypatch.setattr(type(benchsuite.load_method("elr")), "state_attributes", ())
    execute_cell(spec, "cpu", on_epoch=fail_after(1), checkpoints=policy)
    resumed = execute_cell(spec, "cpu", checkpoints=policy)
    assert resumed.provenance["resumed_from"]["epoch"] == 1
    assert numbers(resumed)[0] == uninterrupted[0]  # the restored epoch
    assert numbers(resumed)[1:] != uninterrupted[1:]


def test_a_checkpoint_is_plain_data_read_with_weights_only(tmp_path):
    spec = cell("coteaching")
    policy = CheckpointPolicy(tmp_path, every_seconds=0)
    execute_cell(spec, "cpu", on_epoch=fail_after(1), checkpoints=policy)
    payload = torch.load(policy.path(spec.cell_hash), weights_only=True)
    meta = json.loads(payload["meta"])
    assert meta["epoch"] == 1 and meta["cell_hash"] == spec.cell_hash and len(meta["curves"]) == 1
    assert payload["rng"]["generator"].dtype == torch.uint8 and payload["rng"]["python"].shape == (625,)
    assert set(payload["method"]) == {"peer", "peer_optimizer", "peer_schedule", "_sums", "_forget"}
    kinds = {name: packed["kind"] for name, packed in payload["method"].items()}
    assert kinds == {"peer": "state_dict", "peer_optimizer": "state_dict", "peer_schedule": "plain", "_sums": "tensor", "_forget": "plain"}
    peer = payload["method"]["peer"]["value"]
    assert all(isinstance(t, torch.Tensor) for t in peer.values())


def test_a_checkpoint_of_another_cell_identity_is_never_used(tmp_path):
    policy = CheckpointPolicy(tmp_path, every_seconds=0)
    written, other = cell("cce", seed=0), cell("cce", seed=1)
    execute_cell(written, "cpu", on_epoch=fail_after(2), checkpoints=policy)
    policy.path(written.cell_hash).rename(policy.path(other.cell_hash))  # as if the settings had changed
    record = execute_cell(other, "cpu", checkpoints=policy)
    assert "resumed_from" not in record.provenance
    assert record.provenance["checkpoints"]["ignored"] == "written for another cell identity (code or settings changed)"
    assert numbers(record) == numbers(execute_cell(other, "cpu"))


def test_an_unreadable_checkpoint_is_ignored_and_the_cell_runs_from_the_start(tmp_path):
    policy = CheckpointPolicy(tmp_path, every_seconds=0)
    spec = cell("cce")
    policy.directory.mkdir(exist_ok=True)
    policy.path(spec.cell_hash).write_bytes(b"half a file")
    with pytest.warns(RuntimeWarning, match="not used: unreadable"):
        record = execute_cell(spec, "cpu", checkpoints=policy)
    assert record.status == "completed" and "resumed_from" not in record.provenance


def test_a_failed_checkpoint_write_leaves_the_previous_checkpoint_whole_and_no_half_file(tmp_path, monkeypatch):
    """The disk fills while epoch 2's checkpoint is written, then the cell crashes: epoch 1's
    checkpoint is intact, no partial file is left, and the resume from it is exact."""
    spec = cell("cce")
    real_save = torch.save
    calls = []

    def save_until_the_disk_is_full(obj, handle):
        calls.append(1)
        if len(calls) == 2:
            handle.write(b"\0" * 1000)  # half-written, then the disk is full
            raise OSError(28, "No space left on device")
        real_save(obj, handle)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_until_the_disk_is_full)
    policy = CheckpointPolicy(tmp_path, every_seconds=0)
    with pytest.warns(RuntimeWarning, match="No space left on device"):
        crashed = execute_cell(spec, "cpu", on_epoch=fail_after(2), checkpoints=policy)
    monkeypatch.undo()
    assert crashed.status == "failed" and "Injected" in crashed.error  # our injected crash, not the disk
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{spec.cell_hash}.pt"]
    resumed = execute_cell(spec, "cpu", checkpoints=policy)
    assert resumed.provenance["resumed_from"]["epoch"] == 1
    assert numbers(resumed) == numbers(execute_cell(spec, "cpu"))


def test_a_disk_full_checkpoint_is_counted_in_the_record_and_the_run_completes(tmp_path, monkeypatch):
    spec = cell("cce")

    def disk_full(obj, handle):
        handle.write(b"\0" * 100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", disk_full)
    with pytest.warns(RuntimeWarning):
        record = execute_cell(spec, "cpu", checkpoints=CheckpointPolicy(tmp_path, every_seconds=0))
    monkeypatch.undo()
    assert numbers(record) == numbers(execute_cell(spec, "cpu"))
    info = record.provenance["checkpoints"]
    assert info["written"] == 0 and info["failed"] == EPOCHS - 1 and "No space left" in info["last_error"]
    assert list(tmp_path.iterdir()) == []


def test_the_cadence_writes_at_most_every_n_seconds(tmp_path):
    spec = cell("cce")
    often = execute_cell(spec, "cpu", checkpoints=CheckpointPolicy(tmp_path / "a", every_seconds=0))
    rarely = execute_cell(spec, "cpu", checkpoints=CheckpointPolicy(tmp_path / "b", every_seconds=3600))
    assert often.provenance["checkpoints"]["written"] == EPOCHS - 1  # never after the last epoch
    assert rarely.provenance["checkpoints"]["written"] == 0


def test_a_timeout_after_a_resume_keeps_the_restored_curves(tmp_path):
    spec = cell("cce")
    policy = CheckpointPolicy(tmp_path, every_seconds=0)
    execute_cell(spec, "cpu", on_epoch=fail_after(1), checkpoints=policy)

    def time_out(epoch: int, epochs: int, row: dict[str, float]) -> None:
        raise CellTimeout

    record = execute_cell(spec, "cpu", on_epoch=time_out, checkpoints=policy, timeout=600)
    assert record.status == "timeout" and [row["epoch"] for row in record.curves] == [1, 2]
    assert record.provenance["resumed_from"]["epoch"] == 1


def test_an_unsaveable_method_state_fails_the_checkpoint_with_its_name():
    class Opaque:
        pass

    with pytest.raises(CheckpointError, match=r"Thing\.helper is a Opaque"):
        checkpoint_module.pack_attributes(type("Thing", (), {"helper": Opaque()})(), ("helper",))
    with pytest.raises(CheckpointError, match=r"checkpoint\['x'\]\[1\] is a object"):
        check_loadable({"x": [1, object()]})


def test_run_grid_removes_the_checkpoints_of_finished_cells_only(tmp_path):
    from benchsuite.grid import expand, grid_from_dict
    from benchsuite.runner import run_grid
    from benchsuite.store import ResultStore

    grid = grid_from_dict(
        {"method": ["cce"], "task": ["digits{width = 32}"], "noise": {"kind": "symmetric", "rates": [0.4]},
         "seeds": [0, 1], "budget": {"epochs": 2, "batch_size": 256}}, source="test")  # fmt: skip
    expansion = expand(grid, benchsuite.plugins.get_host())
    results = tmp_path / "results.sqlite"
    folder = checkpoint_dir(results)
    folder.mkdir()
    leftover = folder / "0123456789abcdef.pt"  # some other cell's: not ours to delete
    leftover.write_bytes(b"x")
    for spec in expansion.cells:
        (folder / f"{spec.cell_hash}.pt.partial").write_bytes(b"half")  # left by a killed writer
    with ResultStore(results) as store:
        outcome = run_grid(expansion, store, device="cpu", progress=False, checkpoint_every=0)
        assert sorted(store.statuses().values()) == ["completed", "completed"]
    assert outcome.missing == []
    assert sorted(p.name for p in folder.iterdir()) == [leftover.name]
