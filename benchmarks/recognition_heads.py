"""Forward + backward time of every margin head, relative to plain softmax measured in the same run, and the
ArcFace head against the one-hot formulation it replaced (time and memory).

    python benchmarks/recognition_heads.py [--classes 10000] [--batch 256] [--dim 512] [--repeats 20] [--threads 1]
    python benchmarks/recognition_heads.py --against-one-hot [--classes 100000] [--rounds 5] [--threads 1]

The first form prints one line per head: milliseconds per step and the ratio to softmax (book: "CosFace
and ArcFace"), each round one step of every head (the order reversed every other round), the fastest round
of each. ``--against-one-hot`` times the ArcFace head (forward + backward of the cross-entropy from
the embeddings and the class weights) as the library computes it, the scale folded into the normalised
features and the margin written into the N target logits in place, against the formulation it replaced
(kept below as the baseline): autograd of ``F.normalize`` on both sides, the cosines clamped and scaled
as an (N, C) matrix, an (N, C) one-hot mask and a ``torch.where`` over the whole matrix. The two give the
same loss and gradients bit for bit (checked first), then alternate, round after round (which goes first
too), and the ratio is of the fastest round of each. It also prints peak memory
in units of one (N, C) fp32 matrix, each measured in a fresh process (Linux's peak resident size, which
follows large tensors since they are mapped and unmapped).
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from facelearn.recognition.margins import ArcFaceHead
from facelearn.recognition.training import LOSSES, make_head


def one_hot_margin_logits(head: ArcFaceHead, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The former ``MarginHead.margin_logits``: s·where(one_hot(labels), ψ(cos θ_y), cos θ)."""
    target = head.psi(cos.gather(1, labels[:, None]).squeeze(1))
    mask = F.one_hot(labels, cos.shape[1]).bool()
    return head.s * torch.where(mask, target.unsqueeze(1), cos)


def _cosines(head: ArcFaceHead, x: torch.Tensor, one_hot: bool) -> torch.Tensor:
    """The baseline's clamped cos θ (CosineLinear), or the library's unclamped s·cos θ: (N, D) → (N, C)."""
    return head.cosine(x) if one_hot else head.scaled_cosine(x)


def _margin(head: ArcFaceHead, cos: torch.Tensor, labels: torch.Tensor, one_hot: bool) -> torch.Tensor:
    return one_hot_margin_logits(head, cos, labels) if one_hot else head.margin_logits(cos, labels)


def _step(head: ArcFaceHead, x: torch.Tensor, labels: torch.Tensor, one_hot: bool) -> torch.Tensor:
    loss = F.cross_entropy(_margin(head, _cosines(head, x, one_hot), labels, one_hot), labels)
    loss.backward()
    return loss


def check_same(head: ArcFaceHead, x: torch.Tensor, labels: torch.Tensor) -> None:
    """The library's step and the baseline's give the same loss and gradients (x and W), bit for bit
    (s = 64 is a power of two); raises AssertionError otherwise."""
    results = []
    for one_hot in (False, True):
        head.zero_grad(set_to_none=True)
        x.grad = None
        results.append([_step(head, x, labels, one_hot).detach(), x.grad] + [p.grad for p in head.parameters()])
    if not all(torch.equal(a, b) for a, b in zip(*results)):
        raise AssertionError("the ArcFace head's loss or gradients differ from the one-hot baseline's")


