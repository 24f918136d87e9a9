"""Margin heads: from L-Softmax to ArcFace (book chapters "Angular margins" and "CosFace and ArcFace").

Each head holds the class weights and maps (embeddings (N, D), labels (N,)) to a cross-entropy loss; its
``logits(x, labels)`` gives the (N, C) logits with the margin applied to each row's target class (or,
without labels, the plain logits used for prediction). The target-logit functions ψ are exposed as
plain functions of cos θ so that the chapters can plot them and the tests can check them.

All margin arithmetic runs in fp32 with autocast switched off: under bf16/fp16 the cosine of a small
angle rounds to 1 and the margin would vanish or produce NaN gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facelearn.recognition.normalisation import CosineLinear

_MIN_SIN = 1e-6  # floor on sin θ in derivatives: |dθ/dcos| = 1/sin θ ≤ 10⁶ at θ = 0 and π


def _sin_from_cos(cos: torch.Tensor) -> torch.Tensor:
    """sin θ = √(1 − cos²θ) for θ ∈ [0, π]: the exact value, with the derivative −cos θ / max(sin θ, 10⁻⁶)
    so that the gradient stays finite at θ = 0 and π (where the true derivative is infinite)."""
    sin = torch.sqrt((1.0 - cos.detach() ** 2).clamp_min(0.0))
    slope = -cos.detach() / sin.clamp_min(_MIN_SIN)
    return sin + slope * (cos - cos.detach())


def _angle(cos: torch.Tensor) -> torch.Tensor:
    """θ = arccos(cos θ): the exact value, with the derivative −1 / max(sin θ, 10⁻⁶) (finite at 0 and π)."""
    c = cos.detach().clamp(-1.0, 1.0)
    slope = -1.0 / torch.sqrt((1.0 - c**2).clamp_min(0.0)).clamp_min(_MIN_SIN)
    return torch.acos(c) + slope * (cos - cos.detach())


def cos_m_theta(cos: torch.Tensor, m: int) -> torch.Tensor:
    """cos(mθ) from cos θ by the multiple-angle (Chebyshev) expansion (L-Softmax eq. (7)):

    cos(mθ) = Σ_n (−1)^n C(m, 2n) cos^{m−2n}θ (1 − cos²θ)^n,  n = 0 … ⌊m/2⌋.

    A polynomial in cos θ: no arccos, so the value and gradient are exact and finite at θ = 0 and π.
    """
    sin2 = 1.0 - cos * cos
    out = torch.zeros_like(cos)
    for n in range(m // 2 + 1):
        out = out + (-1) ** n * math.comb(m, 2 * n) * cos ** (m - 2 * n) * sin2**n
    return out


def lsoftmax_psi(cos: torch.Tensor, m: int) -> torch.Tensor:
    """ψ(θ) = (−1)^k cos(mθ) − 2k for θ ∈ [kπ/m, (k+1)π/m], k ∈ {0, …, m−1} (L-Softmax eq. (6)).

    Monotone decreasing on [0, π], equal to cos θ for m = 1. k is read off θ (no gradient flows through
    it: ψ is continuous and its derivative is zero at every kπ/m). cos: any shape → same shape.
    """
    with torch.no_grad():
        k = torch.floor(_angle(cos) * m / math.pi).clamp(0, m - 1)
    sign = 1.0 - 2.0 * torch.remainder(k, 2)
    return sign * cos_m_theta(cos, m) - 2.0 * k


def cosface_psi(cos: torch.Tensor, m: float) -> torch.Tensor:
    """ψ(θ) = cos θ − m (CosFace eq. (4), additive cosine margin)."""
    return cos - m


def arcface_psi(cos: torch.Tensor, m: float, easy_margin: bool = False) -> torch.Tensor:
    """ψ(θ) = cos(θ + m) (ArcFace eq. (3), additive angular margin), computed as cos θ cos m − sin θ sin m.

    θ + m > π: cos(θ + m) would rise again and reward a larger angle, so for θ > π − m we use
    insightface's replacement ψ = cos θ − m·sin m (a CosFace-style margin, monotone in θ).
    ``easy_margin=True`` instead applies the margin only where cos θ > 0 (ψ = cos θ elsewhere).
    """
    phi = cos * math.cos(m) - _sin_from_cos(cos) * math.sin(m)
    if easy_margin:
        return torch.where(cos > 0, phi, cos)
    return torch.where(cos > math.cos(math.pi - m), phi, cos - m * math.sin(m))


def combined_psi(cos: torch.Tensor, m1: float = 1.0, m2: float = 0.5, m3: float = 0.0) -> torch.Tensor:
    """ψ(θ) = cos(m1·θ + m2) − m3 (ArcFace eq. (4), the combined margin; SphereFace m1, ArcFace m2, CosFace m3).

    Where m1·θ + m2 would pass π, ψ continues as cos θ − cos θ* − 1 − m3 with θ* = (π − m2)/m1, which is
    continuous at θ* and decreasing. (For m1 = 1, m3 = 0 use :func:`arcface_psi` to get insightface's
    exact ArcFace; the two agree for θ ≤ π − m2.)
    """
    theta = _angle(cos)
    limit = (math.pi - m2) / m1
    inside = torch.cos(m1 * theta + m2) - m3
    outside = cos - math.cos(min(limit, math.pi)) - 1.0 - m3
    return torch.where(theta <= limit, inside, outside)


@dataclass(frozen=True)
class LambdaSchedule:
    """λ(iter) = max(λ_min, base·(1 + γ·iter)^(−power)) (SphereFace sec. 4, the authors' Caffe layer).

    The target logit is (λ·cos θ + ψ(θ)) / (1 + λ): a large λ starts as plain softmax and the margin
    fades in as λ decays. Presets follow the authors' prototxt files.
    """

    base: float = 1000.0
    gamma: float = 0.12
    power: float = 1.0
    lambda_min: float = 5.0

    def __call__(self, iteration: int) -> float:
        return max(self.lambda_min, self.base * (1.0 + self.gamma * iteration) ** (-self.power))

    @classmethod
    def sphereface(cls) -> "LambdaSchedule":
        """SphereFace (CASIA-WebFace, m = 4): base 1000, γ 0.12, power 1, λ_min 5."""
        return cls(1000.0, 0.12, 1.0, 5.0)

    @classmethod
    def lsoftmax_mnist(cls) -> "LambdaSchedule":
        """L-Softmax (MNIST): base 1000, γ 2.5e-5, power 35, λ_min 0."""
        return cls(1000.0, 2.5e-5, 35.0, 0.0)

    @classmethod
    def constant(cls, value: float) -> "LambdaSchedule":
        """λ fixed at ``value`` (0: the full margin from the first step)."""
        return cls(value, 0.0, 1.0, value)


class _ReplaceTarget(torch.autograd.Function):
    """scale·logits with entry (i, labels[i]) replaced by scale·target[i], touching only those N entries.

    Forward writes the N targets into one fresh (N, C) tensor; backward is the same in reverse: the
    logits' gradient is scale·grad with the target entries zeroed (they were overwritten), the targets'
    gradient is scale·grad at those entries. No (N, C) mask and no second (N, C) temporary.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor,
                scale: float) -> torch.Tensor:
        ctx.save_for_backward(labels)
        ctx.scale = scale
        out = logits * scale
        return out.scatter_(1, labels[:, None], (target * scale).to(out.dtype)[:, None])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, torch.Tensor, None]:
        (labels,) = ctx.saved_tensors
        grad_target = grad.gather(1, labels[:, None]).squeeze(1) * ctx.scale
        grad_logits = (grad * ctx.scale).scatter_(1, labels[:, None], 0.0)
        return grad_logits, None, grad_target, None


