"""The benchmarks keep the implementations they replaced as their baselines; the tests that check a
baseline computes what the library computes load them from here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def benchmark(name: str) -> ModuleType:
    """benchmarks/<name>.py as a module (the folder is not a package), registered in ``sys.modules`` before it
    runs, as a dataclass in it looks its module up there."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
