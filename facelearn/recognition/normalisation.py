"""Feature and weight normalisation (book chapter "Feature normalisation").

With both the feature x and the class weight W_j scaled to unit length, the logit W_j·x becomes cos θ_j,
the squared Euclidean distance between two embeddings becomes 2 − 2 cos θ, and a scale s is needed to
make the softmax probability of the right class approach one (NormFace, Wang et al. 2017, Prop. 2;
CosFace, Wang et al. 2018, eq. (8)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def l2_normalise(x: torch.Tensor, dim: int = -1, eps: float = 1e-12) -> torch.Tensor:
    """x / ‖x‖ along ``dim``. x: (…, D) → (…, D) of unit length (zero vectors stay zero)."""
    return F.normalize(x, p=2.0, dim=dim, eps=eps)


def squared_distance_from_cosine(cos_theta: torch.Tensor) -> torch.Tensor:
    """‖â − b̂‖² = 2 − 2 cos θ for unit vectors â, b̂ (chapter eq. (1)). Any shape → same shape."""
    return 2.0 - 2.0 * cos_theta


def cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos θ between every row of a (N, D) and every row of b (M, D) → (N, M)."""
    return l2_normalise(a) @ l2_normalise(b).T


def normface_loss_lower_bound(s: float | torch.Tensor, n_classes: int) -> torch.Tensor:
    """The smallest softmax loss reachable with normalised features and weights at scale s:

    L ≥ log(1 + (n − 1)·exp(−s·n / (n − 1)))   (NormFace Prop. 2 with s = ℓ²),

    reached when the n class weights form a regular simplex and every feature sits on its class weight.
    s: scalar or (K,) → same shape.
    """
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")
    s = torch.as_tensor(s, dtype=torch.float64)
    n = n_classes
    return torch.log1p((n - 1) * torch.exp(-s * n / (n - 1)))


def min_scale_for_probability(p: float, n_classes: int) -> float:
    """The smallest s at which the best arrangement gives the right class probability ``p``:

    s ≥ (n − 1)/n · log((n − 1)·p / (1 − p))   (CosFace eq. (8) with m = 0; inverse of the NormFace bound).
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie strictly between 0 and 1, got {p}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}")
    n = n_classes
    return (n - 1) / n * math.log((n - 1) * p / (1 - p))


class CosineLinear(nn.Module):
    """Class weights W (C, D) whose forward returns cos θ = Ŵ x̂: (N, D) → (N, C).

    The shared first step of NormFace, SphereFace, CosFace and ArcFace: normalise rows of W and the
    features, so the logit depends on the angle alone.
    """

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_classes, in_features))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(l2_normalise(x.float()), l2_normalise(self.weight.float())).clamp(-1.0, 1.0)


class NormFaceHead(nn.Module):
    """NormFace: logits s·cos θ_j, cross-entropy on them (NormFace eq. (6)). (N, D), (N,) → scalar loss.

    ``logits(x)`` gives the (N, C) logits for prediction.
    """

    def __init__(self, in_features: int, n_classes: int, s: float = 16.0) -> None:
        super().__init__()
        self.cosine = CosineLinear(in_features, n_classes)
        self.s = s

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.s * self.cosine(x)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(x), labels)


class SoftmaxHead(nn.Module):
    """Plain softmax: logits W x + b, cross-entropy. (N, D), (N,) → scalar loss; ``logits(x)``: (N, C)."""

    def __init__(self, in_features: int, n_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, n_classes)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.float())

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(x), labels)


def regular_simplex(n: int) -> torch.Tensor:
    """n unit vectors in R^n with pairwise cosine −1/(n − 1): the class weights that reach the NormFace
    bound (the centred standard basis, normalised). → (n, n) float64, one vector per row."""
    if n < 2:
        raise ValueError(f"a simplex needs at least 2 vertices, got {n}")
    centred = torch.eye(n, dtype=torch.float64) - 1.0 / n
    return l2_normalise(centred)
