"""Differentiable renderer speed (book chapter "The dense regression branch"): a batch of 16 SynthFace meshes
rendered at 112×112 (and 64×64, the branch's size), forward and backward, on one CPU thread. Prints the total
and where the time goes (projection, shading, rasterisation, backward), the number of pixel–triangle pairs,
and the ratio to the dense pixel × triangle product the culling avoids. Then the library's rasteriser
against that dense product written the plain PyTorch way (:func:`rasterize_dense`, a baseline measured in the
same run, on ``--dense-batch`` faces at 64×64; its (B, T, S²) tensors take about 4 GB a face): the two give
the same image and silhouette (checked first, to float rounding), then alternate for ``--repeats`` rounds,
forward + backward of the rasterisation, the fastest round of each. Not a test.

    OMP_NUM_THREADS=1 python benchmarks/render_speed.py [--batch 16] [--size 112] [--repeats 5] [--threads 1]
        [--dense-batch 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from facelearn.data.synthface import TOPOLOGY, sample_expression, sample_identity
from facelearn.detection.mesh.decoder import true_mesh
from facelearn.detection.mesh.render import (Rendered, decode_camera, decode_light, project, rasterize, shade,
                                             vertex_normals)


def batch_of_faces(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n true SynthFace meshes (n, V, 6) with random poses (camera (n, 7)) and lights (n, 9)."""
    rng = np.random.default_rng(seed)
    meshes = [np.concatenate(true_mesh(sample_identity(rng), sample_expression(rng)), 1) for _ in range(n)]
    raw_cam = torch.zeros(n, 7)
    raw_cam[:, :3] = torch.from_numpy(rng.uniform(-0.5, 0.5, (n, 3))).float()
    raw_light = torch.from_numpy(rng.normal(0, 0.1, (n, 9))).float()
    return torch.from_numpy(np.stack(meshes)).float(), decode_camera(raw_cam), decode_light(raw_light)


def rasterize_dense(pts: torch.Tensor, depth: torch.Tensor, colours: torch.Tensor, faces: torch.Tensor, size: int,
                    sigma: float = 0.5, gamma: float = 0.01, eps: float = 1e-3) -> Rendered:
    """Render eqs. (3), (4) as the dense pixel × triangle product: every quantity a (B, T, S²) tensor, the
    library's cut-off (culled triangles, pixels beyond a triangle's bounding box grown by 3√σ) as a mask.
    pts (B, V, 2) pixels; depth (B, V); colours (B, V, 3); faces (T, 3) → image (B, 3, S, S), alpha (B, 1, S, S)
    on a black background, as :func:`rasterize` computes them."""
    tri, tz, tc = pts[:, faces], depth[:, faces], colours[:, faces]       # (B, T, 3, 2|·|3)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    q = torch.stack([xs, ys], -1).reshape(1, 1, -1, 2).to(pts) + 0.5      # (1, 1, S², 2)
    with torch.no_grad():
        e1, e2 = tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]
        keep = ((e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]) > 0) & (tz > 1e-3).all(-1)
        margin = 3.0 * sigma ** 0.5
        lo = torch.ceil(tri.amin(2) - margin - 0.5).clamp(0, size - 1)[:, :, None]   # (B, T, 1, 2)
        hi = torch.floor(tri.amax(2) + margin - 0.5).clamp(0, size - 1)[:, :, None]
        near = keep[..., None] & ((q - 0.5 >= lo) & (q - 0.5 <= hi)).all(-1)        # (B, T, S²)
    a, b, c = (tri[:, :, None, k] for k in range(3))                     # (B, T, 1, 2)

    def edge(u, v, w):
        return (v[..., 0] - u[..., 0]) * (w[..., 1] - u[..., 1]) - (v[..., 1] - u[..., 1]) * (w[..., 0] - u[..., 0])

    def segment_d2(u, v):
        uv, uq = v - u, q - u
        t = ((uq * uv).sum(-1) / (uv * uv).sum(-1).clamp(min=1e-12)).clamp(0, 1)
        return ((uq - t[..., None] * uv) ** 2).sum(-1)

    area = torch.where(keep[..., None], edge(a, b, c), 1.0)              # culled triangles: never used
    lam = torch.stack([edge(b, c, q), edge(c, a, q), edge(a, b, q)], -1) / area[..., None]
    d2 = torch.minimum(torch.minimum(segment_d2(a, b), segment_d2(b, c)), segment_d2(c, a))
    s = torch.where((lam >= 0).all(-1), d2, -d2) / sigma
    lam = lam.clamp(min=0)
    lam = lam / lam.sum(-1, keepdim=True).clamp(min=1e-12)
    znear, zfar = depth.amin(1)[:, None, None], depth.amax(1)[:, None, None]
    zt = (zfar - (lam * tz[:, :, None]).sum(-1)) / (zfar - znear).clamp(min=1e-6)
    logit = torch.where(near, F.logsigmoid(s) + zt / gamma, -torch.inf)
    m = torch.maximum(logit.detach().amax(1), torch.tensor(eps / gamma))  # (B, S²)
    e, e_bg = torch.exp(logit - m[:, None]), torch.exp(eps / gamma - m)
    colour = (lam[..., None] * tc[:, :, None]).sum(-2)                   # (B, T, S², 3)
    image = (e[..., None] * colour).sum(1) / (e_bg + e.sum(1))[..., None]
    alpha = 1 - torch.exp(torch.where(near, F.logsigmoid(-s), 0.0).sum(1))
    bsz = len(pts)
    return Rendered(image.view(bsz, size, size, 3).permute(0, 3, 1, 2), alpha.view(bsz, 1, size, size),
                    int(near.sum()))


