"""Margin heads: from L-Softmax to ArcFace (book chapters "Angular margins" and "CosFace and ArcFace").

Each head holds the class weights and maps (embeddings (N, D), labels (N,)) to a cross-entropy loss; its
``logits(x, labels)`` gives the (N, C) logits with the margin applied to each row's target class (or,
without labels, the plain logits used for prediction). The target-logit functions ψ are exposed as
plain functions of cos θ so that the chapters can plot them and the tests can check them.

With labels, the normalised-weight heads compute s·cos θ with s folded into the N normalised features,
read the N target cosines, and write ψ and the clamp into the (N, C) matrix in place (:func:`take_targets`,
:func:`write_targets`): no (N, C) one-hot mask and no second (N, C) matrix.

All margin arithmetic runs in fp32 with autocast switched off: under bf16/fp16 the cosine of a small
angle rounds to 1 and the margin would vanish or produce NaN gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from facelearn.recognition.normalisation import CosineLinear, l2_normalise

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


class _UnitRows(torch.autograd.Function):
    """Ŵ = W / max(‖W_j‖, ε) row by row: ``F.normalize(W, dim=1)`` bit for bit, forward and backward.

    Autograd of F.normalize differentiates a division by the norm broadcast to the whole (C, D) matrix and
    builds several (C, D) temporaries (the divisor's square, a negation, the expanded quotients); here the
    same products and sums are taken in the same order on (C, 1) divisors, so the gradient is the same
    number with fewer passes over W: ∂L/∂W_j = g_j / d_j − Ŵ_j·Σ_k g_jk Ŵ_jk / d_j, d_j = max(‖W_j‖, ε)
    (the second term only where ‖W_j‖ ≥ ε). W: (C, D) → Ŵ: (C, D).
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, eps: float) -> torch.Tensor:
        norm = torch.linalg.vector_norm(weight, dim=1, keepdim=True)
        denom = norm.clamp_min(eps)
        unit = weight / denom
        ctx.save_for_backward(unit, norm, denom)
        ctx.eps = eps
        return unit

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        unit, norm, denom = ctx.saved_tensors
        grad_denom = unit.div(denom).mul_(grad).sum(1, keepdim=True).neg_()
        grad_norm = torch.where(norm >= ctx.eps, grad_denom, 0.0)  # the clamp at ε passes no gradient
        return (grad / denom).add_(unit * grad_norm), None


def scaled_cosine(x: torch.Tensor, weight: torch.Tensor, s: float) -> torch.Tensor:
    """s·cos θ = (s·x̂) Ŵᵀ, not yet clamped to [−s, s]: x (N, D), weight (C, D) → (N, C) (chapter "CosFace
    and ArcFace": the scale s of normalised features and weights).

    The scale rides on the N normalised features instead of the N × C products; for s a power of two, as
    32 and 64, the two are the same number (multiplying by 2^k is exact), otherwise they differ by rounding.
    """
    return F.linear(s * l2_normalise(x), _UnitRows.apply(weight, 1e-12))


