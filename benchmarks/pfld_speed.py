"""PFLD speed on this machine: inference latency of 0.25X and 1X, training throughput, crop cost.

    python benchmarks/pfld_speed.py [--threads 1]

Prints milliseconds per face and each figure's ratio to PFLD 1X measured in the same run. Timings depend on
the machine and its load; the book quotes none of them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from facelearn.landmarks.pfld import PFLDConfig, pfld_pair


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    for width in (1.0, 0.25):
        pair = pfld_pair(PFLDConfig(width))
        net = pair["pfld"].eval()
        one, batch = torch.rand(1, 3, 112, 112), torch.rand(32, 3, 112, 112)
        with torch.no_grad():
            lat = timed(lambda: net(one), args.repeats * 4)
        pair.train()
        opt = torch.optim.Adam(pair.parameters())

        def step():
            lm, feat = pair["pfld"](batch)
            loss = lm.square().mean() + pair["aux"](feat).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        train = timed(step, args.repeats) / 32
        rows[width] = (lat * 1e3, train * 1e3)
    base = rows[1.0]
    print(f"threads={args.threads}")
    print(f"{'model':<12}{'infer ms/face (batch 1)':>26}{'ratio':>8}{'train ms/face (batch 32)':>27}{'ratio':>8}")
    for width, (lat, train) in rows.items():
        print(f"{f'PFLD {width:g}X':<12}{lat:>26.2f}{lat / base[0]:>8.2f}{train:>27.2f}{train / base[1]:>8.2f}")

    from facelearn.landmarks.euler import camera_matrix, euler_from_landmarks, project, reference_points

    idx, pts = reference_points()
    lm = np.zeros((98, 2))
    lm[idx] = project(pts, 0.3, 0.1, 0.05, 600, camera_matrix(112, 112))
    pnp = timed(lambda: euler_from_landmarks(lm, 112, 112), 200)
    print(f"solvePnP Euler angles: {pnp * 1e3:.3f} ms/face ({pnp / (base[1] / 1e3):.3f} of a 1X training step per face)")


if __name__ == "__main__":
    main()
