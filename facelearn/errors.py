"""Errors that name the input at fault (book: "How to run it", bad input).

Every reader of files raises :class:`DataError` with the file and, where there is one, the line, so a
reader sees ``label.txt:1204: expected 20 numbers, got 17`` rather than a traceback deep in NumPy.
"""

from __future__ import annotations

import os


class DataError(ValueError):
    """Bad input: a file, a line in it, or an argument that cannot be used as given."""

    @classmethod
    def at(cls, path: str | os.PathLike, line: int | None, message: str) -> "DataError":
        """``DataError("path:line: message")``; ``line`` is 1-based, ``None`` for the whole file."""
        where = str(path) if line is None else f"{path}:{line}"
        return cls(f"{where}: {message}")


class TrainingStopped(FloatingPointError):
    """Training stopped because a step produced a non-finite loss, gradient or weight (a learning rate too
    high, or bad data); the last checkpoint written is the last good state."""