class _TargetEntries(torch.autograd.Function):
    """scores[i, labels[i]]: (N, C), (N,) → (N,), 0 where labels[i] < 0. Unlike ``torch.gather`` it keeps none
    of the scores for the backward (which needs only their shape), so that :func:`write_targets` may
    overwrite them in place."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        held = labels >= 0
        column = labels.clamp_min(0)[:, None]
        ctx.save_for_backward(column, held)
        ctx.shape = scores.shape
        return scores.gather(1, column).squeeze(1).masked_fill_(~held, 0.0)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        column, held = ctx.saved_tensors
        return grad.new_zeros(ctx.shape).scatter_(1, column, grad.masked_fill(~held, 0.0)[:, None]), None


class _WriteTargets(torch.autograd.Function):
    """logits (N, C) clamped to [−bound, bound] with entry (i, labels[i]) overwritten by target[i], in place;
    rows with labels[i] < 0 are only clamped.

    Backward: the logits' gradient where −bound < logit < bound (``torch.clamp``'s gradient, zero on the
    bounds; read off the clamped logits, which are inside exactly where the unclamped ones were), zeroed at
    the targets (they were overwritten); the targets' gradient read off those entries. No (N, C) one-hot
    mask and no second (N, C) matrix. ``bound=None``: no clamp.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor,
                bound: float | None) -> torch.Tensor:
        held = labels >= 0
        column = labels.clamp_min(0)[:, None]
        if bound is not None:
            logits.clamp_(-bound, bound)
        kept = logits.gather(1, column).squeeze(1)  # what a row without a target keeps in its column 0
        logits.scatter_(1, column, torch.where(held, target.to(logits.dtype), kept)[:, None])
        ctx.mark_dirty(logits)
        ctx.save_for_backward(column, held, logits if bound is not None else None)
        ctx.bound = bound
        return logits

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, torch.Tensor, None]:
        column, held, logits = ctx.saved_tensors
        at_target = grad.gather(1, column).squeeze(1)
        grad_target = at_target.masked_fill(~held, 0.0)
        if ctx.bound is None:
            inside, kept = grad.clone(), at_target
        else:
            inside = torch.ops.aten.hardtanh_backward(grad, logits, -ctx.bound, ctx.bound)
            kept = inside.gather(1, column).squeeze(1)
        return inside.scatter_(1, column, kept.masked_fill(held, 0.0)[:, None]), None, grad_target, None


def take_targets(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each row's target entry scores[i, labels[i]]: (N, C), (N,) → (N,); ``scores`` may be overwritten later.

    labels[i] < 0 says that row i has no target among these C columns (Partial FC: its class lives on
    another process); its entry is 0 and passes no gradient.
    """
    return _TargetEntries.apply(scores, labels)


def write_targets(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor,
                  bound: float | None = None) -> torch.Tensor:
    """logits (N, C), clamped to [−bound, bound], with logits[i, labels[i]] = target[i] (target: (N,)); in place.
    Rows with labels[i] < 0 are left as they are (clamped) and target[i] is ignored."""
    return _WriteTargets.apply(logits, labels, target, bound)


def margin_logits(scaled: torch.Tensor, labels: torch.Tensor, psi: Callable[[torch.Tensor], torch.Tensor],
                  s: float) -> torch.Tensor:
    """s·cos θ (N, C) from :func:`scaled_cosine` → the logits s·cos θ_j, clamped to [−s, s], with s·ψ(θ_y)
    on each row's target (labels (N,), < 0 for none), written into ``scaled`` itself (chapter "CosFace and
    ArcFace"). ψ: a function of cos θ_y (N,) → (N,), as :func:`arcface_psi`."""
    cos_target = take_targets(scaled, labels).clamp(-s, s) / s
    return write_targets(scaled, labels, s * psi(cos_target), s)


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

    def scaled_cosine(self, x: torch.Tensor) -> torch.Tensor:
        """s·cos θ (N, C) of fp32 embeddings (N, D), not yet clamped (see :func:`scaled_cosine`)."""
        return scaled_cosine(x, self.cosine.weight.float(), self.s)

    def margin_logits(self, scaled: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """s·cos θ (N, C) from :meth:`scaled_cosine` and labels → (N, C) logits with the margin on the targets
        (the head's formula), written into ``scaled`` itself: no second (N, C) matrix."""
        return margin_logits(scaled, labels, self.psi, self.s)

    def logits(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N, C): with the margin when ``labels`` are given, else s·cos θ."""
        with torch.autocast(x.device.type, enabled=False):
            if labels is None:
                return self.s * self.cosine(x.float())
            return self.margin_logits(self.scaled_cosine(x.float()), labels)

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
            cos = (take_targets(plain, labels) / norms.clamp_min(1e-12)).clamp(-1.0, 1.0)
            return write_targets(plain, labels, self._blend(cos, norms))


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
            if labels is None:
                return norm[:, None] * self.cosine(x)
            cos = scaled_cosine(x, self.cosine.weight.float(), 1.0).clamp(-1.0, 1.0)
            return write_targets(norm[:, None] * cos, labels, self._blend(take_targets(cos, labels), norm))