def _replace_target(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor,
                    scale: float = 1.0) -> torch.Tensor:
    """scale·logits (N, C) with column labels[i] of row i replaced by scale·target[i] (target: (N,))."""
    return _ReplaceTarget.apply(logits, labels, target, scale)


class MarginHead(nn.Module):
    """Base of the normalised-weight heads: s·cos θ_j for j ≠ y and s·ψ(θ_y) for the target.

    Subclasses define :meth:`psi`. x: (N, D) embeddings, labels: (N,) int64 class indices.
    """

    def __init__(self, in_features: int, n_classes: int, s: float) -> None:
        super().__init__()
        self.cosine = CosineLinear(in_features, n_classes)
        self.s = s

    def psi(self, cos_target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def margin_logits(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N, C) cosines and labels → (N, C) logits with the margin on the targets (the head's formula)."""
        target = self.psi(cos.gather(1, labels[:, None]).squeeze(1))
        return _replace_target(cos, labels, target, self.s)

    def logits(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N, C): with the margin when ``labels`` are given, else s·cos θ."""
        with torch.autocast(x.device.type, enabled=False):
            cos = self.cosine(x.float())
            return self.s * cos if labels is None else self.margin_logits(cos, labels)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the margin logits: (N, D), (N,) → scalar."""
        return F.cross_entropy(self.logits(x, labels), labels)


class CosFaceHead(MarginHead):
    """CosFace / LMCL (Wang et al. 2018, eq. (4)): s·(cos θ_y − m), defaults s = 64, m = 0.35."""

    def __init__(self, in_features: int, n_classes: int, s: float = 64.0, m: float = 0.35) -> None:
        super().__init__(in_features, n_classes, s)
        self.m = m

    def psi(self, cos_target: torch.Tensor) -> torch.Tensor:
        return cosface_psi(cos_target, self.m)


class ArcFaceHead(MarginHead):
    """ArcFace (Deng et al. 2019, eq. (3)): s·cos(θ_y + m), defaults s = 64, m = 0.5; see :func:`arcface_psi`."""

    def __init__(self, in_features: int, n_classes: int, s: float = 64.0, m: float = 0.5,
                 easy_margin: bool = False) -> None:
        super().__init__(in_features, n_classes, s)
        self.m, self.easy_margin = m, easy_margin

    def psi(self, cos_target: torch.Tensor) -> torch.Tensor:
        return arcface_psi(cos_target, self.m, self.easy_margin)


class CombinedMarginHead(MarginHead):
    """The combined margin s·(cos(m1·θ_y + m2) − m3) (ArcFace eq. (4)); see :func:`combined_psi`."""

    def __init__(self, in_features: int, n_classes: int, s: float = 64.0, m1: float = 1.0, m2: float = 0.3,
                 m3: float = 0.2) -> None:
        super().__init__(in_features, n_classes, s)
        self.m1, self.m2, self.m3 = m1, m2, m3

    def psi(self, cos_target: torch.Tensor) -> torch.Tensor:
        return combined_psi(cos_target, self.m1, self.m2, self.m3)


class _AnnealedHead(nn.Module):
    """Shared by L-Softmax and SphereFace: target (λ·‖·‖cos θ + ‖·‖ψ(θ)) / (1 + λ), λ from a schedule.

    ``iteration`` (a buffer, saved in checkpoints) counts training forward passes and drives λ.
    """

    def __init__(self, m: int, schedule: LambdaSchedule) -> None:
        super().__init__()
        if m < 1:
            raise ValueError(f"the margin m must be a positive integer, got {m}")
        self.m, self.schedule = m, schedule
        self.register_buffer("iteration", torch.zeros((), dtype=torch.int64))

    @property
    def lam(self) -> float:
        """The current λ."""
        return self.schedule(int(self.iteration))

    def _blend(self, cos: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        lam = self.lam
        return scale * (lam * cos + lsoftmax_psi(cos, self.m)) / (1.0 + lam)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the margin logits: (N, D), (N,) → scalar; advances λ when training."""
        loss = F.cross_entropy(self.logits(x, labels), labels)
        if self.training:
            self.iteration += 1
        return loss


class LSoftmaxHead(_AnnealedHead):
    """Large-Margin Softmax (Liu et al. 2016, eqs. (5)–(7)): un-normalised W (C, D), no bias.

    Logits ‖W_j‖‖x‖cos θ_j; the target becomes ‖W_y‖‖x‖ψ(θ_y) blended with λ (:class:`LambdaSchedule`).
    """

    def __init__(self, in_features: int, n_classes: int, m: int = 4,
                 schedule: LambdaSchedule = LambdaSchedule.lsoftmax_mnist()) -> None:
        super().__init__(m, schedule)
        self.weight = nn.Parameter(torch.empty(n_classes, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def logits(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x, w = x.float(), self.weight.float()
            plain = F.linear(x, w)
            if labels is None:
                return plain
            norms = x.norm(dim=1) * w[labels].norm(dim=1)
            cos = (plain.gather(1, labels[:, None]).squeeze(1) / norms.clamp_min(1e-12)).clamp(-1.0, 1.0)
            return _replace_target(plain, labels, self._blend(cos, norms))


class SphereFaceHead(_AnnealedHead):
    """SphereFace / A-Softmax (Liu et al. 2017, eq. (7)): ‖W_j‖ = 1, logits ‖x‖cos θ_j, target ‖x‖ψ(θ_y), m = 4."""

    def __init__(self, in_features: int, n_classes: int, m: int = 4,
                 schedule: LambdaSchedule = LambdaSchedule.sphereface()) -> None:
        super().__init__(m, schedule)
        self.cosine = CosineLinear(in_features, n_classes)

    def logits(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            norm = x.norm(dim=1)
            cos = self.cosine(x)
            plain = norm[:, None] * cos
            if labels is None:
                return plain
            return _replace_target(plain, labels, self._blend(cos.gather(1, labels[:, None]).squeeze(1), norm))
