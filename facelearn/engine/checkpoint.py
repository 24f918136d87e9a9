"""Checkpoints written atomically and read without unpickling code (book: "How to run it").

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts. It is written to a temporary
file in the same folder, flushed to disk, then renamed over the target, so a crash never leaves a
half-written file (and the temporary file of a crashed write is removed by the next run); it is read with
``torch.load(weights_only=True)``, which refuses arbitrary objects. A state holding a NaN or an infinity is
never written, and a checkpoint of another model is refused with one line before anything is loaded.
"""

from __future__ import annotations

import glob
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facelearn.errors import DataError, TrainingStopped

#: The keys every Trainer checkpoint holds.
TRAINER_KEYS = ("model", "optimizer", "epoch", "step", "rng")


def first_nonfinite(state: Any, prefix: str = "") -> str | None:
    """The key path (``optimizer.state.3.exp_avg``) of the first floating-point tensor in the nested dicts and
    lists of ``state`` that holds a NaN or an infinity, or ``None`` when every one is finite."""
    if torch.is_tensor(state):
        return prefix or "<tensor>" if state.is_floating_point() and not bool(torch.isfinite(state).all()) else None
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else ()
    for key, value in items:
        bad = first_nonfinite(value, f"{prefix}.{key}" if prefix else str(key))
        if bad:
            return bad
    return None


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename). Returns the path.

    Refuses (:class:`TrainingStopped`) a state whose weights or optimiser moments are not finite, so a diverged
    run never overwrites its last good checkpoint."""
    path = Path(path)
    bad = first_nonfinite(state)
    if bad:
        raise TrainingStopped(f"refusing to write {path}: {bad} holds NaN or infinite values")
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


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``<name>.*.tmp``) that a write of ``path`` killed before its rename left
    beside it; call before a run starts writing ``path``. Returns the files removed."""
    path = Path(path)
    stale = sorted(path.parent.glob(f"{glob.escape(path.name)}.*.tmp")) if path.parent.is_dir() else []
    for file in stale:
        file.unlink(missing_ok=True)
    return stale


def sync_log(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Make the JSON-lines log ``path`` hold one line per record of ``records`` (the history stored in the
    checkpoint): complete lines already there are kept, missing ones appended, a line cut short by a kill
    dropped. Rewritten atomically, so a kill at any moment leaves either the old log or the new one."""
    path = Path(path)
    kept = []
    if path.is_file():
        text = path.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines(keepends=True)[:len(records)]:
            if not line.endswith("\n"):
                break
            try:
                json.loads(line)
            except ValueError:
                break
            kept.append(line)
        if len(kept) == len(records) and text == "".join(kept):
            return
    body = "".join(kept) + "".join(json.dumps(r) + "\n" for r in records[len(kept):])
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def describe(state: dict[str, Any]) -> str:
    """What a checkpoint holds, in a few words: the model its ``facelearn`` block names (if any), and whether it
    is a Trainer checkpoint or an inference export."""
    meta = state.get("facelearn") if isinstance(state.get("facelearn"), dict) else {}
    kind = "a Trainer checkpoint" if all(k in state for k in TRAINER_KEYS) else "an inference checkpoint"
    if meta.get("model"):
        return f"{kind} of {meta['model']} ({meta.get('task', 'unknown task')})"
    if "preset" in state:
        return f"{kind} of {state['preset']}"
    return f"{kind} (keys: {', '.join(map(str, list(state)[:6]))})"


def check_resumable(state: dict[str, Any], path: str | os.PathLike, model: torch.nn.Module,
                    meta: dict[str, Any] | None = None, shapes: bool = True) -> None:
    """Refuse, with one :class:`DataError` naming ``path``, what it holds and what was expected, a checkpoint
    that is not a Trainer checkpoint of ``model`` (its ``facelearn`` block ``meta``): missing trainer keys, a
    different model name, or weights whose names or (when ``shapes``) shapes differ."""
    wanted = f"a Trainer checkpoint of {meta['model']}" if meta and meta.get("model") else "a Trainer checkpoint of this model"
    held = describe(state)
    if not all(k in state for k in TRAINER_KEYS) or not isinstance(state["model"], dict):
        raise DataError.at(path, None, f"holds {held}; expected {wanted} to resume")
    theirs = state.get("facelearn", {}).get("model") if isinstance(state.get("facelearn"), dict) else None
    if meta and meta.get("model") and theirs and theirs != meta["model"]:
        raise DataError.at(path, None, f"holds {held}; expected {wanted} to resume (use another --resume)")
    mine = model.state_dict()
    missing = [k for k in mine if k not in state["model"]]
    extra = [k for k in state["model"] if k not in mine]
    wrong = [k for k in mine if shapes and k in state["model"] and tuple(state["model"][k].shape) != tuple(mine[k].shape)]
    if missing or extra or wrong:
        detail = (f"weight {wrong[0]} has shape {tuple(state['model'][wrong[0]].shape)}, this model "
                  f"{tuple(mine[wrong[0]].shape)}" if wrong else
                  f"{len(missing)} weights missing (e.g. {missing[0]})" if missing else
                  f"{len(extra)} unknown weights (e.g. {extra[0]})")
        raise DataError.at(path, None, f"holds {held} of another model ({detail}); expected {wanted} to resume")


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
