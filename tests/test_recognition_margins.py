"""Margin heads: ψ functions, losses and gradients against independent computations from the angles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facelearn.recognition import beyond, margins
from facelearn.recognition.margins import LambdaSchedule

M = 0.5
THETAS = np.linspace(0.0, math.pi, 181)


def _psi_lsoftmax_direct(theta: np.ndarray, m: int) -> np.ndarray:
    k = np.clip(np.floor(theta * m / math.pi), 0, m - 1)
    return (-1.0) ** k * np.cos(m * theta) - 2 * k


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_chebyshev_and_lsoftmax_psi_match_the_angle_formulas(m):
    cos = torch.tensor(np.cos(THETAS), dtype=torch.float64)
    np.testing.assert_allclose(margins.cos_m_theta(cos, m).numpy(), np.cos(m * THETAS), atol=1e-12)
    inner = THETAS[1:-1]  # k is read off θ = arccos(cos θ); away from the ends it is exact
    np.testing.assert_allclose(margins.lsoftmax_psi(torch.tensor(np.cos(inner)), m).numpy(),
                               _psi_lsoftmax_direct(inner, m), atol=1e-9)


def test_arcface_psi_is_cos_theta_plus_m_then_insightface_fallback():
    cos = torch.tensor(np.cos(THETAS), dtype=torch.float64)
    psi = margins.arcface_psi(cos, M).numpy()
    inside = THETAS < math.pi - M - 1e-9
    np.testing.assert_allclose(psi[inside], np.cos(THETAS[inside] + M), atol=1e-6)
    np.testing.assert_allclose(psi[~inside], np.cos(THETAS[~inside]) - M * math.sin(M), atol=1e-9)
    easy = margins.arcface_psi(cos, M, easy_margin=True).numpy()
    np.testing.assert_allclose(easy[THETAS < math.pi / 2 - 1e-9], np.cos(THETAS[THETAS < math.pi / 2 - 1e-9] + M), atol=1e-6)
    np.testing.assert_allclose(easy[THETAS > math.pi / 2 + 1e-9], np.cos(THETAS[THETAS > math.pi / 2 + 1e-9]), atol=1e-12)


@pytest.mark.parametrize("fn", [
    lambda c: margins.arcface_psi(c, M), lambda c: margins.cosface_psi(c, 0.35),
    lambda c: margins.combined_psi(c, 1.0, 0.3, 0.2), lambda c: margins.combined_psi(c, 1.35, 0.0, 0.0),
    lambda c: margins.lsoftmax_psi(c, 4), lambda c: margins.lsoftmax_psi(c, 2)])
def test_every_psi_decreases_with_the_angle(fn):
    psi = fn(torch.tensor(np.cos(THETAS), dtype=torch.float64)).numpy()
    assert np.all(np.diff(psi) <= 1e-9)


def test_combined_psi_matches_its_formula_and_special_cases():
    inner = THETAS[5:-60]
    cos = torch.tensor(np.cos(inner))
    np.testing.assert_allclose(margins.combined_psi(cos, 1.2, 0.3, 0.1).numpy(), np.cos(1.2 * inner + 0.3) - 0.1, atol=1e-6)
    np.testing.assert_allclose(margins.combined_psi(cos, 1.0, 0.0, 0.35).numpy(), margins.cosface_psi(cos, 0.35).numpy(), atol=1e-6)
    np.testing.assert_allclose(margins.combined_psi(cos, 1.0, M, 0.0).numpy(), margins.arcface_psi(cos, M).numpy(), atol=1e-6)


@pytest.mark.parametrize("fn", [lambda c: margins.arcface_psi(c, M), lambda c: margins.combined_psi(c, 1.2, 0.3, 0.1),
                                lambda c: margins.lsoftmax_psi(c, 4)])
def test_psi_gradients_match_finite_differences(fn):
    cos = torch.tensor(np.cos([0.2, 0.9, math.pi / 2, 2.0, math.pi - M - 0.1, math.pi - M + 0.1, 3.0]),
                       dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (cos,), eps=1e-7, atol=1e-5)


# -- whole heads: embeddings and weights built with known angles ------------------------------------------

D, C = 4, 3
W = torch.eye(C, D, dtype=torch.float64)


def _embeddings(theta_y: float, labels: list[int], norm: float = 1.0) -> torch.Tensor:
    """Rows at angle θ_y from their class weight (in the plane of e_y and e_3), at π/2 from the others."""
    x = torch.zeros(len(labels), D, dtype=torch.float64)
    for i, y in enumerate(labels):
        x[i, y], x[i, 3] = math.cos(theta_y), math.sin(theta_y)
    return norm * x


class _Tagged:
    """The embeddings with their labels attached (the CurricularFace formula needs both)."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        self.x, self.labels = x, labels

    def norm(self, dim: int, keepdim: bool = False) -> torch.Tensor:
        return self.x.norm(dim=dim, keepdim=keepdim)


