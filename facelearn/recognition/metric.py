"""Metric losses: triplet loss with three mining strategies, and center loss (book chapter "Metric learning").

Triplet loss (FaceNet, Schroff et al. 2015, eq. (1)) works on squared distances between L2-normalised
embeddings, max(0, ‖a − p‖² − ‖a − n‖² + α) with α = 0.2, over triplets mined inside the batch.
Center loss (Wen et al. 2016, eqs. (2)–(4)) pulls each feature to its class centre, alongside softmax.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from facelearn.recognition.normalisation import SoftmaxHead, l2_normalise

Mining = Literal["all", "hard", "semihard"]


def pairwise_squared_distances(x: torch.Tensor) -> torch.Tensor:
    """‖x_i − x_j‖² for every pair of rows: (N, D) → (N, N), ≥ 0, exact zeros on the diagonal."""
    d = (x * x).sum(1, keepdim=True) - 2.0 * x @ x.T + (x * x).sum(1)[None, :]
    d = d.clamp_min(0.0)
    return d * (1.0 - torch.eye(len(x), device=x.device, dtype=x.dtype))


def mine_triplets(d: torch.Tensor, labels: torch.Tensor, mining: Mining = "semihard",
                  margin: float = 0.2) -> torch.Tensor:
    """Triplets (a, p, n) chosen from a distance matrix d (N, N) and labels (N,) → (T, 3) int64.

    - ``all``: every valid triplet whose loss is positive (batch-all, Hermans et al. 2017);
    - ``hard``: per anchor, its farthest positive and its nearest negative (batch-hard);
    - ``semihard``: per (anchor, positive), the nearest negative farther than the positive
      (d_ap < d_an, FaceNet sec. 3.2); if none is, the farthest negative (as TensorFlow-addons does).
    """
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos, neg = same & ~eye, ~same
    if mining == "all":
        valid = pos[:, :, None] & neg[:, None, :]
        loss = d[:, :, None] - d[:, None, :] + margin
        return torch.nonzero(valid & (loss > 0))
    if mining == "hard":
        anchors = torch.nonzero(pos.any(1) & neg.any(1)).squeeze(1)
        p = torch.where(pos, d, torch.full_like(d, -1.0)).argmax(1)
        n = torch.where(neg, d, torch.full_like(d, float("inf"))).argmin(1)
        return torch.stack([anchors, p[anchors], n[anchors]], 1)
    if mining == "semihard":
        a, p = torch.nonzero(pos & neg.any(1)[:, None]).unbind(1)
        d_an = d[a]  # (P, N)
        outside = neg[a] & (d_an > d[a, p][:, None])
        nearest_outside = torch.where(outside, d_an, torch.full_like(d_an, float("inf"))).argmin(1)
        farthest = torch.where(neg[a], d_an, torch.full_like(d_an, -1.0)).argmax(1)
        n = torch.where(outside.any(1), nearest_outside, farthest)
        return torch.stack([a, p, n], 1)
    raise ValueError(f"unknown mining {mining!r}: expected 'all', 'hard' or 'semihard'")


def triplet_categories(d: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> dict[str, float]:
    """Fractions of all valid triplets that are easy (d_an > d_ap + α), semi-hard (d_ap < d_an ≤ d_ap + α)
    and hard (d_an ≤ d_ap), from distances d (N, N) and labels (N,) (FaceNet sec. 3.2's vocabulary)."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    valid = (same & ~eye)[:, :, None] & (~same)[:, None, :]
    ap, an = d[:, :, None].expand_as(valid)[valid], d[:, None, :].expand_as(valid)[valid]
    n = max(int(valid.sum()), 1)
    return {"easy": float((an > ap + margin).sum()) / n,
            "semi-hard": float(((an > ap) & (an <= ap + margin)).sum()) / n,
            "hard": float((an <= ap).sum()) / n}


def triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2, mining: Mining = "semihard",
                 normalise: bool = True) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
    """Mean of max(0, ‖a − p‖² − ‖a − n‖² + α) over the mined triplets (FaceNet eq. (1)).

    embeddings: (N, D), labels: (N,) → (scalar loss, logs: ``triplets`` the number of mined triplets T, a
    float, and ``active`` the fraction of them whose loss is positive, a 0-d tensor on the embeddings'
    device). Embeddings are L2-normalised first (FaceNet's embedding lives on the sphere).
    """
    x = l2_normalise(embeddings.float()) if normalise else embeddings.float()
    d = pairwise_squared_distances(x)
    with torch.no_grad():
        t = mine_triplets(d, labels, mining, margin)  # (T, 3): knowing T waits for the device, this loss's one wait
    if len(t) == 0:
        return x.sum() * 0.0, {"triplets": 0.0, "active": x.new_zeros(())}
    losses = F.relu(d[t[:, 0], t[:, 1]] - d[t[:, 0], t[:, 2]] + margin)
    return losses.mean(), {"triplets": float(len(t)), "active": (losses.detach() > 0).float().mean()}


class CenterLoss(nn.Module):
    """L_C = ½·mean_i ‖x_i − c_{y_i}‖² (Wen et al. 2016, eq. (2); the paper sums, we average over the batch).

    The centres c (C, D) are a buffer, not parameters: after each training forward they move by the
    paper's rule (eq. (4)), c_j ← c_j − α·Σ_i δ(y_i = j)(c_j − x_i) / (1 + Σ_i δ(y_i = j)).
    """

    def __init__(self, in_features: int, n_classes: int, alpha: float = 0.5) -> None:
        super().__init__()
        self.alpha = alpha
        self.register_buffer("centers", torch.zeros(n_classes, in_features))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, D), (N,) → scalar; ∂L_C/∂x_i = (x_i − c_{y_i})/N (eq. (3))."""
        x = x.float()
        diff = x - self.centers[labels]
        loss = 0.5 * (diff * diff).sum(1).mean()
        if self.training:
            self.update_centers(x.detach(), labels)
        return loss

    @torch.no_grad()
    def update_centers(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        """The center update of eq. (4) for one batch x (N, D), labels (N,)."""
        # n_j by adding ones, not torch.bincount, whose length depends on max(labels): it would wait for the device
        counts = x.new_zeros(len(self.centers)).index_add_(0, labels, x.new_ones(len(x)))
        sums = torch.zeros_like(self.centers).index_add_(0, labels, x)
        delta = (counts[:, None] * self.centers - sums) / (1.0 + counts[:, None])
        self.centers -= self.alpha * delta


class CenterLossHead(nn.Module):
    """Softmax + λ·center loss (Wen et al. 2016, eq. (5)); defaults λ = 0.003, α = 0.5 as in the paper.

    (N, D), (N,) → scalar; ``logits(x)`` are the softmax logits; ``last`` holds the two terms for logging
    (detached 0-d tensors on the features' device).
    """

    def __init__(self, in_features: int, n_classes: int, lam: float = 0.003, alpha: float = 0.5) -> None:
        super().__init__()
        self.softmax = SoftmaxHead(in_features, n_classes)
        self.center = CenterLoss(in_features, n_classes, alpha)
        self.lam = lam
        self.last: dict[str, torch.Tensor] = {}

    def logits(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.softmax.logits(x)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        ls, lc = self.softmax(x, labels), self.center(x, labels)
        self.last = {"softmax": ls.detach(), "center": lc.detach()}
        return ls + self.lam * lc
