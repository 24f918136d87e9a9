"""Peak memory and step time of the full ArcFace head and of Partial FC, as ratios measured in the same run
(book chapter "Millions of identities").

    python benchmarks/partial_fc.py [--classes 100000 1000000] [--rates 1 0.3 0.1] [--batch 128] [--dim 512]
                                    [--repeats 3] [--json FILE]

For each number of classes C: the single-process ``ArcFaceHead`` (the baseline), then ``PartialFC`` at each
sample rate on 1 and on 2 gloo processes of this machine. A step is the forward pass, the backward pass and
an SGD update of the centres, fp32, ``--batch`` embeddings of ``--dim`` per process (so the logits of two
processes have 2 × batch rows, as when each GPU holds batch images). Each configuration runs in fresh
processes with one thread each; memory is the peak resident size of a process beyond what it held after
start-up (Linux's ``ru_maxrss``), the largest over the processes; time is the median step of the slowest
process. ``--json`` also writes the rows to FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp


def _worker(rank: int, world: int, port: int, kind: str, classes: int, rate: float, batch: int, dim: int,
            repeats: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from facelearn.recognition.margins import ArcFaceHead
    from facelearn.recognition.partial_fc import PartialFC

    if world > 1:
        from facelearn.engine import distributed

        distributed.setup(timeout_s=1800)
    start_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.manual_seed(rank)
    head = ArcFaceHead(dim, classes) if kind == "full" else PartialFC(dim, classes, "arcface", 64.0, 0.5, rate)
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    x = torch.randn(batch, dim, requires_grad=True)
    labels = torch.randint(0, classes, (batch,))
    times = []
    for _ in range(repeats + 1):  # the first step warms up
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        head(x, labels).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Path(out, f"{rank}.json").write_text(json.dumps({"seconds": statistics.median(times[1:]),
                                                     "peak_mb": (peak_kb - start_kb) / 1024}))
    if world > 1:
        distributed.cleanup()


def measure(kind: str, classes: int, rate: float, world: int, batch: int, dim: int, repeats: int) -> dict:
    """One configuration in ``world`` fresh processes → {"seconds": slowest median step, "peak_mb": largest}."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(_worker, (world, port, kind, classes, rate, batch, dim, repeats, out), nprocs=world,
                           start_method="spawn")
        rows = [json.loads(Path(out, f"{r}.json").read_text()) for r in range(world)]
    return {"seconds": max(r["seconds"] for r in rows), "peak_mb": max(r["peak_mb"] for r in rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 0.3, 0.1])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)

    rows = []
    print(f"fp32 CPU, one thread per process, batch {args.batch} × {args.dim}-d per process, step = forward + "
          "backward + SGD; ratios to the full head of the same C")
    print(f"{'classes':>9}  {'head':<11} {'procs':>5} {'rate':>5} {'s/step':>8} {'× time':>7} "
          f"{'MB/proc':>8} {'× memory':>8}")
    for classes in args.classes:
        configs = [("full", 1.0, 1)] + [("partial", r, w) for w in (1, 2) for r in args.rates]
        base = None
        for kind, rate, world in configs:
            m = measure(kind, classes, rate, world, args.batch, args.dim, args.repeats)
            base = base or m
            row = {"classes": classes, "head": "ArcFaceHead" if kind == "full" else "PartialFC", "procs": world,
                   "rate": rate, **m, "time_ratio": m["seconds"] / base["seconds"],
                   "memory_ratio": m["peak_mb"] / base["peak_mb"]}
            rows.append(row)
            print(f"{classes:>9,}  {row['head']:<11} {world:>5} {rate:>5.2f} {m['seconds']:>8.3f} "
                  f"{row['time_ratio']:>7.2f} {m['peak_mb']:>8.0f} {row['memory_ratio']:>8.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
