"""Argument types of the ``facelearn`` command (book: "How to run it").

Every option of every subcommand is parsed by one of these, so a mistyped value stops the command before
any work with one line naming the option (``argument --epochs: must be an integer >= 1, got '-1'``) and
exit status 2, instead of a model trained for no epochs or a traceback deep inside OpenCV.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable


def int_at_least(low: int) -> Callable[[str], int]:
    """The type of an integer option ≥ ``low``."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return value

    check.__name__ = f"int_at_least_{low}"
    return check


#: An integer ≥ 1 (epochs, sizes, counts); ≥ 0 (seeds).
positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def _real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, scales)."""
    value = _real(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number ≥ 0 (margins)."""
    value = _real(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1] (score thresholds, IoU thresholds)."""
    value = _real(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number in (0, 1] (a sampling rate)."""
    value = _real(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return value


def _existing(kind: str, test: Callable[[Path], bool]) -> Callable[[str], str]:
    def check(text: str) -> str:
        if not test(Path(text)):
            raise argparse.ArgumentTypeError(f"no such {kind}: {text!r}")
        return text

    check.__name__ = f"existing_{kind}"
    check.__doc__ = f"The path of an existing {kind} (returned as given)."
    return check


existing_file = _existing("file", Path.is_file)
existing_dir = _existing("folder", Path.is_dir)
existing_path = _existing("file or folder", Path.exists)


def device_name(text: str) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps``; availability is checked when the device is chosen."""
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda, cuda:N or mps, got {text!r}")
    return text
