"""Readers of the data sets that task plugins share."""

from __future__ import annotations

from ..errors import BenchsuiteError


class DatasetError(BenchsuiteError, RuntimeError):
    """A data set is missing or malformed; the message says what was expected where and how to get it."""
