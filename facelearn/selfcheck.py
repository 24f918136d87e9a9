"""Self-check helpers for the exercises (every chapter's Exercises section).

A reader's answer is compared with the library's own computation; the helper prints a verdict and a
hint instead of revealing the answer, and returns whether it passed so a test can call it too. An answer
left as ``None`` or ``...`` (the stubs of the student notebooks) fails without an error.

When the environment variable ``FACELEARN_SELFCHECK_LOG`` names a file, every verdict is also appended
to it as one JSON line ``{"name": …, "passed": …}``: the autograder (``facelearn grade``) reads it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import numpy as np
import torch


LOG_VARIABLE = "FACELEARN_SELFCHECK_LOG"


def _verdict(name: str, passed: bool, message: str) -> bool:
    """Print ``message``, append the verdict to the autograder's log when one is set, return ``passed``."""
    print(message)
    log = os.environ.get(LOG_VARIABLE)
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"name": name, "passed": passed}) + "\n")
    return passed


def _missing(x: Any) -> bool:
    return x is None or x is Ellipsis


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def check(answer: Any, expected: Any, *, name: str, rtol: float = 1e-4, atol: float = 1e-6, hint: str = "") -> bool:
    """Compare ``answer`` with ``expected`` (numbers, arrays or tensors); print ✓ or ✗ with a hint."""
    if _missing(answer):
        return _verdict(name, False, f"✗ {name}: no answer yet; replace the ... (or None) with yours.")
    try:
        a = _as_array(answer)
    except (TypeError, ValueError) as err:
        return _verdict(name, False, f"✗ {name}: the answer is not a number or array ({err}). {hint}".rstrip())
    e = _as_array(expected)
    if a.shape != e.shape:
        return _verdict(name, False, f"✗ {name}: expected shape {e.shape}, got {a.shape}. {hint}".rstrip())
    if np.allclose(a, e, rtol=rtol, atol=atol, equal_nan=False):
        return _verdict(name, True, f"✓ {name}: correct.")
    worst = float(np.max(np.abs(a - e))) if a.size else 0.0
    return _verdict(name, False, f"✗ {name}: not yet (largest difference {worst:.3g}). {hint}".rstrip())


def check_function(candidate: Callable[..., Any], reference: Callable[..., Any], cases: list[tuple], *, name: str,
                   rtol: float = 1e-4, atol: float = 1e-6, hint: str = "") -> bool:
    """Call ``candidate`` and ``reference`` on each argument tuple in ``cases`` and compare the results."""
    for args in cases:
        try:
            got = candidate(*args)
        except Exception as err:  # a reader's function may fail in any way; say how, don't crash the page
            return _verdict(name, False, f"✗ {name}: raised {type(err).__name__}: {err}")
        if _missing(got):
            return _verdict(name, False, f"✗ {name}: the function returned {got!r}; fill in its body.")
        want = reference(*args)
        try:
            a = _as_array(got)
        except (TypeError, ValueError) as err:
            return _verdict(name, False, f"✗ {name}: the result is not a number or array ({err}). {hint}".rstrip())
        e = _as_array(want)
        if a.shape != e.shape or not np.allclose(a, e, rtol=rtol, atol=atol):
            shown = ", ".join(repr(x) if not isinstance(x, (np.ndarray, torch.Tensor)) else f"<{tuple(x.shape)}>" for x in args)
            return _verdict(name, False, f"✗ {name}: wrong result for arguments ({shown}). {hint}".rstrip())
    return _verdict(name, True, f"✓ {name}: correct on all {len(cases)} cases.")