def _direct_loss(x: torch.Tensor, labels: torch.Tensor, target_fn, other_fn=None) -> torch.Tensor:
    """Cross-entropy from the angles in float64: θ by arccos of the normalised dot products."""
    xn = x / x.norm(dim=1, keepdim=True)
    cos = (xn @ W.T).clamp(-1, 1)
    theta = torch.acos(cos.clamp(-1 + 1e-12, 1 - 1e-12))
    x = _Tagged(x, labels)
    logits = other_fn(cos, x) if other_fn else cos.clone()
    ty = theta.gather(1, labels[:, None]).squeeze(1)
    logits = torch.where(F.one_hot(labels, C).bool(), target_fn(ty, x).unsqueeze(1), logits)
    return (torch.logsumexp(logits, 1) - logits.gather(1, labels[:, None]).squeeze(1)).mean()


def _arc_t(s, m):
    return lambda t, x: s * torch.where(t <= math.pi - m, torch.cos(t + m), torch.cos(t) - m * math.sin(m))


def _cases():
    s = 64.0
    yield "cosface", lambda: margins.CosFaceHead(D, C, s, 0.35), lambda t, x: s * (torch.cos(t) - 0.35), lambda c, x: s * c
    yield "arcface", lambda: margins.ArcFaceHead(D, C, s, M), _arc_t(s, M), lambda c, x: s * c
    yield "combined", lambda: margins.CombinedMarginHead(D, C, s, 1.0, 0.3, 0.2), \
        lambda t, x: s * torch.where(t <= math.pi - 0.3, torch.cos(t + 0.3) - 0.2, torch.cos(t) - math.cos(math.pi - 0.3) - 1.2), \
        lambda c, x: s * c
    yield "subcenter", lambda: beyond.SubCenterArcFaceHead(D, C, 1, s, M), _arc_t(s, M), lambda c, x: s * c

    def sphere_target(t, x):
        n = x.norm(dim=1)
        k = torch.clamp(torch.floor(t * 4 / math.pi), 0, 3)
        psi = (-1.0) ** k * torch.cos(4 * t) - 2 * k
        return n * (5.0 * torch.cos(t) + psi) / 6.0
    yield "sphereface", lambda: margins.SphereFaceHead(D, C, 4, LambdaSchedule.constant(5.0)), sphere_target, \
        lambda c, x: x.norm(dim=1, keepdim=True) * c

    def lsoft_target(t, x):  # ‖W_y‖ = 1 here
        k = torch.clamp(torch.floor(t * 4 / math.pi), 0, 3)
        return x.norm(dim=1) * ((-1.0) ** k * torch.cos(4 * t) - 2 * k)
    yield "lsoftmax", lambda: margins.LSoftmaxHead(D, C, 4, LambdaSchedule.constant(0.0)), lsoft_target, \
        lambda c, x: x.norm(dim=1, keepdim=True) * c

    def curr_other(c, x, t=0.0):  # the head's t starts at 0; hard negatives are cos_j > cos(θ_y + m)
        theta = torch.acos(c.clamp(-1, 1))
        labels = c.argmax(1) if x is None else x.labels
        ty = theta.gather(1, labels[:, None])
        border = torch.where(ty <= math.pi - M, torch.cos(ty + M), torch.cos(ty) - M * math.sin(M))
        return s * torch.where(c > border, c * (t + c), c)
    yield "curricularface", lambda: beyond.CurricularFaceHead(D, C, s, M), _arc_t(s, M), curr_other


def _build(make):
    head = make()
    with torch.no_grad():
        if hasattr(head, "cosine"):
            head.cosine.weight.copy_(W.float().repeat_interleave(getattr(head, "k", 1), 0))
        else:
            head.weight.copy_(W.float())
    return head.eval()


ANGLES = {"0": 0.0, "pi/2": math.pi / 2, "pi-m": math.pi - M, "pi": math.pi}
INTERIOR = [0.05, 0.7, math.pi / 2, math.pi - M - 0.05, math.pi - M + 0.05, 3.0]


@pytest.mark.parametrize("name,make,target,other", list(_cases()), ids=[c[0] for c in _cases()])
@pytest.mark.parametrize("theta", list(ANGLES.values()), ids=list(ANGLES))
def test_head_loss_matches_the_angle_formula_and_is_finite(name, make, target, other, theta):
    head = _build(make)
    labels = torch.tensor([0, 1, 2, 1])
    x = _embeddings(theta, labels.tolist(), norm=2.0).float().requires_grad_(True)
    loss = head(x, labels)
    loss.backward()
    loss = loss.detach()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    if not (name in ("sphereface", "lsoftmax") and theta in (0.0, math.pi)):  # k at the ends: both sides agree anyway
        # at θ = π − m ArcFace's ψ jumps (insightface's fallback); fp32 rounding may pick either side
        wants = [float(_direct_loss(x.detach().double(), labels, lambda t, z: target(t + d, z), other))
                 for d in (-1e-6, 1e-6)]
        assert any(float(loss) == pytest.approx(w, rel=2e-4, abs=2e-3) for w in wants), (float(loss), wants)


