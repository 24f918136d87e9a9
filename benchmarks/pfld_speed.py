"""PFLD speed on this machine: inference latency and training step of 1X and 0.25X, the library's forward
(the crops preprocessed once outside it, as the data loader does) against the former forward that applied
the input convention to its [0, 1] crops itself (:func:`forward_converting_inside`); and the cost of a crop's
Euler angles by solvePnP.

    OMP_NUM_THREADS=1 python benchmarks/pfld_speed.py [--threads 1] [--rounds 5] [--device cpu]

The two forwards are checked equal first (outputs, then loss and gradients of one training step, bit for
bit), then alternate for ``--rounds`` rounds (which goes first alternates too); each figure is the fastest
round. Prints the model, the device and the thread count, milliseconds per face and the ratio library /
former; ``× 1X`` is the library's figure over PFLD 1X's. Timings depend on the machine and its load; the
book quotes none of them.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from facelearn import runtime
from facelearn.landmarks.pfld import PRESETS, PFLD, pfld_pair


def forward_converting_inside(net: PFLD, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The former ``PFLD.forward``: (N, 3, 112, 112) RGB crops in [0, 1], the config's input convention
    (``config.input.from_unit``) applied inside it, then the network → (landmarks (N, 2P), feature)."""
    return net(net.config.input.from_unit(crops))


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def alternate(fns: dict, rounds: int, dev: torch.device) -> dict[str, float]:
    """The fastest of ``rounds`` alternating rounds (after one warm-up call each) → seconds per name."""
    best = dict.fromkeys(fns, float("inf"))
    for fn in fns.values():
        fn()
    for r in range(rounds):
        for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            _sync(dev)
            t0 = time.perf_counter()
            fns[name]()
            _sync(dev)
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def training_steps(pair: torch.nn.ModuleDict, crops: torch.Tensor, x: torch.Tensor) -> dict:
    """One step each way (forward of PFLD and its auxiliary net, a squared loss, backward, Adam): the former
    forward reads the [0, 1] crops, the library's the preprocessed ``x``; both → the loss, after the step."""
    opt = torch.optim.Adam(pair.parameters())

    def step(former: bool) -> torch.Tensor:
        lm, feat = forward_converting_inside(pair["pfld"], crops) if former else pair["pfld"](x)
        loss = lm.square().mean() + pair["aux"](feat).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return {"former": lambda: step(True), "library": lambda: step(False)}


def check_same(pair: torch.nn.ModuleDict, crops: torch.Tensor, x: torch.Tensor, training: bool) -> None:
    """The two forwards give the same outputs (eval mode), or the same loss and gradients of one training step
    (on copies of ``pair``), bit for bit; raises AssertionError otherwise."""
    what = f"PFLD {pair['pfld'].config.width:g}X, batch {len(crops)}"
    if not training:
        net = pair["pfld"].eval()
        with torch.no_grad():
            if not all(torch.equal(a, b) for a, b in zip(net(x), forward_converting_inside(net, crops))):
                raise AssertionError(f"{what}: the library's forward differs from the former")
        return
    results = []
    for name in ("former", "library"):
        twin = copy.deepcopy(pair).train()
        loss = training_steps(twin, crops, x)[name]()
        results.append([loss.detach()] + [p.grad for p in twin.parameters()])
    if not all(torch.equal(a, b) for a, b in zip(*results)):
        raise AssertionError(f"{what}: the training step's loss or gradients differ from the former")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default=None, help="default: CUDA, then MPS, then CPU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dev = runtime.device(args.device)
    torch.manual_seed(0)
    print(f"device {dev}, {torch.get_num_threads()} thread(s), torch {torch.__version__}; fastest of "
          f"{args.rounds} alternating rounds (inference: {4 * args.rounds})")
    print(f"{'model':<12}{'':>10}{'former':>10}{'library':>10}{'× former':>10}{'× 1X':>8}   (ms per face)")
    one_x = {}
    for name in ("1x", "0.25x"):
        pair = pfld_pair(PRESETS[name]).to(dev)
        net = pair["pfld"]
        rows = {}
        for label, n in (("infer b1", 1), ("train b32", 32)):
            crops = torch.rand(n, 3, 112, 112, device=dev)
            x = net.preprocess(crops)
            check_same(pair, crops, x, training=n > 1)
            if n == 1:
                net.eval()
                with torch.no_grad():
                    best = alternate({"former": lambda: forward_converting_inside(net, crops),
                                      "library": lambda: net(x)}, 4 * args.rounds, dev)
            else:
                pair.train()
                best = alternate(training_steps(pair, crops, x), args.rounds, dev)
            rows[label] = {k: v / n * 1e3 for k, v in best.items()}
        one_x = one_x or rows
        for label, ms in rows.items():
            print(f"{f'PFLD {name.upper()}':<12}{label:>10}{ms['former']:>10.2f}{ms['library']:>10.2f}"
                  f"{ms['library'] / ms['former']:>10.3f}{ms['library'] / one_x[label]['library']:>8.2f}")

    from facelearn.landmarks.euler import camera_matrix, euler_from_landmarks, project, reference_points

    idx, pts = reference_points()
    lm = np.zeros((98, 2))
    lm[idx] = project(pts, 0.3, 0.1, 0.05, 600, camera_matrix(112, 112))
    start = time.perf_counter()
    for _ in range(200):
        euler_from_landmarks(lm, 112, 112)
    pnp = (time.perf_counter() - start) / 200 * 1e3
    print(f"solvePnP Euler angles (CPU): {pnp:.3f} ms per face = {pnp / one_x['train b32']['library']:.4f} × "
          f"a PFLD 1X training step per face")


if __name__ == "__main__":
    main()
