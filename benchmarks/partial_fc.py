"""Peak memory and step time of the full ArcFace head and of Partial FC, as ratios measured in the same run
(book chapter "Millions of identities"), and Partial FC against its former margin formulation.

    python benchmarks/partial_fc.py [--classes 100000 1000000] [--rates 1 0.3 0.1] [--batch 128] [--dim 512]
                                    [--repeats 3] [--rounds 5] [--json FILE]

For each number of classes C: the single-process ``ArcFaceHead`` (the baseline), then ``PartialFC`` at each
sample rate on 1 and on 2 gloo processes of this machine. A step is the forward pass, the backward pass and
an SGD update of the centres, fp32, ``--batch`` embeddings of ``--dim`` per process (so the logits of two
processes have 2 × batch rows, as when each GPU holds batch images). Each configuration runs in fresh
processes with one thread each; memory is the peak resident size of a process beyond what it held after
start-up (Linux's ``ru_maxrss``), the largest over the processes; time is the median step of the slowest
process. ``--json`` also writes the rows to FILE.

Each PartialFC row also compares the library's head with :func:`former_loss`, the formulation it replaced
(kept below: autograd of ``F.normalize`` on both sides, the (N, S_r) cosines clamped, scaled and copied by
``index_put`` to receive the margin, ``torch.exp`` of a second shifted copy): ``× former`` is the ratio of
their forward + backward times, the two alternating for ``--rounds`` rounds in the same processes, the fastest
round of each (a round's time is that of the slowest process); ``× f. mem`` the ratio of their peak memory,
each measured in fresh processes. The two losses are checked equal, bit for bit, first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from facelearn.recognition.partial_fc import PartialFC, _GatherRows, _SumOverShards


def former_cross_entropy(logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The former ``distributed_cross_entropy``: the same sums, exp of a shifted copy of the logits."""
    shift = logits.detach().max(dim=1).values
    target = torch.zeros(len(logits), dtype=logits.dtype, device=logits.device).index_put((rows,), logits[rows, cols])
    sharded = dist.is_initialized() and dist.get_world_size() > 1
    if sharded:
        dist.all_reduce(shift, op=dist.ReduceOp.MAX)
    sums = torch.exp(logits - shift[:, None]).sum(dim=1)
    if sharded:
        sums, target = _SumOverShards.apply(sums), _SumOverShards.apply(target)
    return (torch.log(sums) + shift - target).mean()


def former_loss(head: PartialFC, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The former ``PartialFC.forward`` (same gathering and sampling): cos θ = x̂Ŵᵀ by autograd of F.normalize,
    clamped, then s·cos θ with s·ψ(θ_y) put into a copy at the targets."""
    if head.world > 1:
        x = _GatherRows.apply(x, float(head.world))
        gathered = [torch.empty_like(labels) for _ in range(head.world)]
        dist.all_gather(gathered, labels)
        labels = torch.cat(gathered)
    index, target = head.sample(labels)
    weight = head.weight if index is None else head.weight[index]
    cos = F.linear(F.normalize(x.float()), F.normalize(weight.float())).clamp(-1.0, 1.0)
    rows = torch.nonzero(target >= 0).squeeze(1)
    cols = target[rows]
    logits = (head.s * cos).index_put((rows, cols), head.s * head.psi(cos[rows, cols]))
    return former_cross_entropy(logits, rows, cols)


def _forward_backward(head: PartialFC, x: torch.Tensor, labels: torch.Tensor, former: bool) -> float:
    """Seconds of one forward + backward of the library's head or of :func:`former_loss` (the SGD update,
    the same for both, left out)."""
    head.weight.grad = None
    t0 = time.perf_counter()
    (former_loss(head, x, labels) if former else head(x, labels)).backward()
    return time.perf_counter() - t0


def _worker(rank: int, world: int, port: int, kind: str, classes: int, rate: float, batch: int, dim: int,
            repeats: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from facelearn.recognition.margins import ArcFaceHead

    if world > 1:
        from facelearn.engine import distributed

        distributed.setup(timeout_s=1800)
    start_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.manual_seed(rank)
    head = ArcFaceHead(dim, classes) if kind == "full" else PartialFC(dim, classes, "arcface", 64.0, 0.5, rate)
    x = torch.randn(batch, dim, requires_grad=True)
    labels = torch.randint(0, classes, (batch,))
    if kind == "compare":
        result = _alternate(head, x, labels, repeats)
    else:
        result = _steps(head, x, labels, repeats, kind == "former")
        result["peak_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_kb) / 1024
    Path(out, f"{rank}.json").write_text(json.dumps(result))
    if world > 1:
        distributed.cleanup()


def _steps(head: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, repeats: int, former: bool) -> dict:
    """The median of ``repeats`` steps (forward, backward, SGD) after one warm-up step."""
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    times = []
    for _ in range(repeats + 1):  # the first step warms up
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        (former_loss(head, x, labels) if former else head(x, labels)).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return {"seconds": statistics.median(times[1:])}


def _alternate(head: PartialFC, x: torch.Tensor, labels: torch.Tensor, rounds: int) -> dict:
    """The library's forward + backward and the former one's, alternating (which goes first too), after a
    check that the two losses are the same bits on the same sampled centres."""
    seed = int(torch.randint(2**31, (1,)))
    losses = []
    for former in (False, True):
        torch.manual_seed(seed)  # the same sampled negatives
        losses.append(former_loss(head, x, labels) if former else head(x, labels))
    if not torch.equal(*losses):
        raise AssertionError(f"the head's loss {losses[0].item()!r} differs from the former {losses[1].item()!r}")
    times = {"new": [], "former": []}
    for r in range(rounds + 1):  # the first round warms up
        for former in ((False, True) if r % 2 else (True, False)):
            times["former" if former else "new"].append(_forward_backward(head, x, labels, former))
    return {k: v[1:] for k, v in times.items()}


def _spawn(kind: str, classes: int, rate: float, world: int, batch: int, dim: int, repeats: int) -> list[dict]:
    """One configuration in ``world`` fresh processes → each process's result."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(_worker, (world, port, kind, classes, rate, batch, dim, repeats, out), nprocs=world,
                           start_method="spawn")
        return [json.loads(Path(out, f"{r}.json").read_text()) for r in range(world)]


