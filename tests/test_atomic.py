"""Whole-or-nothing writes and the test of a file being ours (``benchsuite.atomic``)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from benchsuite.atomic import SIGNATURE_WINDOW, atomic_open, is_ours, write_text_atomically


def test_a_failed_write_leaves_the_earlier_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "board.md"
    target.write_text("earlier\n")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_open(target) as handle:
            handle.write("half of the new")
            raise RuntimeError("disk full")
    assert target.read_text() == "earlier\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.md"]


def test_a_complete_write_replaces_the_file_with_the_mode_a_plain_open_gives(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        write_text_atomically(tmp_path / "new.md", "fresh\n")
        (tmp_path / "plain.md").write_text("plain\n")
    finally:
        os.umask(previous)
    assert (tmp_path / "new.md").read_text() == "fresh\n"
    assert stat.S_IMODE((tmp_path / "new.md").stat().st_mode) == stat.S_IMODE((tmp_path / "plain.md").stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.md", "plain.md"]


def test_a_file_is_ours_by_a_signature_at_its_start_or_end(tmp_path: Path) -> None:
    filler = b"x" * (3 * SIGNATURE_WINDOW)
    cases = {
        "absent": (None, True),
        "empty": (b"", True),
        "signed at the start": (b"<!-- ours -->" + filler, True),
        "signed at the end": (filler + b"/Producer (ours)", True),
        "signed only in the middle": (filler + b"ours" + filler, False),
        "unsigned": (b"someone's notes\n", False),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        assert is_ours(path, b"ours") is expected, name
    assert is_ours(tmp_path, b"ours") is False  # a folder is never ours to overwrite
    assert is_ours(tmp_path / "unsigned" / "below", b"ours") is True  # nothing there; the writer names the bad folder
