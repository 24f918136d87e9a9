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


# -- the target-only, scale-folded margin against the plain one-hot formulation it replaced ----------------

def _plain_scaled_cosine(x, weight, s):
    """The former cosines: autograd of F.normalize on both sides, the scale applied to the (N, C) product."""
    return s * F.linear(F.normalize(x), F.normalize(weight))


def _plain_take_targets(scores, labels):
    return scores.gather(1, labels[:, None]).squeeze(1)


def _one_hot_write(logits, labels, target, bound=None):
    """The former formulation: an (N, C) one-hot mask and a torch.where over the whole matrix."""
    logits = logits if bound is None else logits.clamp(-bound, bound)
    return torch.where(F.one_hot(labels, logits.shape[1]).bool(), target.unsqueeze(1), logits)


_EVERY_HEAD = {
    "cosface": lambda d, c: margins.CosFaceHead(d, c, 64.0, 0.35),
    "arcface": lambda d, c: margins.ArcFaceHead(d, c, 64.0, 0.5),
    "arcface-s32": lambda d, c: margins.ArcFaceHead(d, c, 32.0, 0.5),
    "arcface-easy": lambda d, c: margins.ArcFaceHead(d, c, 64.0, 0.5, easy_margin=True),
    "arcface-m1.2-s30": lambda d, c: margins.ArcFaceHead(d, c, 30.0, 1.2),
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


def _assert_same(got, want, exact, what):
    if exact:
        assert torch.equal(got, want), what
    else:  # s not a power of two: s·(x̂·ŵ) and (s·x̂)·ŵ round differently (the weights' gradient
        # g − ŵ(ŵ·g) cancels, so a few ulps there become a relative 10⁻⁴)
        torch.testing.assert_close(got, want, rtol=2e-4, atol=1e-5, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("name", list(_EVERY_HEAD))
def test_margin_heads_give_the_one_hot_loss_and_gradients_bit_for_bit(name, monkeypatch):
    """Every head against the formulation it replaced: F.normalize's autograd, the scale on the (N, C)
    cosines, a torch.where over an (N, C) one-hot mask. Bit for bit where s is a power of two."""
    import copy

    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    for trial in range(6):
        n, d, c = 1 + trial * 7, 8, 2 + trial * 9
        head = _EVERY_HEAD[name](d, c).train(trial % 2 == 0)
        exact = math.log2(getattr(head, "s", 1.0)).is_integer()
        with torch.no_grad():
            for p in head.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
        labels = torch.randint(0, c, (n,), generator=gen)
        weight = head.weight if hasattr(head, "weight") else head.cosine.weight.view(c, -1, d)[:, 0]
        # a third of the rows near their class weight, a third opposite it (θ + m > π), the rest random
        x = torch.randn(n, d, generator=gen)
        sign = torch.tensor([1.0, -1.0, 0.0]).repeat(n)[:n, None]
        x = (sign * 3.0 * F.normalize(weight.detach()[labels]) + 0.3 * x) * torch.rand(n, 1, generator=gen) * 4
        if trial == 5 and exact:  # rows on their own or another class's weight: cos θ rounds to 1 or just
            x[::3] = weight.detach()[labels[::3]] * 2.5  # past it (the clamp's kink, where only equal bits agree)
            x[1::3] = weight.detach()[(labels[1::3] + 1) % c] * 2.5
        reference = copy.deepcopy(head)
        got = _loss_and_grads(head, x, labels)
        with monkeypatch.context() as patch:
            for module in (margins, beyond):
                patch.setattr(module, "scaled_cosine", _plain_scaled_cosine)
                patch.setattr(module, "take_targets", _plain_take_targets)
                patch.setattr(module, "write_targets", _one_hot_write)
            want = _loss_and_grads(reference, x, labels)
        _assert_same(got[0], want[0], exact, f"{name} {trial} loss")
        _assert_same(got[1], want[1], exact, f"{name} {trial} grad x")
        for g, w in zip(got[2], want[2]):
            _assert_same(g, w, exact, f"{name} {trial} grad W")
        for b, r in zip(head.buffers(), reference.buffers()):
            _assert_same(b, r, exact, f"{name} {trial} buffers")


@pytest.mark.parametrize("s", [1.0, 32.0, 64.0, 30.0])
def test_scaled_cosine_is_s_times_the_cosine_and_its_backward_that_of_f_normalize(s):
    gen = torch.Generator().manual_seed(int(s))
    x, w = torch.randn(9, 16, generator=gen) * 3, torch.randn(40, 16, generator=gen) * 0.01
    w[7] = 0.0  # a zero row stays zero, with no NaN
    w[8] *= 1e-12  # a row shorter than ε: divided by ε, no gradient through its norm
    g = torch.randn(9, 40, generator=gen)
    xa, wa = x.clone().requires_grad_(), w.clone().requires_grad_()
    got = margins.scaled_cosine(xa, wa, s)
    got.backward(g)
    xb, wb = x.clone().requires_grad_(), w.clone().requires_grad_()
    want = s * (F.normalize(xb) @ F.normalize(wb).T)
    want.backward(g)
    exact = math.log2(s).is_integer()
    for a, b, what in [(got, want, "s·cos"), (xa.grad, xb.grad, "grad x"), (wa.grad, wb.grad, "grad W")]:
        _assert_same(a.detach(), b.detach(), exact, what)
    unit = margins._UnitRows.apply(wa.detach().double().requires_grad_(), 1e-12)
    assert torch.equal(unit, F.normalize(w.double()))
    assert torch.autograd.gradcheck(lambda v: margins._UnitRows.apply(v, 1e-12),
                                    (torch.randn(5, 3, dtype=torch.float64, requires_grad=True),))


@pytest.mark.parametrize("outside", [False, True])
def test_take_and_write_targets_match_gather_clamp_and_where_and_pass_gradcheck(outside):
    labels = torch.tensor([5, 0, 2, 2])
    scores = torch.randn(4, 6, dtype=torch.float64) * (3.0 if outside else 0.3)
    scores[0, 1], scores[1, 0] = 1.0, -1.0  # on the bounds (a target among them): torch.clamp passes no gradient
    target = torch.randn(4, dtype=torch.float64)
    g = torch.randn(4, 6, dtype=torch.float64)
    got, want = [scores.clone().requires_grad_() for _ in range(2)]
    out = margins.write_targets(got * 1.0, labels, margins.take_targets(got, labels) ** 2 + target, 1.0)
    (out * g).sum().backward()
    ref = _one_hot_write(want, labels, _plain_take_targets(want, labels) ** 2 + target, 1.0)
    (ref * g).sum().backward()
    assert torch.equal(out.detach(), ref.detach()) and torch.equal(got.grad, want.grad)
    away = torch.where((scores.abs() - 1.0).abs() < 0.1, 0.5, scores)  # gradcheck away from the clamp's kinks
    for bound in (None, 1.0):
        assert torch.autograd.gradcheck(
            lambda v, t: margins.write_targets(v * 1.0, labels, margins.take_targets(v, labels) * t, bound),
            (away.clone().requires_grad_(), target.clone().requires_grad_()))
