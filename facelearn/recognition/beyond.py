"""Beyond ArcFace: Sub-center ArcFace, CurricularFace and AdaFace (book chapter "Beyond ArcFace").

Each keeps ArcFace's normalised weights and scale and changes one thing: how many centres a class has
(noisy labels), how hard negatives are weighted over training (curriculum), or how large the margin is
for each sample (image quality, read off the feature norm). Same interface as
:class:`facelearn.recognition.margins.MarginHead`: (N, D), (N,) → loss; ``logits(x, labels)``.
"""

from __future__ import annotations

import math

import torch

from facelearn.recognition.margins import (ArcFaceHead, MarginHead, _angle, arcface_psi, scaled_cosine, take_targets,
                                           write_targets)
from facelearn.recognition.normalisation import CosineLinear


class SubCenterArcFaceHead(ArcFaceHead):
    """Sub-center ArcFace (Deng et al. 2020, eq. (2)): K centres per class, cos θ_j = max_k cos θ_{j,k}.

    A noisy sample can sit near a non-dominant sub-centre without pulling the class's dominant one.
    Weights: (C·K, D); defaults K = 3, s = 64, m = 0.5.
    """

    def __init__(self, in_features: int, n_classes: int, k: int = 3, s: float = 64.0, m: float = 0.5) -> None:
        super().__init__(in_features, n_classes, s, m)
        self.k, self.n_classes = k, n_classes
        self.cosine = CosineLinear(in_features, n_classes * k)

    def logits(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            if labels is None:
                return self.s * self.cosine(x.float()).view(len(x), self.n_classes, self.k).amax(dim=2)
            return self.margin_logits(self.scaled_cosine(x.float()), labels)

    def scaled_cosine(self, x: torch.Tensor) -> torch.Tensor:
        """s·max_k cos θ_{j,k}: (N, D) → (N, C), not yet clamped. (``max`` keeps the index of the closest
        sub-centre, not its values, for the backward, so the margin can be written into the result.)"""
        scaled = scaled_cosine(x, self.cosine.weight.float(), self.s)
        return scaled.view(len(x), self.n_classes, self.k).max(dim=2).values


class CurricularFaceHead(MarginHead):
    """CurricularFace (Huang et al. 2020, eqs. (7)–(10)): target s·cos(θ_y + m) as ArcFace; a negative j
    with cos θ_j > cos(θ_y + m) (a hard one) gets s·cos θ_j·(t + cos θ_j).

    t is a running mean of cos θ_y (t ← 0.01·mean + 0.99·t, eq. (10)): early in training t ≈ 0 and hard
    negatives are down-weighted (easy samples first), later t → 1 and they are emphasised.
    """

    def __init__(self, in_features: int, n_classes: int, s: float = 64.0, m: float = 0.5,
                 momentum: float = 0.01) -> None:
        super().__init__(in_features, n_classes, s)
        self.m, self.momentum = m, momentum
        self.register_buffer("t", torch.zeros(()))

    def psi(self, cos_target: torch.Tensor) -> torch.Tensor:
        return arcface_psi(cos_target, self.m)

    def margin_logits(self, scaled: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = scaled.clamp(-self.s, self.s) / self.s
        cos_y = take_targets(cos, labels)
        target = self.psi(cos_y)
        if self.training:
            with torch.no_grad():
                self.t.mul_(1 - self.momentum).add_(self.momentum * cos_y.mean())
        hard = cos > target.detach()[:, None]
        modulated = self.s * torch.where(hard, cos * (self.t + cos), cos)
        return write_targets(modulated, labels, self.s * target)


class AdaFaceHead(MarginHead):
    """AdaFace (Kim et al. 2022, eqs. (9)–(12)): a margin that adapts to image quality.

    The feature norm ‖x‖ is standardised with running batch statistics, ẑ = clip((‖x‖ − μ)/(σ/h), −1, 1);
    the target becomes s·(cos(θ_y − m·ẑ) − (m·ẑ + m)): high-quality samples (ẑ → 1) get an ArcFace-like
    angular margin, low-quality ones (ẑ → −1) a CosFace-like one that de-emphasises them.
    Defaults m = 0.4, h = 0.333, s = 64, running-statistics momentum 0.01.
    """

    def __init__(self, in_features: int, n_classes: int, s: float = 64.0, m: float = 0.4, h: float = 0.333,
                 momentum: float = 0.01) -> None:
        super().__init__(in_features, n_classes, s)
        self.m, self.h, self.momentum = m, h, momentum
        self.register_buffer("mean", torch.tensor(20.0))
        self.register_buffer("std", torch.tensor(100.0))
        self._zhat: torch.Tensor | None = None

    def quality(self, norms: torch.Tensor) -> torch.Tensor:
        """ẑ = clip((‖x‖ − μ)/(σ/h), −1, 1) for norms (N,) → (N,) (eq. (12)); updates μ, σ when training."""
        norms = norms.detach()
        if self.training and len(norms) > 1:
            with torch.no_grad():
                self.mean.mul_(1 - self.momentum).add_(self.momentum * norms.mean())
                self.std.mul_(1 - self.momentum).add_(self.momentum * norms.std())
        return ((norms - self.mean) / (self.std / self.h + 1e-3)).clamp(-1.0, 1.0)

    def psi(self, cos_target: torch.Tensor) -> torch.Tensor:
        z = self._zhat if self._zhat is not None else torch.zeros_like(cos_target)
        theta = (_angle(cos_target) - self.m * z).clamp(1e-3, math.pi - 1e-3)
        return torch.cos(theta) - (self.m * z + self.m)

    def logits(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            if labels is None:
                return self.s * self.cosine(x)
            self._zhat = self.quality(x.norm(dim=1))
            try:
                return self.margin_logits(self.scaled_cosine(x), labels)
            finally:
                self._zhat = None


__all__ = ["SubCenterArcFaceHead", "CurricularFaceHead", "AdaFaceHead"]
