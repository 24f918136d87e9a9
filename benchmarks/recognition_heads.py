"""Forward + backward time of every margin head, relative to plain softmax measured in the same run.

    python benchmarks/recognition_heads.py [--classes 10000] [--batch 256] [--dim 512] [--repeats 20]

Prints one line per head: milliseconds per step and the ratio to softmax (book: "CosFace and ArcFace").
"""

from __future__ import annotations

import argparse
import time

import torch

from facelearn.recognition.training import LOSSES, make_head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.dim, requires_grad=True)
    y = torch.randint(0, args.classes, (args.batch,))
    times = {}
    for loss in [name for name in LOSSES if name != "triplet"]:
        head = make_head(loss, args.dim, args.classes, s=64.0)
        for _ in range(3):
            head(x, y).backward()
        start = time.perf_counter()
        for _ in range(args.repeats):
            head(x, y).backward()
        times[loss] = (time.perf_counter() - start) / args.repeats * 1e3
    base = times["softmax"]
    print(f"{args.batch} × {args.dim} embeddings, {args.classes} classes, {args.threads} thread(s)")
    for loss, ms in times.items():
        print(f"{loss:15s} {ms:8.2f} ms/step  {ms / base:5.2f}× softmax")


if __name__ == "__main__":
    main()