@pytest.mark.parametrize("name,make,target,other", list(_cases()), ids=[c[0] for c in _cases()])
@pytest.mark.parametrize("theta", INTERIOR)
def test_head_gradient_matches_autograd_of_the_angle_formula(name, make, target, other, theta):
    head = _build(make)
    labels = torch.tensor([0, 1, 2, 1])
    x0 = _embeddings(theta, labels.tolist(), norm=2.0)
    x0 = x0 + 0.05 * torch.sin(torch.arange(x0.numel(), dtype=torch.float64)).view_as(x0)  # off the axes
    x = x0.float().requires_grad_(True)
    head(x, labels).backward()
    xd = x0.clone().requires_grad_(True)
    _direct_loss(xd, labels, target, other).backward()
    np.testing.assert_allclose(x.grad.double().numpy(), xd.grad.numpy(), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name,make,target,other", list(_cases()), ids=[c[0] for c in _cases()])
def test_heads_are_finite_under_cpu_autocast(name, make, target, other, dtype):
    try:
        with torch.autocast("cpu", dtype=dtype):
            torch.ones(2, 2) @ torch.ones(2, 2)
    except (RuntimeError, AssertionError):
        pytest.skip(f"CPU autocast with {dtype} unsupported")
    head = _build(make)
    labels = torch.tensor([0, 1, 2, 1])
    for theta in ANGLES.values():
        x = _embeddings(theta, labels.tolist(), 2.0).float().requires_grad_(True)
        ref = float(head(x, labels).detach())
        with torch.autocast("cpu", dtype=dtype):
            loss = head(x.to(dtype), labels)
        loss.backward()
        assert loss.dtype == torch.float32 and torch.isfinite(loss) and torch.isfinite(x.grad).all()
        if theta != math.pi - M:  # ArcFace's ψ jumps there: rounding may choose either side
            assert float(loss.detach()) == pytest.approx(ref, rel=2e-2, abs=0.2)


def test_curricularface_emphasises_hard_negatives_by_t():
    head = _build(lambda: beyond.CurricularFaceHead(D, C, 64.0, M))
    head.t.fill_(0.3)
    labels = torch.tensor([0])
    x = torch.tensor([[math.cos(1.2), 0.9, 0.0, math.sin(1.2)]])  # class 1 is a hard negative
    logits = head.logits(x, labels).detach().double()
    xn = x.double() / x.double().norm()
    cos = (xn @ W.T)[0]
    target = math.cos(math.acos(float(cos[0])) + M)
    assert float(cos[1]) > target
    np.testing.assert_allclose(logits[0].numpy(), 64 * np.array([target, float(cos[1]) * (0.3 + float(cos[1])), float(cos[2])]), rtol=1e-5, atol=1e-4)
    head.train()(x, labels)
    assert float(head.t) == pytest.approx(0.99 * 0.3 + 0.01 * float(cos[0]), rel=1e-5)


def test_subcenter_takes_the_closest_subcentre():
    head = beyond.SubCenterArcFaceHead(D, 2, k=3, s=1.0)
    x = torch.randn(5, D)
    cos = F.normalize(x) @ F.normalize(head.cosine.weight).T
    np.testing.assert_allclose(head.logits(x).detach().numpy(), cos.view(5, 2, 3).amax(2).detach().numpy(), atol=1e-6)


def test_adaface_margin_follows_the_quality_indicator():
    head = _build(lambda: beyond.AdaFaceHead(D, C, 64.0, 0.4, 0.333))
    head.mean.fill_(2.0), head.std.fill_(1.0)
    labels = torch.tensor([0])
    for norm in (0.5, 2.0, 9.0):
        x = _embeddings(1.0, [0], norm).float()
        z = float(np.clip((norm - 2.0) / (1.0 / 0.333 + 1e-3), -1, 1))
        want = 64 * (math.cos(1.0 - 0.4 * z) - (0.4 * z + 0.4))
        assert float(head.logits(x, labels).detach()[0, 0]) == pytest.approx(want, rel=1e-5)


def test_lambda_schedule_and_counter():
    sch = LambdaSchedule.sphereface()
    assert sch(0) == 1000.0 and sch(10) == pytest.approx(1000 / 2.2) and sch(10**6) == 5.0
    head = margins.SphereFaceHead(D, C)
    x, y = torch.randn(6, D), torch.randint(0, C, (6,))
    head.train()(x, y), head(x, y)
    head.eval()(x, y)
    assert int(head.iteration) == 2 and head.lam == pytest.approx(1000 / 1.24)


def test_lsoftmax_with_m1_is_the_plain_linear_softmax():
    head = margins.LSoftmaxHead(D, C, m=1, schedule=LambdaSchedule.constant(0.0))
    x, y = torch.randn(7, D), torch.randint(0, C, (7,))
    assert float(head(x, y).detach()) == pytest.approx(float(F.cross_entropy(x @ head.weight.T, y).detach()), rel=1e-5)


# -- the target-only replacement against the one-hot formulation it replaced ------------------------------

def _one_hot_replace(logits, labels, target, scale=1.0):
    """The former formulation: an (N, C) one-hot mask and a torch.where over the whole matrix."""
    return scale * torch.where(F.one_hot(labels, logits.shape[1]).bool(), target.unsqueeze(1), logits)


_EVERY_HEAD = {
    "cosface": lambda d, c: margins.CosFaceHead(d, c, 64.0, 0.35),
    "arcface": lambda d, c: margins.ArcFaceHead(d, c, 64.0, 0.5),
    "arcface-easy": lambda d, c: margins.ArcFaceHead(d, c, 64.0, 0.5, easy_margin=True),
    "arcface-m1.2": lambda d, c: margins.ArcFaceHead(d, c, 30.0, 1.2),
    "combined": lambda d, c: margins.CombinedMarginHead(d, c, 64.0, 1.0, 0.3, 0.2),
    "combined-m1": lambda d, c: margins.CombinedMarginHead(d, c, 32.0, 1.35, 0.5, 0.1),
    "sphereface": lambda d, c: margins.SphereFaceHead(d, c, 4, LambdaSchedule.constant(5.0)),
    "lsoftmax": lambda d, c: margins.LSoftmaxHead(d, c, 3, LambdaSchedule.constant(2.0)),
    "subcenter": lambda d, c: beyond.SubCenterArcFaceHead(d, c, 3, 64.0, 0.5),
    "curricularface": lambda d, c: beyond.CurricularFaceHead(d, c, 64.0, 0.5),
    "adaface": lambda d, c: beyond.AdaFaceHead(d, c, 64.0, 0.4, 0.333),
}


def _loss_and_grads(head, x, labels):
    x = x.clone().requires_grad_(True)
    head.zero_grad()
    loss = head(x, labels)
    loss.backward()
    return loss.detach(), x.grad, [p.grad.clone() for p in head.parameters()]


@pytest.mark.parametrize("name", list(_EVERY_HEAD))
def test_target_only_replacement_gives_the_one_hot_loss_and_gradients_bit_for_bit(name, monkeypatch):
    import copy

    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    for trial in range(6):
        n, d, c = 1 + trial * 7, 8, 2 + trial * 9
        head = _EVERY_HEAD[name](d, c).train(trial % 2 == 0)
        with torch.no_grad():
            for p in head.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
        labels = torch.randint(0, c, (n,), generator=gen)
        weight = head.weight if hasattr(head, "weight") else head.cosine.weight.view(c, -1, d)[:, 0]
        # a third of the rows near their class weight, a third opposite it (θ + m > π), the rest random
        x = torch.randn(n, d, generator=gen)
        sign = torch.tensor([1.0, -1.0, 0.0]).repeat(n)[:n, None]
        x = (sign * 3.0 * F.normalize(weight.detach()[labels]) + 0.3 * x) * torch.rand(n, 1, generator=gen) * 4
        reference = copy.deepcopy(head)
        got = _loss_and_grads(head, x, labels)
        with monkeypatch.context() as patch:
            patch.setattr(margins, "_replace_target", _one_hot_replace)
            patch.setattr(beyond, "_replace_target", _one_hot_replace)
            want = _loss_and_grads(reference, x, labels)
        assert torch.equal(got[0], want[0]), (name, trial, got[0], want[0])
        assert torch.equal(got[1], want[1]), (name, trial)
        for g, w in zip(got[2], want[2]):
            assert torch.equal(g, w), (name, trial)
        for b, r in zip(head.buffers(), reference.buffers()):
            assert torch.equal(b, r)


def test_target_only_replacement_writes_the_targets_and_passes_gradcheck():
    logits = torch.randn(4, 6, requires_grad=True)
    labels = torch.tensor([5, 0, 2, 2])
    target = torch.randn(4, requires_grad=True)
    out = margins._replace_target(logits, labels, target, 3.0)
    want = 3.0 * logits.detach().clone()
    want[torch.arange(4), labels] = 3.0 * target.detach()
    assert torch.equal(out.detach(), want)
    assert torch.autograd.gradcheck(lambda a, t: margins._replace_target(a, labels, t, 3.0),
                                    (logits.double().detach().requires_grad_(), target.double().detach().requires_grad_()))
