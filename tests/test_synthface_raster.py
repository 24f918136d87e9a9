"""SynthFace's triangle fill (facelearn.data.synthface.raster) paints exactly what cv2.fillConvexPoly paints."""

import cv2
import numpy as np
import pytest

from facelearn.data.synthface import raster, render_identity_crop, render_landmark_photo, render_scene, sample_identity

#: the rule run compiled when numba is installed, else as the Python functions it is compiled from
FILL = raster._compiled() or raster._fill_run
N = 6000 if raster._compiled() else 600


def _polygons(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """(N, 3, 2) int32 triangles with 4 fractional bits of one kind, for a canvas of about ``size`` px."""
    s = 16 * size
    if kind == "anywhere":
        return rng.integers(-8 * 16, s + 8 * 16, (N, 3, 2))
    if kind == "tiny":
        return rng.integers(-32, s + 32, (N, 1, 2)) + rng.integers(-20, 21, (N, 3, 2))
    if kind == "thin":  # the third vertex on or next to the line through the first two
        a, d = rng.integers(-64, s + 64, (N, 1, 2)), rng.integers(-16 * 60, 16 * 60, (N, 1, 2))
        third = a + np.rint(rng.random((N, 1, 1)) * d).astype(np.int64) + rng.integers(-2, 3, (N, 1, 2))
        return np.concatenate([a, a + d, third], 1)
    if kind == "degenerate":  # two or three equal vertices, horizontal and vertical segments
        a = rng.integers(-40, s + 40, (N, 1, 2))
        b = a + rng.integers(-300, 300, (N, 1, 1)) * np.eye(2, dtype=np.int64)[rng.integers(0, 2, N)][:, None, :]
        return np.concatenate([a, b, np.where(rng.random((N, 1, 1)) < 0.5, a, b)], 1)
    if kind == "half-pixels":  # vertices on and next to the rounding ties of the rows and columns
        nudge = rng.integers(-1, 2, (N, 3, 2)) * (rng.random((N, 3, 1)) < 0.3)
        return 8 * rng.integers(-4, 2 * size + 4, (N, 3, 2)) + nudge
    if kind == "negative":  # mostly above and left of the canvas
        return rng.integers(-16 * 300, 16 * 40, (N, 3, 2))
    if kind == "huge":  # up to 2^16 px away, clipped
        return rng.integers(-2 ** 20, 2 ** 20, (N // 20, 3, 2))
    raise ValueError(kind)


KINDS = ["anywhere", "tiny", "thin", "degenerate", "half-pixels", "negative", "huge"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_triangle_is_the_pixels_opencv_fills(kind):
    rng = np.random.default_rng(KINDS.index(kind))
    colour = np.array([[7, 11, 13]], np.uint8)
    for size in (1, 5, 23, 40):
        h, w = size, max(1, size + int(rng.integers(-3, 4)))
        for poly in _polygons(rng, kind, size).astype(np.int32):
            want, got = np.zeros((h, w, 3), np.uint8), np.zeros((h, w, 3), np.uint8)
            cv2.fillConvexPoly(want, poly, (7, 11, 13), cv2.LINE_8, 4)
            FILL(got, poly[None], colour, 0, 1)
            assert np.array_equal(got, want), f"{kind} triangle {poly.tolist()} on a {h}x{w} canvas"


def test_convex_polygons_with_more_corners_and_either_winding():
    rng = np.random.default_rng(7)
    for k in range(N // 10):
        hull = cv2.convexHull(rng.integers(-64, 16 * 30 + 64, (int(rng.integers(4, 12)), 2)).astype(np.int32))[:, 0]
        if len(hull) < 3:
            continue
        poly = np.ascontiguousarray(hull[::1 if k % 2 else -1])
        want, got = np.zeros((30, 27, 3), np.uint8), np.zeros((30, 27, 3), np.uint8)
        cv2.fillConvexPoly(want, poly, (1, 2, 3), cv2.LINE_8, 4)
        FILL(got, poly[None], np.array([[1, 2, 3]], np.uint8), 0, 1)
        assert np.array_equal(got, want), poly.tolist()


def _opencv_painting(canvas, polygons, colours, cuts, between):
    fixed = np.rint(polygons * 16).astype(np.int32)
    start = 0
    for end, draw in zip([*cuts, len(polygons)], [*between, None]):
        for q, c in zip(fixed[start:end], colours[start:end].tolist()):
            cv2.fillConvexPoly(canvas, q, c, cv2.LINE_8, 4)
        if draw is not None:
            draw(canvas)
        start = end


def _runs_in_order(pure_opencv: bool, monkeypatch):
    if pure_opencv:
        monkeypatch.setattr(raster, "_compiled", lambda: None)
    rng = np.random.default_rng(3)
    polygons = rng.uniform(-5, 70, (400, 1, 2)) + rng.uniform(-6, 6, (400, 3, 2))  # overlapping, some off the canvas
    colours = rng.integers(0, 256, (400, 3)).astype(np.uint8)
    cuts = [0, 17, 17, 250, 400]
    between = [lambda c, i=i: cv2.circle(c, (10 * i, 30), 12, (255 - i, i, 9), -1) for i in range(len(cuts))]
    want, got = np.zeros((64, 60, 3), np.uint8), np.zeros((64, 60, 3), np.uint8)
    _opencv_painting(want, polygons, colours, cuts, between)
    raster.paint_polygons(got, polygons, colours, cuts, [lambda d=d: d(got) for d in between])
    return got, want


@pytest.mark.parametrize("pure_opencv", [False, True], ids=["default", "without-numba"])
def test_paint_polygons_paints_in_order_with_the_drawings_between(pure_opencv, monkeypatch):
    got, want = _runs_in_order(pure_opencv, monkeypatch)
    assert np.array_equal(got, want)


def _renders():
    """Bytes of a few crops (three sizes), scenes and landmark photos."""
    out = []
    for i in range(6):
        rng = np.random.default_rng([31, i])
        out.append(render_identity_crop(rng, sample_identity(rng), (112, 64, 40)[i % 3], nuisance=1.5)[0].tobytes())
    for i in range(2):
        img, faces = render_scene(np.random.default_rng([31, 50 + i]), 480, 360)
        out.append(img.tobytes() + b"".join(f.render.landmarks98.tobytes() for f in faces))
        out.append(render_landmark_photo(np.random.default_rng([31, 60 + i])).image.tobytes())
    return out


def test_the_compiled_fill_and_opencv_render_the_same_bytes(monkeypatch):
    pytest.importorskip("numba")
    compiled = _renders()
    monkeypatch.setattr(raster, "_compiled", lambda: None)
    assert _renders() == compiled


@pytest.mark.parametrize("canvas", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8),
                                    np.zeros((8, 8, 3), np.float32)])
def test_paint_polygons_refuses_a_canvas_that_is_not_h_w_3_uint8(canvas):
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 canvas, got"):
        raster.paint_polygons(canvas, np.zeros((1, 3, 2)), np.zeros((1, 3), np.uint8))


def test_the_truncating_division_in_doubles_is_cs_integer_division():
    """_trunc_div divides in doubles; for the rule's operands (|a| < 2^47) it truncates as C does, also one off
    an exact multiple of b, where a quotient rounded to the nearest double could land on the wrong integer."""
    rng = np.random.default_rng(11)
    for i in range(4000):
        d = int(rng.integers(1, 2 ** 29 if i % 2 else 64)) * int(rng.choice([-1, 1]))
        k = int(rng.integers(-(2 ** 47), 2 ** 47)) // abs(d)
        for a in (k * d - 1, k * d, k * d + 1, int(rng.integers(-(2 ** 47), 2 ** 47))):
            want = abs(a) // abs(d) * (1 if (a >= 0) == (d > 0) else -1)
            assert raster._trunc_div(a, d) == want, (a, d)
