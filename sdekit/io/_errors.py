"""The one error type of the weight-file readers and writers."""

from __future__ import annotations

import os
import pickle
from typing import Any


class WeightFileError(ValueError, pickle.UnpicklingError):
    """A weight file that cannot be read (truncated, malformed, out-of-bounds, or holding
    something other than tensors). The message starts with the file's name."""


def source_name(source: Any) -> str:
    """How a source is named in messages: its path, or ``<bytes>`` for an in-memory buffer."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return "<bytes>"


def fail(source: Any, message: str) -> WeightFileError:
    return WeightFileError(f"{source_name(source)}: {message}")
