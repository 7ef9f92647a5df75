"""Writing a file whole or not at all, and only over a file of our own.

A reader (a browser on a report, ``git diff`` on a board, a second ``benchsuite`` process on the
plugin catalog) must never see half a file, and an interrupted or failed write must leave the
previous file as it was: so a file is written to a temporary file in the same directory (the same
file system, so the rename is atomic) and renamed over the target only once complete.

And a command writes only where nothing is, or where it wrote before: ``is_ours`` tells a file
of ours by a signature its writer always puts in it (near its start, or at its end).
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

#: How far into a file ``is_ours`` looks for a signature.
SIGNATURE_WINDOW = 4096


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **options: Any) -> Iterator[IO[Any]]:
    """A new file beside ``path``, opened with ``mode`` (``"w"`` or ``"wb"``) and ``options``
    (``encoding``, ``newline``), renamed onto ``path`` when the block ends without error and
    removed when it does not. Created with ``O_EXCL`` and mode 0o666 less the umask, as a plain
    ``open`` would create ``path``."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, mode, **options) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """``Path.write_text`` through ``atomic_open``."""
    with atomic_open(path, "w", encoding=encoding) as handle:
        handle.write(text)


def is_ours(path: str | Path, *signatures: bytes) -> bool:
    """Whether ``path`` may be overwritten: absent, empty, or holding one of ``signatures`` within
    its first or last ``SIGNATURE_WINDOW`` bytes (a PDF names its producer at its end). A file
    that cannot be read (a folder, say) is not ours."""
    try:
        with open(path, "rb") as stored:
            head = stored.read(SIGNATURE_WINDOW)
            stored.seek(max(0, os.fstat(stored.fileno()).st_size - SIGNATURE_WINDOW))
            tail = stored.read(SIGNATURE_WINDOW)
    except (FileNotFoundError, NotADirectoryError):  # nothing there (the folder's problem is the writer's to name)
        return True
    except OSError:
        return False
    return not head or any(signature in head or signature in tail for signature in signatures)