def _peak_memory(args: argparse.Namespace, one_hot: bool) -> tuple[float, float, float]:
    """Peak memory, in (N, C) fp32 matrices, of the cosines from (x, W) (Ŵ included), of the margin's
    forward beyond the cosines, and of the whole step (cosines, margin, cross-entropy, backward)."""
    code = (f"import sys; sys.path.insert(0, {sys.path[0]!r}); from recognition_heads import _margin_peak; "
            f"print(_margin_peak({args.batch}, {args.classes}, {args.dim}, {one_hot}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return ast.literal_eval(out.strip().splitlines()[-1])


def _margin_peak(n: int, c: int, d: int, one_hot: bool) -> tuple[float, float, float]:
    torch.set_num_threads(1)
    head = ArcFaceHead(d, c)
    x = torch.randn(n, d, requires_grad=True)
    labels = torch.randint(0, c, (n,))
    matrices = 1024 / (n * c * 4)
    start = _restart_peak()
    cos = _cosines(head, x, one_hot)
    cosines = (_status_kib("VmHWM") - start) * matrices
    after_cosines = _restart_peak()
    logits = _margin(head, cos, labels, one_hot)
    margin = (_status_kib("VmHWM") - after_cosines) * matrices
    del cos
    F.cross_entropy(logits, labels).backward()
    return cosines, margin, (_status_kib("VmHWM") - start) * matrices


def _restart_peak() -> int:
    """Restart the peak resident size (VmHWM) from the current one, and return that (KiB)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status_kib("VmRSS")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def against_one_hot(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    head = ArcFaceHead(args.dim, args.classes)
    x = torch.randn(args.batch, args.dim, requires_grad=True)
    labels = torch.randint(0, args.classes, (args.batch,))
    check_same(head, x, labels)  # also the warm-up
    best = {False: float("inf"), True: float("inf")}
    for r in range(args.rounds):
        for one_hot in ((False, True) if r % 2 == 0 else (True, False)):
            head.zero_grad(set_to_none=True)
            start = time.perf_counter()
            _step(head, x, labels, one_hot)
            best[one_hot] = min(best[one_hot], time.perf_counter() - start)
    print(f"ArcFace head, {args.batch} × {args.dim} embeddings, {args.classes} classes, fp32, "
          f"{torch.get_num_threads()} thread(s), device cpu; the same loss and gradients bit for bit; "
          f"min of {args.rounds} alternating rounds")
    print(f"  one-hot + torch.where (baseline):       {best[True] * 1e3:8.1f} ms/step")
    print(f"  s folded, targets in place (library):   {best[False] * 1e3:8.1f} ms/step  "
          f"{best[False] / best[True]:.3f}× the baseline (goal ≤ 0.9×)")
    if args.memory:
        new, old = _peak_memory(args, False), _peak_memory(args, True)
        print(f"  peak memory in (N, C) fp32 matrices (the logits are 1; Ŵ, the normalised (C, D) weights, "
              f"is D/N = {args.dim / args.batch:.2f}):")
        for name, a, b in zip(["cosines from x and W, forward", "margin forward, beyond the cosines",
                               "whole step, forward + backward"], old, new):
            print(f"    {name:36s} baseline {a:.2f}, library {b:.2f}")


def every_head(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.dim, requires_grad=True)
    y = torch.randint(0, args.classes, (args.batch,))
    heads = {loss: make_head(loss, args.dim, args.classes, s=64.0) for loss in LOSSES if loss != "triplet"}
    for head in heads.values():  # warm up
        head(x, y).backward()
    best = dict.fromkeys(heads, float("inf"))
    for r in range(args.repeats):  # one step of every head per round, the order reversed every other round
        for loss in (list(heads) if r % 2 == 0 else list(heads)[::-1]):
            start = time.perf_counter()
            heads[loss](x, y).backward()
            best[loss] = min(best[loss], (time.perf_counter() - start) * 1e3)
    print(f"{args.batch} × {args.dim} embeddings, {args.classes} classes, fp32, {torch.get_num_threads()} "
          f"thread(s), device cpu; fastest of {args.repeats} alternating rounds")
    for loss, ms in best.items():
        print(f"{loss:15s} {ms:8.2f} ms/step  {ms / best['softmax']:5.2f}× softmax")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=None, help="default 10000 (100000 with --against-one-hot)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--against-one-hot", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-memory", dest="memory", action="store_false")
    args = ap.parse_args()
    args.classes = args.classes or (100_000 if args.against_one_hot else 10_000)
    torch.set_num_threads(args.threads)
    (against_one_hot if args.against_one_hot else every_head)(args)


if __name__ == "__main__":
    main()