def against_dense(mesh, camera, light, faces, size: int, rounds: int) -> None:
    """The library's :func:`rasterize` and :func:`rasterize_dense`: the same image and silhouette, then the
    fastest of ``rounds`` alternating rounds of each one's forward + backward."""
    cam, pts = project(mesh[..., :3], camera, size)
    colours = shade(mesh[..., 3:], cam, vertex_normals(cam, faces), light)
    inputs = [t.detach().requires_grad_(True) for t in (pts, cam[..., 2], colours)]
    fns = {"dense": rasterize_dense, "library": rasterize}
    outs = {name: fn(*inputs, faces, size) for name, fn in fns.items()}
    if outs["dense"].pairs != outs["library"].pairs:
        raise AssertionError(f"the dense mask keeps {outs['dense'].pairs} pairs, the library {outs['library'].pairs}")
    for field in ("image", "alpha"):
        torch.testing.assert_close(getattr(outs["library"], field), getattr(outs["dense"], field), rtol=1e-4,
                                   atol=1e-5, msg=lambda m: f"{field}: the library and the dense product differ: {m}")
    best = dict.fromkeys(fns, float("inf"))
    for r in range(rounds + 1):  # the first round warms up
        for name in (list(fns) if r % 2 else list(fns)[::-1]):
            for t in inputs:
                t.grad = None
            start = time.perf_counter()
            out = fns[name](*inputs, faces, size)
            (out.image.abs().mean() + out.alpha.mean()).backward()
            if r:
                best[name] = min(best[name], time.perf_counter() - start)
    print(f"\nrasterisation forward + backward, {len(mesh)} face(s) at {size}×{size}, {torch.get_num_threads()} "
          f"thread(s), device cpu; the same image and silhouette; fastest of {rounds} alternating rounds:")
    print(f"  dense pixel × triangle product (baseline) {best['dense'] * 1e3:9.1f} ms")
    print(f"  culled pairs (library)                    {best['library'] * 1e3:9.1f} ms   "
          f"{best['library'] / best['dense']:.4f}× the baseline")


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
    parser.add_argument("--dense-batch", type=int, default=1, help="faces for the dense baseline (0: skip it)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faces = torch.from_numpy(TOPOLOGY.triangles).long()
    mesh, camera, light = batch_of_faces(args.batch)
    print(f"torch {torch.__version__}, device cpu, {torch.get_num_threads()} thread(s), batch {args.batch}, "
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
    if args.dense_batch:
        n = args.dense_batch
        against_dense(mesh[:n], camera[:n], light[:n], faces, 64, args.repeats)


if __name__ == "__main__":
    main()
