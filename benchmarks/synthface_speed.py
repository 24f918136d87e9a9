"""SynthFace rendering speed on one thread: aligned 112×112 identity crops/s and 640×640 detection scenes/s,
and where the time goes (cProfile, grouped by stage). Goal: ≥ 1,000 crops/s, ≥ 50 scenes/s per core.

    .venv/bin/python benchmarks/synthface_speed.py [--crops 400] [--scenes 40] [--workers 2]

The baseline measured in the same run is the bare rasteriser: filling the same number of triangles with
cv2.fillConvexPoly and nothing else, i.e. the floor for a painter's-algorithm renderer driven from Python.
With ``--workers N`` it also times the identity and WIDER exports (JPEG files included) with N worker
processes against one, alternating, and prints the speed-up (bounded by the free cores of the machine).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time

import cv2
import numpy as np

from facelearn.data.synthface import (TOPOLOGY, Expression, export_identities, export_widerface, render_identity_crop,
                                      render_scene, sample_identity)
from facelearn.data.synthface.render import _poly, project

STAGES = {
    "rasterise triangles (cv2.fillConvexPoly)": ("fillConvexPoly",),
    "painter's loop and bookkeeping (draw_face itself)": ("draw_face",),
    "facial features (eyes, brows, lips, ears, glasses)": ("_features", "draw", "mouth", "nostrils", "_ear",
                                                          "draw_glasses", "<lambda>"),
    "geometry (eq. 1 shape, pose, projection, shading)": ("face_vertices", "project", "_shade", "hair_mask", "rotation"),
    "self-occlusion test": ("_occluded",),
    "background and clutter": ("background",),
    "occluders, blur, noise (finish)": ("draw_occluder", "blur_roi", "finish", "GaussianBlur", "covered_fraction"),
    "alignment warp": ("align_face", "warpAffine", "similarity_transform"),
    "sampling parameters": ("sample_identity", "sample_expression", "sample_pose", "sample_light",
                            "sample_scene_layout"),
}


def rate(fn, n: int, clock=time.process_time) -> float:
    """Calls per second of ``fn``. The default clock is this process's CPU time, which on a shared, loaded
    machine approximates an idle core far better than wall time (pass ``time.perf_counter`` for wall time)."""
    t = clock()
    for _ in range(n):
        fn()
    return n / max(clock() - t, 1e-9)


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
    ap.add_argument("--crops", type=int, default=400)
    ap.add_argument("--scenes", type=int, default=40)
    ap.add_argument("--workers", type=int, default=1, help="also time the exports with this many processes")
    args = ap.parse_args()
    import torch  # here, not at the top: worker processes re-import this module

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    people = [sample_identity(rng) for _ in range(50)]
    k = iter(range(10 ** 9))
    crop = lambda: render_identity_crop(rng, people[next(k) % 50])  # noqa: E731
    scene = lambda: render_scene(rng, 640, 640)  # noqa: E731
    crop(), scene()  # warm up
    crops_s = rate(crop, args.crops)
    scenes_s = rate(scene, args.scenes)
    crops_wall = rate(crop, max(20, args.crops // 4), time.perf_counter)
    img = render_identity_crop(rng, people[0])[0]
    jpeg_s = rate(lambda: cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90]), 2000)
    pts, _, _ = project(people[0], Expression(), (0, 0, 0), (80, 82), 96.0)
    polys = _poly(pts[TOPOLOGY.triangles])
    front = polys[: len(polys) // 2]
    canvas = np.zeros((160, 160, 3), np.uint8)

    def bare():
        for q in front:
            cv2.fillConvexPoly(canvas, q, (90, 120, 160), cv2.LINE_8, 4)
    bare_s = rate(bare, 200)
    print("rates per CPU-second of this process (single thread; ~ an idle core):")
    print(f"aligned 112x112 crops/s (one thread): {crops_s:8.1f}   goal 1000   ({crops_s / 1000:.0%} of goal)")
    print(f"640x640 scenes/s (one thread):        {scenes_s:8.1f}   goal   50   ({scenes_s / 50:.0%} of goal)")
    print(f"baseline: bare fill of {len(front)} triangles/s: {bare_s:8.1f}  -> crop costs {bare_s / crops_s:.1f}x the bare fill")
    print(f"JPEG encode of a crop /s:             {jpeg_s:8.1f}  (not included above)")
    print(f"crops/s by wall clock on this machine now: {crops_wall:.1f} (lower when other processes share the cores)")
    for name, fn, n in (("crop", crop, max(50, args.crops // 4)), ("scene", scene, max(5, args.scenes // 4))):
        print(f"\nwhere the time goes ({name}, share of profiled own time):")
        for stage, share in stage_breakdown(fn, n):
            print(f"  {stage:<55} {share:6.1%}")
    if args.workers > 1:
        print(f"\nexports by wall clock, {args.workers} worker processes against 1 (min of 2 alternating rounds):")
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
