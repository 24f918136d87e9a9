"""SynthFace rendering speed per core (one thread): aligned 112×112 identity crops/s and 640×640 detection
scenes/s, each against the previous implementation measured in the same run, and where the time goes.
Goal: ≥ 1,000 crops/s and ≥ 50 scenes/s per core.

    .venv/bin/python benchmarks/synthface_speed.py [--crops 200] [--scenes 20] [--repeats 5] [--workers 2]

The previous renderer (before the per-identity caches, the reused polygon views, the OpenCV noise
addition and the categorical draws without ``Generator.choice``'s checks) is kept below as reference functions; :func:`previous_renderer` swaps them into the SynthFace
modules. Every item (a seeded crop or scene) is rendered by both, interleaved, and their bytes are compared.
A rate is the number of items over the sum, item by item, of the smallest CPU time of this process over
the repeats: on a shared, loaded machine the minimum approximates an idle core far better than wall time or
a mean; the median rate is printed beside it. The bare rasteriser (``cv2.fillConvexPoly`` on the same
number of triangles as a crop paints, nothing else) is the floor of a painter's-algorithm renderer driven
from Python. With ``--workers N`` it also times the identity and WIDER exports (JPEG files included) with N
worker processes against one, alternating, and prints the speed-up (bounded by the free cores).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from contextlib import contextmanager, nullcontext

import cv2
import numpy as np

from facelearn.data.synthface import (TOPOLOGY, Expression, export_identities, export_widerface, render_identity_crop,
                                      render_scene, sample_identity)
from facelearn.data.synthface import model as _model
from facelearn.data.synthface import people as _people
from facelearn.data.synthface import render as _render
from facelearn.data.synthface import samplers as _samplers
from facelearn.data.synthface import scenes as _scenes

STAGES = {
    "painter's loop with the triangle fills (draw_face itself)": ("draw_face",),
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

def _poly_before(p):
    return np.round(p * _render._ONE).astype(np.int32)


def _colour_before(rgb, k: float = 1.0) -> tuple:
    r, g, b = (float(c) * k for c in rgb)
    return (min(255, max(0, int(b))), min(255, max(0, int(g))), min(255, max(0, int(r))))


def _face_vertices_before(identity, expression=Expression(), topology=TOPOLOGY):
    f = _model._FIELDS.get(id(topology))
    if f is None:
        f = _model._FIELDS[id(topology)] = _model._Fields(topology)
    a = dict(zip(_model.IDENTITY_SHAPE, identity.shape.tolist()))
    v = topology.vertices.copy()
    fx, fy, sx = f.fx, f.fy, f.sx
    dx = 0.45 * a["eye_spacing"] * sx * f.eye_w
    scale_eye = 1 + 0.12 * a["eye_size"] * f.eye_w
    ex = (3.2 + 0.45 * a["eye_spacing"]) * sx
    fx2 = np.where(f.in_eye, ex + (fx + dx - ex) * scale_eye, fx + dx)
    fy2 = np.where(f.in_eye, 0.2 + (fy - 0.2) * scale_eye, fy)
    fx2 += 0.18 * a["nose_width"] * fx * f.nose_w + 0.1 * a["mouth_width"] * fx * f.mouth_w
    fy2 += (0.3 * a["nose_length"] * f.nose_len + 0.15 * a["lip_thickness"] * f.lips - 0.3 * a["brow_height"] * f.brow
            + 0.35 * a["chin"] * f.chin + 0.4 * (identity.brow_thickness - 1) * f.lower_brow)
    fy2 += (expression.mouth_open * 1.7 * f.lower - expression.smile * 0.55 * f.corners
            + expression.eye_closure * f.upper_lid * scale_eye - expression.brow_raise * 0.55 * f.brow_raise)
    fx2 += expression.smile * 0.3 * sx * f.corners
    relief = (1 + 0.28 * a["nose_height"]) * f.nose_relief + f.other_relief + 0.25 * a["cheeks"] * f.cheeks
    v[:, 0] += f.front * (fx2 - fx)
    v[:, 1] += f.front * (fy2 - fy)
    v[:, 2] -= f.front * relief
    jaw = np.clip((v[:, 1] - 4.0) / 6.0, 0, 1)
    v[:, 0] *= 1 + 0.07 * a["face_width"] + 0.11 * a["jaw"] * jaw
    v[:, 1] *= np.where(v[:, 1] > 0, 1 + 0.05 * a["face_length"], 1 + 0.05 * a["forehead"])
    return v


def _project_before(identity, expression, pose, centre, height, distance, hair):
    v = _face_vertices_before(identity, expression)
    grow = np.where(hair, 0.35 + 0.25 * (identity.hair_style >= 2), 0.0)
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
    a, b, c = cam[tri[:, 0]], cam[tri[:, 1]], cam[tri[:, 2]]
    u, v = (b - a).T, (c - a).T
    n = np.stack([u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]], axis=1)
    n /= np.sqrt(n[:, 0] * n[:, 0] + n[:, 1] * n[:, 1] + n[:, 2] * n[:, 2])[:, None] + 1e-12
    n *= -np.sign(n[:, 2:3] + 1e-12)
    return ambient + (1 - ambient) * np.clip(n @ light, 0, 1), (a[:, 2] + b[:, 2] + c[:, 2]) / 3


def _ear_before(canvas, cam, pts, side, colour):
    idx = _render._EAR[side]
    centre = pts[idx].mean(0)
    ys = TOPOLOGY.uv[idx, 1]
    axis = pts[idx[np.argmax(ys)]] - pts[idx[np.argmin(ys)]]
    h = max(np.linalg.norm(axis), 1.0)
    along = axis / h
    outward = centre - pts[:98].mean(0)
    outward -= along * (outward @ along)
    outward = outward / (np.linalg.norm(outward) + 1e-9)
    oval = (centre + outward * 0.12 * h + _render._COS9[:, None] * (outward * 0.22 * h)
            + _render._SIN9[:, None] * (along * 0.45 * h))
    return cam[idx, 2].mean() + 0.8, lambda: cv2.fillConvexPoly(canvas, _poly_before(oval), colour, cv2.LINE_8, 4)


def _draw_body_before(canvas, pts, cam, pose, height, identity, clothes):
    chin = pts[16]
    up = pts[16] - pts[53]
    up = up / (np.linalg.norm(up) + 1e-9)
    side = np.array([-up[1], up[0]])
    u = height / 16.0
    neck = [chin + side * 3.0 * u - up * 4 * u, chin - side * 3.0 * u - up * 4 * u, chin - side * 3.2 * u + up * 6 * u,
            chin + side * 3.2 * u + up * 6 * u]
    cv2.fillConvexPoly(canvas, _poly_before(np.array(neck)), _colour_before(identity.skin * 0.75), cv2.LINE_8, 4)
    sh = chin + up * 4.5 * u
    body = [sh + side * 4 * u, sh - side * 4 * u, sh - side * 11 * u + up * 5 * u, sh - side * 12 * u + up * 30 * u,
            sh + side * 12 * u + up * 30 * u, sh + side * 11 * u + up * 5 * u]
    cv2.fillPoly(canvas, [_poly_before(np.array(body))], _colour_before(clothes), cv2.LINE_8, 4)
    cv2.fillConvexPoly(canvas, _poly_before(np.array(neck)), _colour_before(identity.skin * 0.75), cv2.LINE_8, 4)


def _draw_face_before(canvas, identity, expression, pose, centre, height, *, light=None, ambient=0.45, clothes=None,
                      visibility="all"):
    hair = _render.hair_mask(identity)
    pts, cam, box = _project_before(identity, expression, pose, centre, height, 80.0, hair)
    tri = TOPOLOGY.triangles if height >= 48 else TOPOLOGY.coarse_triangles
    light = np.array([0.3, -0.4, -1.0]) if light is None else np.asarray(light, dtype=np.float64)
    light = light / np.linalg.norm(light)
    if clothes is not None:
        _draw_body_before(canvas, pts, cam, pose, height, identity, clothes)
    p = pts[tri]
    front = ((p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 1, 1] - p[:, 0, 1]) * (p[:, 2, 0] - p[:, 0, 0])) > 0
    shown = tri[front]
    intensity, depth = _shade_before(cam, shown, light, ambient)
    albedo = np.broadcast_to(identity.skin, (len(TOPOLOGY.vertices), 3)).copy()
    albedo[hair] = identity.hair
    if identity.beard:
        mix = 0.45 if identity.beard == 1 else 0.9
        albedo[_render._BEARD_ZONE & ~hair] = (1 - mix) * identity.skin + mix * identity.hair * 0.8
    corner = albedo[shown]
    tri_col = (corner[:, 0] + corner[:, 1] + corner[:, 2]) / 3 * intensity[:, None]
    k = float(ambient + (1 - ambient) * max(0.0, -light[2]) * 0.9)
    items = _render._features(canvas, identity, pts, cam, k, height / 16.3)
    items += [_ear_before(canvas, cam, pts, side, _colour_before(identity.skin * 0.85, k)) for side in (-1, 1)]
    order = np.argsort(-np.concatenate([depth, [d for d, _ in items]]), kind="stable")
    n_tri = len(shown)
    is_tri = order < n_tri
    tri_order = order[is_tri]
    polys = list(_poly_before(pts[shown[tri_order]]))
    bgr = np.clip(tri_col[tri_order][:, ::-1], 0, 255).astype(np.int32).astype(np.float64)
    cols = list(zip(*bgr.T.tolist()))
    ends = np.flatnonzero(~is_tri) - np.arange(len(items))
    fill, line8 = cv2.fillConvexPoly, cv2.LINE_8
    start = 0
    for end, item in zip([*ends.tolist(), n_tri], [*order[~is_tri].tolist(), None]):
        for q, c in zip(polys[start:end], cols[start:end]):
            fill(canvas, q, c, line8, 4)
        if item is not None:
            items[item - n_tri][1]()
        start = end
    lm = pts[:98].copy()
    vis = np.ones(98, bool)
    if visibility != "none":
        query = np.arange(98) if visibility == "all" else TOPOLOGY.five
        vis[query] = ~_render._occluded(pts, cam, tri, front, query)
    return _render.FaceRender(lm, vis, box, pts, cam[:, 2])


def _finish_before(img, rng, noise=4.0, gain=1.0):
    sigma = float(rng.uniform(0, noise)) if noise > 0 else 0.0
    seed = int(rng.integers(2 ** 31 - 1))
    if sigma < 0.3 and abs(gain - 1) < 1e-3:
        return img
    if sigma >= 0.3:
        n = np.empty(img.shape[:2], np.float32)
        cv2.setRNGSeed(seed)
        cv2.randn(n, 0.0, sigma)
        out = np.add(img, n[..., None], dtype=np.float32)
    else:
        out = img.astype(np.float32)
    return cv2.convertScaleAbs(out, alpha=gain) if abs(gain - 1) >= 1e-3 else np.clip(out, 0, 255).astype(np.uint8)


def _clamp_before(x, lo, hi):
    return float(np.clip(x, lo, hi))


def _choose_before(rng, p):
    return int(rng.choice(len(p), p=p))


_PREVIOUS = {  # module → {name: previous implementation}
    _model: {"face_vertices": _face_vertices_before, "choose": _choose_before},
    _render: {"face_vertices": _face_vertices_before, "draw_face": _draw_face_before, "_poly": _poly_before,
              "_colour": _colour_before, "_norm": np.linalg.norm},
    _scenes: {"draw_face": _draw_face_before, "finish": _finish_before, "clamp": _clamp_before,
              "choose": _choose_before},
    _samplers: {"draw_face": _draw_face_before, "finish": _finish_before, "clamp": _clamp_before,
                "choose": _choose_before},
    _people: {"finish": _finish_before},
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
    polys = list(_render._poly(p[front]))
    canvas = np.zeros((160, 160, 3), np.uint8)

    def bare():
        for q in polys:
            cv2.fillConvexPoly(canvas, q, (90.0, 120.0, 160.0), cv2.LINE_8, 4)
    n_bare, t = 0, time.process_time()
    while time.process_time() - t < 1.0:
        bare()
        n_bare += 1
    bare_s = n_bare / (time.process_time() - t)
    print(f"baseline: bare fill of a frontal crop's {len(polys)} triangles: {bare_s:8.1f}/s "
          f"(the floor of this renderer: {1e3 / bare_s:.2f} ms of every crop)")
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
