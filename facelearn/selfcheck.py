"""Self-check helpers for the exercises (every chapter's Exercises section).

A reader's answer is compared with the library's own computation; the helper prints a verdict and a
hint instead of revealing the answer, and returns whether it passed so a test can call it too.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def check(answer: Any, expected: Any, *, name: str, rtol: float = 1e-4, atol: float = 1e-6, hint: str = "") -> bool:
    """Compare ``answer`` with ``expected`` (numbers, arrays or tensors); print ✓ or ✗ with a hint."""
    a, e = _as_array(answer), _as_array(expected)
    if a.shape != e.shape:
        print(f"✗ {name}: expected shape {e.shape}, got {a.shape}. {hint}".rstrip())
        return False
    if np.allclose(a, e, rtol=rtol, atol=atol, equal_nan=False):
        print(f"✓ {name}: correct.")
        return True
    worst = float(np.max(np.abs(a - e))) if a.size else 0.0
    print(f"✗ {name}: not yet (largest difference {worst:.3g}). {hint}".rstrip())
    return False


def check_function(candidate: Callable[..., Any], reference: Callable[..., Any], cases: list[tuple], *, name: str,
                   rtol: float = 1e-4, atol: float = 1e-6, hint: str = "") -> bool:
    """Call ``candidate`` and ``reference`` on each argument tuple in ``cases`` and compare the results."""
    for args in cases:
        try:
            got = candidate(*args)
        except Exception as err:  # a reader's function may fail in any way; say how, don't crash the page
            print(f"✗ {name}: raised {type(err).__name__}: {err}")
            return False
        if got is None:
            print(f"✗ {name}: the function returned None; fill in its body.")
            return False
        want = reference(*args)
        a, e = _as_array(got), _as_array(want)
        if a.shape != e.shape or not np.allclose(a, e, rtol=rtol, atol=atol):
            shown = ", ".join(repr(x) if not isinstance(x, (np.ndarray, torch.Tensor)) else f"<{tuple(x.shape)}>" for x in args)
            print(f"✗ {name}: wrong result for arguments ({shown}). {hint}".rstrip())
            return False
    print(f"✓ {name}: correct on all {len(cases)} cases.")
    return True
