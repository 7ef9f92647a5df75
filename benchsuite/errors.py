"""The exceptions benchsuite raises on purpose.

Every one derives from ``BenchsuiteError``. Those that describe a user's mistake (a grid key, a
command-line option, a name, a file that is not what it should be) derive from ``UsageError``:
the command line prints their message and exits with status 2, with no traceback. Anything else
(an internal error, a bug) keeps its traceback, so a ``ValueError`` from deep inside is never
passed off as "invalid input".
"""

from __future__ import annotations


class BenchsuiteError(Exception):
    """Base of the errors benchsuite raises on purpose."""


class UsageError(BenchsuiteError):
    """The user asked for something that cannot be done as asked; the message says what and where.
    The command line maps it to exit status 2."""


class InvalidInputError(UsageError, ValueError):
    """A value the user gave is malformed or out of range (a spec such as ``name@preset{k = v}`` or
    ``kind:rates``, a list of seeds, an output file name)."""


class UnwritablePathError(UsageError):
    """An output path cannot be written (missing or read-only folder, a file in the way)."""


class InvalidExportError(UsageError, ValueError):
    """A runs CSV does not match the schema ``benchsuite export`` writes."""
