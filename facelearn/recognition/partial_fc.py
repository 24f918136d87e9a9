"""Partial FC: a margin head for millions of identities (book chapter "Millions of identities").

The classifier of a face-recognition network holds one centre per identity, C × D numbers: at 2 M
identities and D = 512 that is 4 GB of weights before the optimiser's state and the (N, C) logits. Partial
FC (An et al., CVPR 2022) splits the work two ways:

* **model parallel**: the W processes each keep C / W of the centres; every process gathers the whole
  batch's embeddings (with their gradients) and labels (N = W·B rows) and computes the logits against its
  own centres only;
* **sampled negatives**: each step a process keeps its centres that are some row's positive plus a random
  ``sample_rate`` share of the others, and computes logits for those alone.

The softmax cross-entropy is then computed across the shards without ever assembling the (N, C) logits:
every process all-reduces each row's maximum and its sum of exponentials (a numerically stable
log-sum-exp over all shards) and the target logit from the shard that holds it. With ``sample_rate = 1``
loss and gradients equal the single-process head's on the same global batch; in a single process
(W = 1) the module is that head, with sampling.

The logits are computed as the margin heads compute theirs (:func:`~facelearn.recognition.margins.scaled_cosine`,
:func:`~facelearn.recognition.margins.margin_logits`): s folded into the normalised features, and the clamp and
s·ψ(θ_y) written into the (N, S_r) matrix in place; a row whose class lives on another process keeps s·cos θ.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.distributed as dist
from torch import nn

from facelearn.engine import distributed
from facelearn.recognition import margins

#: The margins Partial FC applies to the sampled target logits (ψ of facelearn.recognition.margins).
MARGINS = ("arcface", "cosface", "combined")


def shard_range(n_classes: int, world: int, rank: int) -> tuple[int, int]:
    """The classes [start, stop) kept by process ``rank`` of ``world``: C split in W nearly equal blocks."""
    base, extra = divmod(n_classes, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


class _SumOverShards(torch.autograd.Function):
    """All-reduce (sum) a per-row value over the processes, with an identity backward.

    Every process computes the same loss from the reduced value, so the gradient arriving at it is the
    same on every process, and ∂(Σ_r v_r)/∂v_r = 1: each process passes it on to its own part unchanged.
    (A summing backward, as in ``torch.distributed.nn.all_reduce``, would count the replicated loss W times.)
    """

    @staticmethod
    def forward(ctx, value: torch.Tensor) -> torch.Tensor:
        value = value.clone()
        dist.all_reduce(value)
        return value

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


class _GatherRows(torch.autograd.Function):
    """(B, D) rows of every process → (W·B, D), in rank order; backward: the gradient of this process's rows
    summed over the processes (each computed it from its own centres), times ``factor``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor, ctx.rows = factor, len(x)
        parts = [torch.empty_like(x) for _ in range(distributed.world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = distributed.rank() * ctx.rows
        return grad[start:start + ctx.rows] * ctx.factor, None


def distributed_cross_entropy(logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy of N rows whose logits are split over the processes' class shards.

    logits: (N, S_r) this process's (sampled) logits; rows, cols: (T,) where row ``rows[t]``'s target logit
    sits at column ``cols[t]`` of this shard (rows whose target lives elsewhere are absent).
    loss_i = log Σ_j exp(z_ij − M_i) + M_i − z_iy, M_i = max_j z_ij over every shard (all-reduced MAX, a
    constant: the loss does not depend on it); Σ_j and z_iy all-reduced (SUM) over the shards.
    """
    n = len(logits)
    shift = logits.detach().max(dim=1).values
    target = torch.zeros(n, dtype=logits.dtype, device=logits.device).index_put((rows,), logits[rows, cols])
    if distributed.world_size() > 1:
        dist.all_reduce(shift, op=dist.ReduceOp.MAX)
    sums = (logits - shift[:, None]).exp_().sum(dim=1)
    if distributed.world_size() > 1:
        sums, target = _SumOverShards.apply(sums), _SumOverShards.apply(target)
    return (torch.log(sums) + shift - target).mean()


class PartialFC(nn.Module):
    """Margin head with C class centres sharded over the processes and negatives sampled (An et al. 2022).

    Args:
        in_features, n_classes: D and C (all processes together).
        margin: ``arcface`` (ψ = cos(θ + m), m = 0.5), ``cosface`` (ψ = cos θ − m, m = 0.35) or ``combined``
            (ψ = cos(θ + 0.3) − 0.2), ψ from :mod:`facelearn.recognition.margins`, applied to the targets.
        s: scale of the logits s·cos θ_j and s·ψ(θ_y).
        sample_rate: share of this process's centres kept each step; positives are always kept.

    ``forward(x (B, D), labels (B,))`` → the scalar loss over the global batch (W·B rows). Under torchrun
    the backbone must be wrapped in ``DistributedDataParallel``, which averages its gradients over the W
    processes; the gradient sent back to each process's embeddings is scaled by W to match, and the
    centres (``sharded = True``) are left out of DDP and saved whole by :class:`facelearn.engine.Trainer`
    (:meth:`gather` / :meth:`shard`).
    """

    sharded = True

    def __init__(self, in_features: int, n_classes: int, margin: str = "arcface", s: float = 64.0,
                 m: float | None = None, sample_rate: float = 1.0) -> None:
        super().__init__()
        if margin not in MARGINS:
            raise ValueError(f"unknown margin {margin!r}; Partial FC applies {', '.join(MARGINS)}")
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must lie in (0, 1], got {sample_rate}")
        self.n_classes, self.s, self.sample_rate = n_classes, s, sample_rate
        distributed.setup()  # under torchrun: join the process group, if the trainer has not yet
        self.world, self.rank = distributed.world_size(), distributed.rank()
        self.start, self.stop = shard_range(n_classes, self.world, self.rank)
        m = (0.35 if margin == "cosface" else 0.5) if m is None else m  # each paper's margin
        self.psi = {"arcface": partial(margins.arcface_psi, m=m), "cosface": partial(margins.cosface_psi, m=m),
                    "combined": partial(margins.combined_psi, m1=1.0, m2=0.3, m3=0.2)}[margin]
        # one draw from the shared generator keeps the processes in step; each shard then gets its own values
        seed = int(torch.randint(2**62, (1,))) + self.rank
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(self.stop - self.start, in_features, generator=g) * 0.01)

    def sample(self, labels: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The centres kept this step and each row's target among them.

        labels: (N,) global class indices of the whole batch → (index (S_r,) sorted local centre indices, or
        ``None`` for all of them; target (N,) column of each row's class in the kept centres, −1 when the
        class lives on another process). Positives always kept; negatives drawn uniformly at random.
        """
        local = labels - self.start
        mine = (local >= 0) & (local < len(self.weight))
        if self.sample_rate >= 1.0:
            return None, torch.where(mine, local, torch.full_like(local, -1))
        positives = torch.unique(local[mine])
        n = max(int(self.sample_rate * len(self.weight)), len(positives))
        score = torch.rand(len(self.weight), device=labels.device)
        score[positives] = 2.0  # above every random score: topk keeps them
        index = torch.topk(score, n).indices.sort().values
        target = torch.searchsorted(index, local.clamp(0, len(self.weight) - 1))
        return index, torch.where(mine, target, torch.full_like(target, -1))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean margin cross-entropy over the global batch: x (B, D), labels (B,) of this process → scalar."""
        if self.world > 1:
            x = _GatherRows.apply(x, float(self.world))
            gathered = [torch.empty_like(labels) for _ in range(self.world)]
            dist.all_gather(gathered, labels)
            labels = torch.cat(gathered)
        index, target = self.sample(labels)
        with torch.autocast(x.device.type, enabled=False):
            weight = self.weight if index is None else self.weight[index]
            scaled = margins.scaled_cosine(x.float(), weight.float(), self.s)
            logits = margins.margin_logits(scaled, target, self.psi, self.s)
            rows = torch.nonzero(target >= 0).squeeze(1)
            cols = target[rows]
            self.sampled = {"index": index, "rows": rows.detach(), "cols": cols.detach(), "logits": logits.detach()}
            return distributed_cross_entropy(logits, rows, cols)

    # -- checkpoints: the whole (C, …) tensor, whatever the number of processes ------------------------------
    def gather(self, shard: torch.Tensor) -> torch.Tensor:
        """This process's rows (C_r, …) of a per-class tensor → all C rows, on every process (a collective)."""
        if self.world == 1:
            return shard
        sizes = [stop - start for start, stop in (shard_range(self.n_classes, self.world, r) for r in range(self.world))]
        padded = shard.new_zeros((max(sizes), *shard.shape[1:]))
        padded[: len(shard)] = shard
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    def shard(self, full: torch.Tensor) -> torch.Tensor:
        """All C rows of a per-class tensor → this process's rows (C_r, …)."""
        if len(full) != self.n_classes:
            raise ValueError(f"expected {self.n_classes} class rows, got {len(full)}")
        return full[self.start:self.stop].clone()


def classifier_bytes(n_classes: int, dim: int = 512, world: int = 1, sample_rate: float = 1.0,
                     batch: int = 128, momentum: bool = True) -> dict[str, float]:
    """Bytes per process of a classifier over ``n_classes`` fp32 centres of ``dim``: weights and their
    gradient and momentum (C/W rows each), and the logits of the global batch (W·batch rows) against the
    sampled share of the shard (forward values and their gradient)."""
    rows = math.ceil(n_classes / world)
    weights = rows * dim * 4
    logits = 2 * world * batch * math.ceil(sample_rate * rows) * 4
    return {"weights": weights, "gradient": weights, "momentum": weights if momentum else 0, "logits": logits,
            "total": weights * (3 if momentum else 2) + logits}
