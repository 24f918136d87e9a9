"""Where and how facelearn runs: device, seeds, profile, folders (book: "How to run it").

Nothing here is read at import time; each function looks at the environment when it is called, so a
notebook's parameters cell can change ``FACELEARN_PROFILE`` or pass its own values.
"""

from __future__ import annotations

import os
import platform
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

PROFILES = ("quick", "full")


def profile(name: str | None = None) -> str:
    """The run profile: ``name`` if given, else ``$FACELEARN_PROFILE``, else ``"quick"``.

    ``quick`` trains CPU-sized models on SynthFace in minutes; ``full`` follows the paper's recipe on the
    real data set and is meant for a GPU. Nothing else differs between the two.
    """
    chosen = name or os.environ.get("FACELEARN_PROFILE") or "quick"
    if chosen not in PROFILES:
        raise ValueError(f"unknown profile {chosen!r}: expected one of {', '.join(PROFILES)}")
    return chosen


def device(name: str | None = None) -> torch.device:
    """The device to compute on: ``name`` or ``$FACELEARN_DEVICE`` if given, else CUDA, then MPS, then CPU."""
    chosen = name or os.environ.get("FACELEARN_DEVICE")
    if chosen:
        source = "requested" if name else "in $FACELEARN_DEVICE"
        try:
            dev = torch.device(chosen)
        except RuntimeError:
            raise ValueError(f"device {chosen!r} {source} is not one facelearn runs on: expected cpu, cuda, "
                             "cuda:N or mps") from None
        if dev.type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"device {chosen!r} {source} is not one facelearn runs on: expected cpu, cuda, cuda:N or mps")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {chosen!r} requested but CUDA is not available")
        if dev.type == "mps" and not _mps_available():
            raise ValueError(f"device {chosen!r} requested but MPS is not available")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def amp_dtype(dev: torch.device) -> torch.dtype | None:
    """The autocast dtype for mixed precision on ``dev``: bf16 or fp16 on CUDA, ``None`` (fp32) elsewhere."""
    if dev.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def home() -> Path:
    """The root of facelearn's folders: ``$FACELEARN_HOME``, else ``$XDG_CACHE_HOME/facelearn``,
    else ``~/.cache/facelearn``. Created on first use."""
    root = os.environ.get("FACELEARN_HOME")
    if root:
        path = Path(root).expanduser()
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(cache).expanduser() / "facelearn"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Where data sets live (downloaded real ones and SynthFace exports): ``home()/data``."""
    path = home() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Where derived files live (checkpoints of the reader's runs, cached features): ``home()/cache``."""
    path = home() / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def info() -> dict[str, Any]:
    """Versions, device, profile and folders, as printed by ``facelearn info``."""
    import torchvision

    from facelearn import __version__

    dev = device()
    return {
        "facelearn": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "device": str(dev),
        "amp_dtype": str(amp_dtype(dev)).replace("torch.", "") if amp_dtype(dev) else "none",
        "threads": torch.get_num_threads(),
        "profile": profile(),
        "home": str(home()),
        "data_dir": str(data_dir()),
        "cache_dir": str(cache_dir()),
    }


def gpu_training_record(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Training speeds that ``benchmarks/gpu_training.py`` measured on one NVIDIA H200, shipped with the package
    (``facelearn/records/gpu_training_h200.json``; the cost sections of the training chapters read it), or the
    record that script wrote at ``path``.

    Keys: ``device``, ``torch``, ``date``, ``steps`` (timed per line) and ``recipes``: per recipe its ``batch``,
    ``amp`` and ``fp32`` (``ms_per_step``, ``images_per_s``, ``peak_gib``), ``recipe_steps`` (epochs × ⌈training
    set / batch⌉; the loaders drop the last partial batch, one step per epoch fewer), ``recipe_hours`` (with AMP,
    one GPU) and ``loader_samples_per_s`` (augmented samples per second with 1 and 4 workers); newer records
    also say per recipe where, when and on what it was ``measured``. A record that lacks one of these, or whose
    figures are not positive numbers, is refused with a ``ValueError`` naming the file and the entry.
    """
    import json

    source = Path(path) if path is not None else Path(__file__).parent / "records" / "gpu_training_h200.json"
    try:
        record = json.loads(source.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}:{err.lineno}: not a JSON record ({err.msg})") from None
    _check_gpu_record(record, source)
    return record


def _check_gpu_record(record: Any, source: Path) -> None:
    """Raise ``ValueError`` at the first entry of ``record`` that :func:`gpu_training_record` promises and lacks."""
    def positive(value: Any, where: str, optional: bool = False) -> None:
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
            raise ValueError(f"{source}: {where} must be a positive number, got {value!r}")

    def entry(table: Any, key: str, where: str) -> Any:
        if not isinstance(table, dict) or key not in table:
            raise ValueError(f"{source}: {where} has no {key!r}")
        return table[key]

    for key in ("device", "torch", "date"):
        if not isinstance(entry(record, key, "the record"), str):
            raise ValueError(f"{source}: {key!r} must be a string, got {record[key]!r}")
    positive(entry(record, "steps", "the record"), "'steps'")
    recipes = entry(record, "recipes", "the record")
    if not isinstance(recipes, dict):
        raise ValueError(f"{source}: 'recipes' must map recipe names to their figures")
    for name, line in recipes.items():
        where = f"recipes[{name!r}]"
        positive(entry(line, "batch", where), f"{where}['batch']")
        for precision in ("amp", "fp32"):
            figures = entry(line, precision, where)
            for key in ("ms_per_step", "images_per_s"):
                positive(entry(figures, key, f"{where}[{precision!r}]"), f"{where}[{precision!r}][{key!r}]")
            positive(entry(figures, "peak_gib", f"{where}[{precision!r}]"), f"{where}[{precision!r}]['peak_gib']",
                     optional=True)  # measured on CUDA only
        positive(entry(line, "recipe_steps", where), f"{where}['recipe_steps']")
        positive(entry(line, "recipe_hours", where), f"{where}['recipe_hours']")
        rates = entry(line, "loader_samples_per_s", where)
        if not isinstance(rates, dict):
            raise ValueError(f"{source}: {where}['loader_samples_per_s'] must map worker counts to rates")
        for workers, rate in rates.items():
            positive(rate, f"{where}['loader_samples_per_s'][{workers!r}]")