def measure(kind: str, classes: int, rate: float, world: int, batch: int, dim: int, repeats: int) -> dict:
    """One configuration in ``world`` fresh processes → {"seconds": slowest median step, "peak_mb": largest}."""
    rows = _spawn(kind, classes, rate, world, batch, dim, repeats)
    return {"seconds": max(r["seconds"] for r in rows), "peak_mb": max(r["peak_mb"] for r in rows)}


def against_former(classes: int, rate: float, world: int, batch: int, dim: int, rounds: int) -> dict:
    """Forward + backward seconds of the library's PartialFC and of :func:`former_loss`, alternating in the same
    ``world`` processes: per round the slowest process, then the fastest round of each."""
    rows = _spawn("compare", classes, rate, world, batch, dim, rounds)
    best = {k: min(max(r[k][i] for r in rows) for i in range(rounds)) for k in ("new", "former")}
    return {"fb_seconds": best["new"], "former_fb_seconds": best["former"],
            "former_time_ratio": best["new"] / best["former"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 0.3, 0.1])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds against the former formulation")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)

    rows = []
    print(f"torch {torch.__version__}, fp32 CPU ({platform.processor() or platform.machine()}), one thread per "
          f"process, batch {args.batch} × {args.dim}-d per process, step = forward + backward + SGD; ratios to "
          f"the full head of the same C; × former: PartialFC's forward + backward against the former "
          f"formulation's, fastest of {args.rounds} alternating rounds; × f. mem: their peak memory")
    print(f"{'classes':>9}  {'head':<11} {'procs':>5} {'rate':>5} {'s/step':>8} {'× time':>7} "
          f"{'MB/proc':>8} {'× memory':>8} {'× former':>8} {'× f. mem':>8}")
    for classes in args.classes:
        configs = [("full", 1.0, 1)] + [("partial", r, w) for w in (1, 2) for r in args.rates]
        base = None
        for kind, rate, world in configs:
            m = measure(kind, classes, rate, world, args.batch, args.dim, args.repeats)
            base = base or m
            row = {"classes": classes, "head": "ArcFaceHead" if kind == "full" else "PartialFC", "procs": world,
                   "rate": rate, **m, "time_ratio": m["seconds"] / base["seconds"],
                   "memory_ratio": m["peak_mb"] / base["peak_mb"]}
            against = ""
            if kind == "partial":
                former = measure("former", classes, rate, world, args.batch, args.dim, args.repeats)
                row.update(against_former(classes, rate, world, args.batch, args.dim, args.rounds),
                           former_peak_mb=former["peak_mb"], former_memory_ratio=m["peak_mb"] / former["peak_mb"])
                against = f" {row['former_time_ratio']:>8.3f} {row['former_memory_ratio']:>8.3f}"
            rows.append(row)
            print(f"{classes:>9,}  {row['head']:<11} {world:>5} {rate:>5.2f} {m['seconds']:>8.3f} "
                  f"{row['time_ratio']:>7.2f} {m['peak_mb']:>8.0f} {row['memory_ratio']:>8.2f}{against}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
