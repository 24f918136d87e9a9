"""Convex-polygon scan conversion with sub-pixel vertices, compiled (book chapter "SynthFace").

SynthFace paints a face as hundreds of small triangles, far to near (the painter's algorithm). Each is filled
by OpenCV's rule for convex polygons with ``shift`` fractional bits, ``cv2.fillConvexPoly(img, polygon,
colour, cv2.LINE_8, shift)``:

* the outline: each edge drawn as an 8-connected line in 16.16 fixed point, clipped to the image first: one
  pixel per column (or per row, whichever the edge spans more of) from the rounded start, the other
  coordinate stepped by the slope truncated to 16 fractional bits, and the rounded end point;
* the inside: from the row of the top vertex (rows are vertex y rounded to whole pixels) a left and a right
  edge walk down, each starting at its upper vertex's exact x and stepping by its x change per row rounded
  to 16 fractional bits; each row is filled between the two edges' rounded x, up to the row above the bottom
  vertex (that row is the outline's).

:func:`paint_polygons` paints a face's triangles by this rule in compiled runs, with numba when it is
installed (``pip install "facelearn[fast]"``): from Python, one OpenCV call per triangle costs more than the
painting. Without numba it calls OpenCV once per polygon. Both paint the same bytes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from itertools import repeat

import cv2
import numpy as np

_FIXED = 16  # fractional bits of the outline's and the edges' fixed-point coordinates
_ONE = 1 << _FIXED
_HALF = _ONE >> 1
SHIFT = 4  #: fractional bits of the polygons' vertices
_UP = _FIXED - SHIFT
_SUB_HALF = (1 << SHIFT) >> 1  # a half pixel in the polygons' fixed point


def _trunc_div(a: int, b: int) -> int:
    """a / b rounded towards zero (C's integer division), for b ≠ 0 and |a| + |b| < 2^53 (the rule's are < 2^47).

    Computed in doubles, quicker than an integer division: a and b are exact, and the quotient rounded to the
    nearest double could only reach an integer k beyond a / b if |k − a/b| ≥ 1/|b| were within half a unit of
    k, which needs |k·b| ≥ 2^53; so truncating the rounded quotient truncates a / b."""
    return int(float(a) / float(b))


def _clip(right: int, bottom: int, x1: int, y1: int, x2: int, y2: int):
    """Cut the segment (x1, y1)–(x2, y2) to 0 ≤ x ≤ right, 0 ≤ y ≤ bottom (Cohen–Sutherland, the cut points
    rounded towards zero from double precision) → (inside?, x1, y1, x2, y2)."""
    c1 = (x1 < 0) + (x1 > right) * 2 + (y1 < 0) * 4 + (y1 > bottom) * 8
    c2 = (x2 < 0) + (x2 > right) * 2 + (y2 < 0) * 4 + (y2 > bottom) * 8
    if (c1 & c2) == 0 and (c1 | c2) != 0:
        if c1 & 12:
            a = 0 if c1 < 8 else bottom
            x1 += int(float(a - y1) * float(x2 - x1) / float(y2 - y1))
            y1 = a
            c1 = (x1 < 0) + (x1 > right) * 2
        if c2 & 12:
            a = 0 if c2 < 8 else bottom
            x2 += int(float(a - y2) * float(x2 - x1) / float(y2 - y1))
            y2 = a
            c2 = (x2 < 0) + (x2 > right) * 2
        if (c1 & c2) == 0 and (c1 | c2) != 0:
            if c1:
                a = 0 if c1 == 1 else right
                y1 += int(float(a - x1) * float(y2 - y1) / float(x2 - x1))
                x1 = a
                c1 = 0
            if c2:
                a = 0 if c2 == 1 else right
                y2 += int(float(a - x2) * float(y2 - y1) / float(x2 - x1))
                x2 = a
                c2 = 0
    return (c1 | c2) == 0, x1, y1, x2, y2


def _put(canvas, x: int, y: int, b: int, g: int, r: int) -> None:
    if 0 <= x < canvas.shape[1] and 0 <= y < canvas.shape[0]:
        canvas[y, x, 0] = b
        canvas[y, x, 1] = g
        canvas[y, x, 2] = r


def _segment(canvas, x1: int, y1: int, x2: int, y2: int, b: int, g: int, r: int) -> None:
    """An 8-connected line between two 16.16 fixed-point points: one pixel per column (or row, whichever
    the line spans more of), the other coordinate stepped by the truncated fixed-point slope."""
    inside, x1, y1, x2, y2 = _clip((canvas.shape[1] << _FIXED) - 1, (canvas.shape[0] << _FIXED) - 1, x1, y1, x2, y2)
    if not inside:
        return
    if abs(x2 - x1) > abs(y2 - y1):  # one pixel per column, left to right
        if x2 < x1:
            x1, y1, x2, y2 = x2, y2, x1, y1
        step = _trunc_div((y2 - y1) << _FIXED, (x2 - x1) | 1)
        count = (x2 - x1) >> _FIXED
        _put(canvas, (x2 + _HALF) >> _FIXED, (y2 + _HALF) >> _FIXED, b, g, r)
        x, y = (x1 + _HALF) >> _FIXED, y1 + _HALF
        for _ in range(count + 1):
            _put(canvas, x, y >> _FIXED, b, g, r)
            x += 1
            y += step
    else:  # one pixel per row, top to bottom
        if y2 < y1:
            x1, y1, x2, y2 = x2, y2, x1, y1
        step = _trunc_div((x2 - x1) << _FIXED, (y2 - y1) | 1)
        count = (y2 - y1) >> _FIXED
        _put(canvas, (x2 + _HALF) >> _FIXED, (y2 + _HALF) >> _FIXED, b, g, r)
        x, y = x1 + _HALF, (y1 + _HALF) >> _FIXED
        for _ in range(count + 1):
            _put(canvas, x >> _FIXED, y, b, g, r)
            x += step
            y += 1


def _step(vertex: int, turn: int, n: int) -> int:
    """(vertex + turn) mod n for 0 ≤ vertex, turn < n."""
    vertex += turn
    return vertex - n if vertex >= n else vertex


def _next_edge(polygons, t: int, vertex: int, turn: int, y: int, edges: int):
    """Walk round polygon t from ``vertex`` (``turn`` = 1 or K − 1 steps) to the first vertex whose rounded
    row is below row y, spending one of the ``edges`` left per vertex passed → (edges left, or −1 when none
    is, that vertex, its row, the edge's x at row y and its step per row, both 16.16 fixed point)."""
    n = polygons.shape[1]
    a, b = vertex, _step(vertex, turn, n)
    while edges > 0:
        edges -= 1
        row = (int(polygons[t, b, 1]) + _SUB_HALF) >> SHIFT
        if row > y:
            xa, xb = int(polygons[t, a, 0]) << _UP, int(polygons[t, b, 0]) << _UP
            return edges, b, row, xa, _trunc_div((xb - xa) * 2 + (row - y), 2 * (row - y))
        a, b = b, _step(b, turn, n)
    return -1, vertex, y, 0, 0


def _fill_convex(canvas, polygons, t: int, b: int, g: int, r: int) -> None:
    """Polygon t of ``polygons`` ((N, K, 2) int32 with :data:`SHIFT` fractional bits) by OpenCV's LINE_8 rule."""
    n = polygons.shape[1]
    height, width = canvas.shape[0], canvas.shape[1]
    top, x_lo, x_hi, y_hi = 0, int(polygons[t, 0, 0]), int(polygons[t, 0, 0]), int(polygons[t, 0, 1])
    for i in range(n):  # the outline, edge (i − 1, i); the bounds; the first of the topmost vertices
        j = i - 1 if i > 0 else n - 1
        x, y = int(polygons[t, i, 0]), int(polygons[t, i, 1])
        _segment(canvas, int(polygons[t, j, 0]) << _UP, int(polygons[t, j, 1]) << _UP, x << _UP, y << _UP, b, g, r)
        x_lo, x_hi, y_hi = min(x_lo, x), max(x_hi, x), max(y_hi, y)
        if y < polygons[t, top, 1]:
            top = i
    x_lo, x_hi = (x_lo + _SUB_HALF) >> SHIFT, (x_hi + _SUB_HALF) >> SHIFT
    y, y_hi = (int(polygons[t, top, 1]) + _SUB_HALF) >> SHIFT, (y_hi + _SUB_HALF) >> SHIFT
    if n < 3 or x_hi < 0 or y_hi < 0 or x_lo >= width or y >= height:
        return
    y_hi = min(y_hi, height - 1)
    # a left and a right edge walk down from the top vertex, one each way round; each fills the rows above
    # the row of its lower vertex, the rows through the bottom vertex are the outline's
    edges, va, vb, end_a, end_b, xa, xb, dxa, dxb = n, top, top, y, y, -_ONE, -_ONE, 0, 0
    while True:
        if y >= end_a:
            edges, va, end_a, xa, dxa = _next_edge(polygons, t, va, 1, y, edges)
        if y >= end_b and edges >= 0:
            edges, vb, end_b, xb, dxb = _next_edge(polygons, t, vb, n - 1, y, edges)
        if edges < 0:
            return
        if y >= 0:
            x1 = max((min(xa, xb) + _HALF) >> _FIXED, 0)
            x2 = min((max(xa, xb) + _HALF) >> _FIXED, width - 1)
            for x in range(x1, x2 + 1):
                canvas[y, x, 0] = b
                canvas[y, x, 1] = g
                canvas[y, x, 2] = r
        xa += dxa
        xb += dxb
        y += 1
        if y > y_hi:
            return


def _fill_run(canvas, polygons, colours, start: int, end: int) -> None:
    """Polygons start…end − 1 of ``polygons`` (N, K, 2) in order, polygon t in ``colours[t]``."""
    for t in range(start, end):
        _fill_convex(canvas, polygons, t, colours[t, 0], colours[t, 1], colours[t, 2])


_RULE = ("_trunc_div", "_clip", "_put", "_segment", "_step", "_next_edge", "_fill_convex", "_fill_run")
_UNSET = object()
_COMPILED = _UNSET


def _compiled() -> Callable | None:
    """The rule compiled by numba, ``(canvas, polygons, colours, start, end) → None``, or None without numba.
    numba is imported on first use (that takes ~0.2 s); its machine code is cached beside this file."""
    global _COMPILED
    if _COMPILED is _UNSET:
        try:
            from numba import njit
        except ImportError:
            _COMPILED = None
        else:  # each function of the rule becomes its compiled self, so that the others call it compiled
            for name in _RULE:  # the helpers inlined into the run; no division in the rule can be by zero
                inline = "never" if name == "_fill_run" else "always"
                globals()[name] = njit(cache=True, nogil=True, error_model="numpy", inline=inline)(globals()[name])
            _COMPILED = globals()["_fill_run"]
    return _COMPILED


class _Fixed(threading.local):
    """A per-thread buffer for the polygons in fixed point, and one (K, 2) view of each of its rows made once:
    OpenCV takes a view as it takes a fresh array, and making a face's ~700 views costs ~50 µs."""

    def __init__(self) -> None:
        self.array = np.zeros((0, 3, 2), np.int32)
        self.rows: list[np.ndarray] = []

    def take(self, shape: tuple) -> np.ndarray:
        if len(self.array) < shape[0] or self.array.shape[1:] != shape[1:]:
            self.array = np.zeros((max(shape[0], len(self.array)), *shape[1:]), np.int32)
            self.rows = list(self.array)
        return self.array[:shape[0]]


_BUFFER = _Fixed()


def paint_polygons(canvas: np.ndarray, polygons: np.ndarray, colours: np.ndarray, cuts: Sequence[int] = (),
                   between: Sequence[Callable[[], None]] = ()) -> None:
    """Fill ``polygons`` one after the other into ``canvas``, each exactly as ``cv2.fillConvexPoly(canvas,
    np.rint(polygon * 16).astype(np.int32), colour, cv2.LINE_8, shift=4)`` fills it; ``between[i]()`` draws
    something else just before polygon ``cuts[i]`` (the painter's algorithm with other shapes in depth order).

    canvas: (H, W, 3) uint8, modified in place; polygons: (N, K, 2) float x y in pixels, each convex;
    colours: (N, 3) uint8 in the canvas' channel order; cuts: ascending indices in 0…N.
    """
    if canvas.ndim != 3 or canvas.shape[2] != 3 or canvas.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 canvas, got {canvas.dtype} {canvas.shape}")
    fixed = _BUFFER.take(polygons.shape)
    np.rint(polygons * (1 << SHIFT), out=fixed, casting="unsafe")
    fill = _compiled()
    if fill is None:
        rows, fill_one = _BUFFER.rows, cv2.fillConvexPoly
        cols = list(zip(*colours.astype(np.float64).T.tolist()))  # whole levels as float tuples: OpenCV's quickest
    start = 0
    for end, draw in zip([*cuts, len(polygons)], [*between, None]):
        if fill is not None:
            fill(canvas, fixed, colours, start, end)
        else:
            deque(map(fill_one, repeat(canvas), rows[start:end], cols[start:end], repeat(cv2.LINE_8), repeat(SHIFT)),
                  maxlen=0)
        if draw is not None:
            draw()
        start = end
