import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facelearn.recognition import normalisation as N
from facelearn.selfcheck import check, check_function


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 64), st.integers(0, 10_000))
def test_squared_distance_equals_two_minus_two_cos(dim, seed):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(dim, generator=g, dtype=torch.float64), torch.randn(dim, generator=g, dtype=torch.float64)
    ua, ub = a / a.norm(), b / b.norm()
    direct = ((ua - ub) ** 2).sum()  # brute force, no identity used
    cos = float(np.dot(ua.numpy(), ub.numpy()))
    assert float(N.squared_distance_from_cosine(torch.tensor(cos, dtype=torch.float64))) == pytest.approx(float(direct), abs=1e-12)


def test_cosine_matrix_matches_loop():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 7, generator=g), torch.randn(5, 7, generator=g)
    loop = torch.tensor([[float(torch.dot(x, y) / (x.norm() * y.norm())) for y in b] for x in a])
    assert torch.allclose(N.cosine_matrix(a, b), loop, atol=1e-6)


def _brute_force_optimal_loss(s: float, n: int) -> float:
    """Cross-entropy when the weights form a regular simplex and each feature sits on its class weight."""
    w = N.regular_simplex(n)
    logits = s * (w @ w.T)  # row i: the feature of class i against every class
    return float(torch.nn.functional.cross_entropy(logits, torch.arange(n)))


@pytest.mark.parametrize("n", [2, 3, 10, 50])
@pytest.mark.parametrize("s", [0.5, 1.0, 4.0, 16.0])
def test_normface_bound_is_reached_by_the_simplex(s, n):
    assert float(N.normface_loss_lower_bound(s, n)) == pytest.approx(_brute_force_optimal_loss(s, n), rel=1e-9)


def test_normface_bound_is_a_lower_bound():
    # Random normalised weights and features never beat the bound (NormFace Prop. 2).
    g = torch.Generator().manual_seed(0)
    n, s = 10, 5.0
    best = float(N.normface_loss_lower_bound(s, n))
    for _ in range(200):
        w = N.l2_normalise(torch.randn(n, 9, generator=g, dtype=torch.float64))
        x = w + 0.3 * torch.randn(n, 9, generator=g, dtype=torch.float64)
        loss = torch.nn.functional.cross_entropy(s * N.l2_normalise(x) @ w.T, torch.arange(n))
        assert float(loss) >= best - 1e-12


def test_regular_simplex_geometry():
    w = N.regular_simplex(6)
    gram = w @ w.T
    assert torch.allclose(gram.diagonal(), torch.ones(6, dtype=torch.float64))
    off = gram[~torch.eye(6, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -1 / 5))


@pytest.mark.parametrize("p,n", [(0.9, 10), (0.99, 1000), (0.7, 2), (0.999, 85_742)])
def test_min_scale_inverts_the_bound(p, n):
    s = N.min_scale_for_probability(p, n)
    # at that s the optimal loss is exactly -log p
    assert float(N.normface_loss_lower_bound(s, n)) == pytest.approx(-math.log(p), rel=1e-9)
    assert float(N.normface_loss_lower_bound(s * 0.99, n)) > -math.log(p)


def test_bad_arguments():
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        N.min_scale_for_probability(1.0, 10)
    with pytest.raises(ValueError, match="at least 2"):
        N.normface_loss_lower_bound(1.0, 1)


def test_heads_logits_and_loss():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
    head = N.NormFaceHead(4, 3, s=10.0)
    w = head.cosine.weight.detach()
    direct = 10.0 * (x / x.norm(dim=1, keepdim=True)) @ (w / w.norm(dim=1, keepdim=True)).T
    assert torch.allclose(head.logits(x), direct, atol=1e-5)
    assert torch.allclose(head(x, y), torch.nn.functional.cross_entropy(direct, y), atol=1e-5)
    plain = N.SoftmaxHead(4, 3)
    assert torch.allclose(plain.logits(x), x @ plain.linear.weight.T + plain.linear.bias)


def test_normface_gradient_matches_finite_differences():
    torch.manual_seed(0)
    head = N.NormFaceHead(3, 4, s=4.0).double()
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0])

    def f(inp):
        cos = N.l2_normalise(inp) @ N.l2_normalise(head.cosine.weight.double()).T
        return torch.nn.functional.cross_entropy(4.0 * cos, y)

    assert torch.autograd.gradcheck(f, (x,))


def test_selfcheck_reports(capsys):
    assert check(0.5, 0.5, name="a")
    assert not check([1.0, 2.0], [1.0, 2.5], name="b", hint="look again")
    assert check_function(lambda c: 2 - 2 * c, N.squared_distance_from_cosine, [(torch.tensor(0.3),)], name="c")
    assert not check_function(lambda c: 1 - c, N.squared_distance_from_cosine, [(torch.tensor(0.3),)], name="d")
    out = capsys.readouterr().out
    assert "✓ a" in out and "✗ b" in out and "look again" in out and "✗ d" in out
