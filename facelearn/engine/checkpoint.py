"""Checkpoints written atomically and read without unpickling code (book: "How to run it").

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts. It is written to a temporary
file in the same folder, flushed to disk, then renamed over the target, so a crash never leaves a
half-written file; it is read with ``torch.load(weights_only=True)``, which refuses arbitrary objects.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facelearn.errors import DataError


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises :class:`DataError` naming the file when it is missing, truncated or holds anything but plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError.at(path, None, "no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError depending on damage
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError.at(path, None, f"not a readable facelearn checkpoint ({first})") from None
    if not isinstance(state, dict):
        raise DataError.at(path, None, f"expected a dict, found {type(state).__name__}")
    return state


def rng_state() -> dict[str, Any]:
    """The state of Python's, NumPy's and torch's global generators, as plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
