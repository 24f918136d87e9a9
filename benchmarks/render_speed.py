"""Differentiable renderer speed (book chapter "The dense regression branch"): a batch of 16 SynthFace meshes
rendered at 112×112 (and 64×64, the branch's size), forward and backward, on one CPU thread. Prints the total
and where the time goes (projection, shading, rasterisation, backward), the number of pixel–triangle pairs,
and the ratio to the dense pixel × triangle product the culling avoids. Not a test.

    python benchmarks/render_speed.py [--batch 16] [--size 112] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from facelearn.data.synthface import TOPOLOGY, sample_expression, sample_identity
from facelearn.detection.mesh.decoder import true_mesh
from facelearn.detection.mesh.render import (decode_camera, decode_light, project, rasterize, shade,
                                             vertex_normals)


def batch_of_faces(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n true SynthFace meshes (n, V, 6) with random poses (camera (n, 7)) and lights (n, 9)."""
    rng = np.random.default_rng(seed)
    meshes = [np.concatenate(true_mesh(sample_identity(rng), sample_expression(rng)), 1) for _ in range(n)]
    raw_cam = torch.zeros(n, 7)
    raw_cam[:, :3] = torch.from_numpy(rng.uniform(-0.5, 0.5, (n, 3))).float()
    raw_light = torch.from_numpy(rng.normal(0, 0.1, (n, 9))).float()
    return torch.from_numpy(np.stack(meshes)).float(), decode_camera(raw_cam), decode_light(raw_light)


def one_pass(mesh, camera, light, faces, size) -> dict[str, float]:
    """One forward + backward, timed stage by stage (seconds), plus the pair count."""
    mesh = mesh.clone().requires_grad_(True)
    camera = camera.clone().requires_grad_(True)
    light = light.clone().requires_grad_(True)
    t0 = time.perf_counter()
    cam, pts = project(mesh[..., :3], camera, size)
    t1 = time.perf_counter()
    colours = shade(mesh[..., 3:], cam, vertex_normals(cam, faces), light)
    t2 = time.perf_counter()
    out = rasterize(pts, cam[..., 2], colours, faces, size)
    t3 = time.perf_counter()
    (out.image.abs().mean() + out.alpha.mean()).backward()
    t4 = time.perf_counter()
    return {"projection": t1 - t0, "shading": t2 - t1, "rasterisation": t3 - t2, "backward": t4 - t3,
            "total": t4 - t0, "pairs": out.pairs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faces = torch.from_numpy(TOPOLOGY.triangles).long()
    mesh, camera, light = batch_of_faces(args.batch)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch}, "
          f"{mesh.shape[1]} vertices, {len(faces)} triangles")
    for size in dict.fromkeys([args.size, 64]):
        one_pass(mesh, camera, light, faces, size)  # warm-up
        runs = [one_pass(mesh, camera, light, faces, size) for _ in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        dense = args.batch * len(faces) * size * size
        print(f"\n{size}×{size}: forward + backward {med['total']:.3f} s (median of {args.repeats}), "
              f"{med['total'] / args.batch * 1e3:.1f} ms per face")
        for k in ("projection", "shading", "rasterisation", "backward"):
            print(f"  {k:<14s} {med[k]:.4f} s  ({med[k] / med['total']:.0%})")
        print(f"  pixel–triangle pairs {int(med['pairs']):,} vs {dense:,} dense ({dense / med['pairs']:.0f}× fewer)")


if __name__ == "__main__":
    main()
