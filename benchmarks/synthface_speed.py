"""SynthFace rendering speed per core (one thread): aligned 112×112 identity crops/s and 640×640 detection
scenes/s, each against the previous implementation measured in the same run, and where the time goes.
Goal: ≥ 1,000 crops/s and ≥ 50 scenes/s per core.

    .venv/bin/python benchmarks/synthface_speed.py [--crops 200] [--scenes 20] [--repeats 5] [--workers 2]

The previous renderer (each triangle filled by its own ``cv2.fillConvexPoly`` call, before the compiled fill
of :mod:`facelearn.data.synthface.raster`; row gathers by fancy indexing, np.mean, np.linalg.det and the
alignment's SVD bookkeeping as they were) is kept below as reference functions; :func:`previous_renderer` swaps
them into the SynthFace modules and the alignment. Every item (a seeded crop or scene) is rendered by both,
interleaved, and their bytes are compared. A rate is the number of items over the sum, item by item, of the
smallest CPU time of this process over the repeats: on a shared, loaded machine the minimum approximates an
idle core far better than wall time or a mean; the median rate is printed beside it. The bare fills of a
crop's triangles (one ``cv2.fillConvexPoly`` call each, and
:func:`~facelearn.data.synthface.raster.paint_polygons`, nothing else) are the floors of the two ways of
painting them; whether numba compiled the fill is printed. With ``--workers N`` it also times the identity
and WIDER exports (JPEG files included) with N worker processes against one, alternating, and prints the
speed-up (bounded by the free cores).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import threading
import time
from collections import deque
from contextlib import contextmanager, nullcontext
from itertools import repeat

import cv2
import numpy as np

from facelearn.data import alignment as _alignment
from facelearn.data.synthface import (TOPOLOGY, Expression, export_identities, export_widerface, render_identity_crop,
                                      render_scene, sample_identity)
from facelearn.data.synthface import raster as _raster
from facelearn.data.synthface import render as _render
from facelearn.data.synthface import samplers as _samplers
from facelearn.data.synthface import scenes as _scenes

STAGES = {
    "painter's loop with the triangle fills": ("draw_face", "paint_polygons", "_fill_run"),
    "facial features (eyes, brows, lips, ears, glasses)": ("_features", "draw", "mouth", "nostrils", "_ear",
                                                          "draw_glasses", "<lambda>"),
    "geometry (eq. 1 shape, pose, projection, shading)": ("face_vertices", "_identity_part", "project", "_project",
                                                          "_shade", "hair_mask", "_look", "_triangle_albedo",
                                                          "rotation"),
    "self-occlusion test": ("_occluded",),
    "background and clutter": ("background",),
    "occluders, blur, noise (finish)": ("draw_occluder", "blur_roi", "finish", "GaussianBlur", "covered_fraction",
                                        "randn", "cvtColor", "add", "convertScaleAbs"),
    "alignment warp": ("align_face", "warpAffine", "similarity_transform"),
    "sampling parameters": ("sample_identity", "sample_expression", "sample_pose", "sample_light",
                            "sample_scene_layout"),
}


# --- the previous implementation (reference for the ratio; same bytes) ----------------------------------

class _PolygonsBefore(threading.local):
    def __init__(self) -> None:
        self.buffer = np.zeros((len(TOPOLOGY.triangles), 3, 2), np.int32)
        self.views = list(self.buffer)


_POLYGONS_BEFORE = _PolygonsBefore()


def _draw_face_before(canvas, identity, expression, pose, centre, height, *, light=None, ambient=0.45, clothes=None,
                      visibility="all"):
    look = _render._look(identity)
    pts, cam, box = _render._project(identity, expression, pose, centre, height, 80.0, look.grow)
    tri = TOPOLOGY.triangles if height >= 48 else TOPOLOGY.coarse_triangles
    light = np.array([0.3, -0.4, -1.0]) if light is None else np.asarray(light, dtype=np.float64)
    light = light / _render._norm(light)
    if clothes is not None:
        _render._draw_body(canvas, pts, cam, pose, height, identity, clothes)
    p = pts[tri]
    front = ((p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 1, 1] - p[:, 0, 1]) * (p[:, 2, 0] - p[:, 0, 0])) > 0
    shown = tri[front]  # only the front-facing triangles are shaded and drawn
    intensity, depth = _render._shade(cam, shown, light, ambient)
    tri_col = _render._triangle_albedo(look, tri)[front] * intensity[:, None]
    k = float(ambient + (1 - ambient) * max(0.0, -light[2]) * 0.9)
    items = _render._features(canvas, identity, pts, cam, k, height / 16.3)
    ear_colour, face_centre = _render._colour(identity.skin * 0.85, k), pts[:98].mean(0)
    items += [_render._ear(canvas, cam, pts, side, ear_colour, face_centre) for side in (-1, 1)]
    order = np.argsort(-np.concatenate([depth, [d for d, _ in items]]), kind="stable")  # far to near
    n_tri = len(shown)
    is_tri = order < n_tri
    tri_order = order[is_tri]
    buffers = _POLYGONS_BEFORE
    np.rint(p[np.flatnonzero(front)[tri_order]] * _render._ONE, out=buffers.buffer[:n_tri], casting="unsafe")  # _poly
    polys = buffers.views
    bgr = np.clip(tri_col[tri_order][:, ::-1], 0, 255).astype(np.int32).astype(np.float64)
    cols = list(zip(*bgr.T.tolist()))  # whole grey levels as tuples of floats: OpenCV's quickest colour argument
    # the features go between runs of triangles: run r is the triangles painted before the r-th feature
    ends = np.flatnonzero(~is_tri) - np.arange(len(items))
    fill, line8 = cv2.fillConvexPoly, cv2.LINE_8
    start = 0
    for end, item in zip([*ends.tolist(), n_tri], [*order[~is_tri].tolist(), None]):
        deque(map(fill, repeat(canvas), polys[start:end], cols[start:end], repeat(line8), repeat(4)), maxlen=0)
        if item is not None:
            items[item - n_tri][1]()
        start = end
    lm = pts[:98].copy()
    vis = np.ones(98, bool)
    if visibility != "none":
        query = np.arange(98) if visibility == "all" else TOPOLOGY.five
        vis[query] = ~_render._occluded(pts, cam, tri, front, query)
    return _render.FaceRender(lm, vis, box, pts, cam[:, 2])



def _project_before(identity, expression, pose, centre, height, distance, grow):
    v = _render.face_vertices(identity, expression)
    r = np.hypot(v[:, 0], v[:, 2] + 0.5) + 1e-6
    v[:, 0] += grow * v[:, 0] / r
    v[:, 2] += grow * (v[:, 2] + 0.5) / r
    v[:, 1] -= grow * 0.6 * (v[:, 1] < -9)
    cam = v @ _render.rotation(*pose).T
    cam[:, 2] += distance
    proj = cam[:, :2] / cam[:, 2:3]
    bp = proj[_render._BOX_VERTS]
    lo, hi = bp.min(0), bp.max(0)
    scale = height / max(hi[1] - lo[1], 1e-9)
    pts = (proj - (lo + hi) / 2) * scale + np.asarray(centre, dtype=np.float64)
    bp = pts[_render._BOX_VERTS]
    return pts, cam, np.concatenate([bp.min(0), bp.max(0)])


def _shade_before(cam, tri, light, ambient):
    corners = cam[tri]
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    u, v = (b - a).T, (c - a).T
    n = np.stack([u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]], axis=1)
    n /= np.sqrt(n[:, 0] * n[:, 0] + n[:, 1] * n[:, 1] + n[:, 2] * n[:, 2])[:, None] + 1e-12
    n *= -np.sign(n[:, 2:3] + 1e-12)
    return ambient + (1 - ambient) * np.clip(n @ light, 0, 1), (a[:, 2] + b[:, 2] + c[:, 2]) / 3


def _occluded_before(pts, cam, tri, front, query):
    t = tri[front]
    a, b, c = pts[t[:, 0]], pts[t[:, 1]], pts[t[:, 2]]
    q = pts[query][:, None, :]
    v0, v1, v2 = b - a, c - a, q - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    den = np.where(np.abs(den) < 1e-9, np.inf, den)
    u = (v2[..., 0] * v1[:, 1] - v1[:, 0] * v2[..., 1]) / den
    w = (v0[:, 0] * v2[..., 1] - v2[..., 0] * v0[:, 1]) / den
    inside = (u >= 0) & (w >= 0) & (u + w <= 1)
    zt = cam[t[:, 0], 2] + u * (cam[t[:, 1], 2] - cam[t[:, 0], 2]) + w * (cam[t[:, 2], 2] - cam[t[:, 0], 2])
    own = (t[None, :, :] == query[:, None, None]).any(-1)
    return (inside & ~own & (zt < cam[query, 2][:, None] - 0.25)).any(1)


def _colour_before(rgb, k: float = 1.0) -> tuple:
    r, g, b = rgb
    b, g, r = int(float(b) * k), int(float(g) * k), int(float(r) * k)
    return (min(255, max(0, b)), min(255, max(0, g)), min(255, max(0, r)))


def _ear_before(canvas, cam, pts, side, colour, face_centre):
    idx = _render._EAR[side]
    centre = pts[idx].mean(0)
    low, high = _render._EAR_ENDS[side]
    axis = pts[low] - pts[high]
    h = max(_render._norm(axis), 1.0)
    along = axis / h
    outward = centre - face_centre
    outward -= along * (outward @ along)
    outward = outward / (_render._norm(outward) + 1e-9)
    oval = (centre + outward * 0.12 * h + _render._COS9[:, None] * (outward * 0.22 * h)
            + _render._SIN9[:, None] * (along * 0.45 * h))
    return cam[idx, 2].mean() + 0.8, lambda: cv2.fillConvexPoly(canvas, _render._poly(oval), colour, cv2.LINE_8, 4)


def _similarity_transform_before(src, dst):
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"expected two (K, 2) point sets with K >= 2, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    var_s = (s_c**2).sum() / len(src)
    if var_s == 0:
        raise ValueError("the source points coincide; no similarity transform is defined")
    cov = d_c.T @ s_c / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1.0
    rot = u @ d @ vt
    scale = np.trace(np.diag(sig) @ d) / var_s
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]])

_PREVIOUS = {  # module → {name: previous implementation}
    _render: {"draw_face": _draw_face_before, "_colour": _colour_before, "_ear": _ear_before,
              "_project": _project_before, "_shade": _shade_before, "_occluded": _occluded_before},
    _alignment: {"similarity_transform": _similarity_transform_before},
    _scenes: {"draw_face": _draw_face_before},
    _samplers: {"draw_face": _draw_face_before},
}


@contextmanager
def previous_renderer():
    """Inside the block, SynthFace renders with the previous implementation."""
    saved = {mod: {name: getattr(mod, name) for name in names} for mod, names in _PREVIOUS.items()}
    try:
        for mod, names in _PREVIOUS.items():
            for name, fn in names.items():
                setattr(mod, name, fn)
        yield
    finally:
        for mod, names in saved.items():
            for name, fn in names.items():
                setattr(mod, name, fn)


# --- measurement -------------------------------------------------------------------------------------------

def _digest(out) -> bytes:
    """The bytes of a crop (image, parameters) or a scene (image, faces' landmarks, boxes, visibility)."""
    img, extra = out
    if isinstance(extra, dict):
        return img.tobytes() + repr(sorted(extra.items())).encode()
    return img.tobytes() + b"".join(np.concatenate([f.render.landmarks98.ravel(), f.render.box,
                                                     f.render.visible98]).tobytes() for f in extra)


def interleaved(item, n: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Render items 0…n−1 with the previous and the current implementation, alternating which goes first,
    ``repeats`` times; check their bytes agree. → {implementation: (rate from per-item minima, median rate)}."""
    times = {"previous": [[] for _ in range(n)], "now": [[] for _ in range(n)]}
    clock = time.process_time
    for r in range(repeats):
        for i in range(n):
            outs = {}
            for which in (("previous", "now") if (i + r) % 2 == 0 else ("now", "previous")):
                with previous_renderer() if which == "previous" else nullcontext():
                    t = clock()
                    outs[which] = item(i)
                    times[which][i].append(clock() - t)
            if _digest(outs["previous"]) != _digest(outs["now"]):
                raise AssertionError(f"item {i}: the current renderer's bytes differ from the previous one's")
    return {w: (n / sum(min(ts) for ts in per), n / sum(statistics.median(ts) for ts in per)) for w, per in times.items()}


def stage_breakdown(fn, n: int) -> list[tuple[str, float]]:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        fn()
    prof.disable()
    stats = pstats.Stats(prof).stats
    total = sum(v[2] for v in stats.values())  # all own time
    rows = []
    for stage, names in STAGES.items():
        own = sum(v[2] for (file, line, name), v in stats.items()
                  if name in names or (name.startswith("<") and any(name.strip("<>").split(".")[-1].split(" ")[-1] == nm for nm in names)))
        rows.append((stage, own / total))
    rows.append(("everything else (numpy and Python overhead)", 1 - sum(r[1] for r in rows)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=200)
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved passes over the same items")
    ap.add_argument("--workers", type=int, default=1, help="also time the exports with this many processes")
    args = ap.parse_args()
    import torch  # here, not at the top: worker processes re-import this module

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    people = [sample_identity(np.random.default_rng([5, p])) for p in range(50)]
    crop = lambda i: render_identity_crop(np.random.default_rng([6, i]), people[i % 50])  # noqa: E731
    scene = lambda i: render_scene(np.random.default_rng([7, i]), 640, 640)  # noqa: E731
    crop(0), scene(0)  # warm up
    print(f"threads: torch {torch.get_num_threads()}, OpenCV {cv2.getNumThreads()}; one process, rates per CPU-second "
          f"(≈ per core); {args.repeats} interleaved repeats, bytes of both implementations compared")
    rng = np.random.default_rng(0)
    for what, fn, n, goal in (("aligned 112x112 crops/s", crop, args.crops, 1000),
                              ("640x640 scenes/s", scene, args.scenes, 50)):
        rates = interleaved(fn, n, args.repeats)
        (now, now_med), (before, before_med) = rates["now"], rates["previous"]
        print(f"{what:<24} now {now:8.1f} (median {now_med:7.1f})   previous {before:8.1f} (median {before_med:7.1f})"
              f"   ratio {now / before:.2f}x (median {now_med / before_med:.2f}x)   goal {goal} ({now / goal:.0%})")
    pts, _, _ = _render.project(people[0], Expression(), (0, 0, 0), (80, 82), 96.0)
    p = pts[TOPOLOGY.triangles]
    front = ((p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 1, 1] - p[:, 0, 1]) * (p[:, 2, 0] - p[:, 0, 0])) > 0
    polys = p[front]
    fixed = list(_render._poly(polys))
    colours = np.tile(np.array([[90, 120, 160]], np.uint8), (len(polys), 1))
    canvas = np.zeros((160, 160, 3), np.uint8)

    def opencv():
        for q in fixed:
            cv2.fillConvexPoly(canvas, q, (90.0, 120.0, 160.0), cv2.LINE_8, 4)
    print(f"triangle fill: {'compiled by numba' if _raster._compiled() else 'OpenCV per triangle (numba not installed)'}")
    for name, fill in (("one cv2.fillConvexPoly each", opencv),
                       ("paint_polygons", lambda: _raster.paint_polygons(canvas, polys, colours))):
        n_bare, t = 0, time.process_time()
        while time.process_time() - t < 1.0:
            fill()
            n_bare += 1
        bare_s = n_bare / (time.process_time() - t)
        print(f"baseline: bare fill of a frontal crop's {len(polys)} triangles, {name:<28} {bare_s:8.1f}/s "
              f"({1e3 / bare_s:.2f} ms of every crop)")
    img = crop(0)[0]
    t, n_jpeg = time.process_time(), 2000
    for _ in range(n_jpeg):
        cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(f"JPEG encode of a crop /s:             {n_jpeg / (time.process_time() - t):8.1f}  (not included above)")
    k = iter(range(10 ** 9))
    for name, fn, n in (("crop", lambda: crop(next(k)), max(50, args.crops // 4)),
                        ("scene", lambda: scene(next(k)), max(5, args.scenes // 4))):
        print(f"\nwhere the time goes ({name}, share of profiled own time):")
        for stage, share in stage_breakdown(fn, n):
            print(f"  {stage:<58} {share:6.1%}")
    if args.workers > 1:
        print(f"\nexports by wall clock, {args.workers} worker processes against 1 (best of 2 alternating rounds):")
        for what, rate_of in (("identity crops 112x112", _identity_export_rate), ("WIDER scenes 640 px", _wider_export_rate)):
            best = {1: 0.0, args.workers: 0.0}
            for _ in range(2):
                for w in best:
                    best[w] = max(best[w], rate_of(w))
            print(f"  {what:<24} 1 process {best[1]:8.1f}/s   {args.workers} processes {best[args.workers]:8.1f}/s   "
                  f"{best[args.workers] / best[1]:.2f}x")
    print("\nNote: timings depend on the machine's load; rerun on an idle core for reportable figures.")


def _identity_export_rate(workers: int, n_identities: int = 100, per_identity: int = 20) -> float:
    """Photos per wall-clock second of export_identities with ``workers`` processes (pool start included)."""
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        export_identities(out, n_identities=n_identities, images_per_identity=per_identity, n_test_identities=0,
                          progress=False, workers=workers)
        return n_identities * per_identity / (time.perf_counter() - t)


def _wider_export_rate(workers: int, n: int = 200) -> float:
    """Scenes per wall-clock second of export_widerface at 640 px with ``workers`` processes."""
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        export_widerface(out, n_train=n, n_val=0, image_size=640, progress=False, workers=workers)
        return n / (time.perf_counter() - t)


if __name__ == "__main__":
    main()
