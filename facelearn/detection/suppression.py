"""Greedy non-maximum suppression (book chapter "Training and evaluating RetinaFace"), torchvision's result
found by looking only where a box can overlap.

Greedy NMS visits the boxes best score first and keeps each one no kept box overlaps by more than the IoU
threshold t. torchvision's CPU kernel compares every kept box with every later box: with a detector's ~3,000
candidates at the evaluation threshold 0.02 and ~700 survivors, two million IoUs, most of boxes far apart.
For t ≥ 0 a box can only suppress one that it intersects with positive area (otherwise the IoU is 0), so
:func:`greedy_nms` files every box in the cells of an 8 × 8 grid over the boxes' extent that it covers, and
compares a kept box only with the later boxes in its own cells — the same comparisons that can succeed,
computed by torchvision's float32 formula in its order, so the kept indices are torchvision's, element for
element (``tests/test_detection_suppression.py``). It is compiled by numba (``pip install
"facelearn[fast]"``); without numba, for boxes on a GPU, for non-finite boxes or a negative threshold it is
``torchvision.ops.nms`` itself.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torchvision.ops import nms

#: Cells along each side of the grid the boxes are filed in.
GRID = 8


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS, equal to ``torchvision.ops.nms(boxes, scores, iou_threshold)``.

    boxes: (N, 4) float x1 y1 x2 y2; scores: (N,) → (K,) long indices of the kept boxes, scores descending
    (ties in the order of a stable sort, as torchvision's). Boxes overlap by (min x2 − max x1)₊ · (min y2 −
    max y1)₊ over the sum of the areas (x2 − x1)(y2 − y1) less that; a box is suppressed when that IoU with a
    kept, better box exceeds ``iou_threshold``.
    """
    run = _compiled()
    if run is None or boxes.device.type != "cpu" or len(boxes) == 0 or not iou_threshold >= 0 \
            or boxes.dtype not in (torch.float32, torch.float64) or not bool(torch.isfinite(boxes).all()):
        return nms(boxes, scores, iou_threshold)
    order = scores.sort(stable=True, descending=True)[1]
    x1, y1, x2, y2 = (boxes[:, k].contiguous() for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    keep = run(x1.numpy(), y1.numpy(), x2.numpy(), y2.numpy(), areas.numpy(), order.numpy(),
               float(iou_threshold), GRID)
    return torch.from_numpy(keep)


def _cells(lo: float, hi: float, start: float, side: float, count: int) -> tuple[int, int]:
    """The first and last of ``count`` cells of width ``side`` from ``start`` that [lo, hi] touches."""
    return min(int((lo - start) / side), count - 1), min(int((hi - start) / side), count - 1)


def _suppress(x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, areas: np.ndarray,
              order: np.ndarray, threshold: float, grid: int) -> np.ndarray:
    """The kept boxes' indices (K,) int64, in visiting order. x1 … areas: (N,) finite, one float dtype;
    order: (N,) int64, the visiting order (best first); threshold ≥ 0; grid: cells per side."""
    n = order.shape[0]
    left, top = x1.min(), y1.min()
    width = max((x2.max() - left) / grid, 1e-30)
    height = max((y2.max() - top) / grid, 1e-30)
    c0 = np.ones(n, np.int64)  # each box's columns c0…c1 and rows r0…r1; none for a box of no area
    c1 = np.zeros(n, np.int64)
    r0 = np.ones(n, np.int64)
    r1 = np.zeros(n, np.int64)
    starts = np.zeros(grid * grid + 1, np.int64)
    for b in range(n):
        if x2[b] > x1[b] and y2[b] > y1[b]:  # a box of no area intersects nothing with positive area
            c0[b], c1[b] = _cells(x1[b], x2[b], left, width, grid)
            r0[b], r1[b] = _cells(y1[b], y2[b], top, height, grid)
            for r in range(r0[b], r1[b] + 1):
                for c in range(c0[b], c1[b] + 1):
                    starts[r * grid + c + 1] += 1
    for cell in range(grid * grid):
        starts[cell + 1] += starts[cell]
    filled = starts[:-1].copy()
    members = np.empty(starts[-1], np.int64)  # each cell's boxes by their place in the visiting order
    for k in range(n):
        b = order[k]
        for r in range(r0[b], r1[b] + 1):
            for c in range(c0[b], c1[b] + 1):
                members[filled[r * grid + c]] = k
                filled[r * grid + c] += 1
    zero = x1[0] - x1[0]  # 0 in the boxes' dtype
    suppressed = np.zeros(n, np.bool_)
    keep = np.empty(n, np.int64)
    kept = 0
    for k in range(n):
        i = order[k]
        if suppressed[i]:
            continue
        keep[kept] = i
        kept += 1
        ix1, iy1, ix2, iy2, iarea = x1[i], y1[i], x2[i], y2[i], areas[i]
        for r in range(r0[i], r1[i] + 1):
            for c in range(c0[i], c1[i] + 1):
                cell = r * grid + c
                first = starts[cell] + np.searchsorted(members[starts[cell]:starts[cell + 1]], k, side="right")
                for m in range(first, starts[cell + 1]):
                    j = order[members[m]]
                    if suppressed[j]:
                        continue
                    # torchvision's expression and operand order, in the boxes' dtype (std::max/min's ties)
                    xx1 = x1[j] if ix1 < x1[j] else ix1
                    yy1 = y1[j] if iy1 < y1[j] else iy1
                    xx2 = x2[j] if x2[j] < ix2 else ix2
                    yy2 = y2[j] if y2[j] < iy2 else iy2
                    w = xx2 - xx1
                    h = yy2 - yy1
                    inter = (w if zero < w else zero) * (h if zero < h else zero)
                    if float(inter / (iarea + areas[j] - inter)) > threshold:  # compared in doubles
                        suppressed[j] = True
    return keep[:kept]


_UNSET = object()
_COMPILED: object = _UNSET


def _compiled() -> Callable | None:
    """:func:`_suppress` compiled by numba (imported on first use, machine code cached beside this file), or
    None without numba."""
    global _COMPILED
    if _COMPILED is _UNSET:
        try:
            from numba import njit
        except ImportError:
            _COMPILED = None
        else:
            global _cells
            _cells = njit(cache=True, inline="always")(_cells)
            _COMPILED = njit(cache=True, nogil=True, error_model="numpy")(_suppress)
    return _COMPILED  # type: ignore[return-value]

