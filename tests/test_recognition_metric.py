"""Triplet mining and loss, center loss: against brute-force loops."""

from __future__ import annotations

import itertools

import pytest
import torch

from facelearn.recognition import metric


def _batch(seed=0, n=12, d=5, classes=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.arange(n) % classes


def test_pairwise_distances_match_a_loop():
    x, _ = _batch()
    d = metric.pairwise_squared_distances(x)
    for i, j in itertools.product(range(len(x)), repeat=2):
        assert float(d[i, j]) == pytest.approx(float(((x[i] - x[j]) ** 2).sum()), abs=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_mining_matches_brute_force(seed):
    x, y = _batch(seed)
    d = metric.pairwise_squared_distances(torch.nn.functional.normalize(x))
    n = len(y)
    valid = [(a, p, q) for a in range(n) for p in range(n) for q in range(n)
             if a != p and y[a] == y[p] and y[q] != y[a]]
    got_all = {tuple(t) for t in metric.mine_triplets(d, y, "all", 0.2).tolist()}
    assert got_all == {t for t in valid if d[t[0], t[1]] - d[t[0], t[2]] + 0.2 > 0}
    hard = metric.mine_triplets(d, y, "hard").tolist()
    assert len(hard) == n
    for a, p, q in hard:
        assert d[a, p] == max(d[a, j] for j in range(n) if j != a and y[j] == y[a])
        assert d[a, q] == min(d[a, j] for j in range(n) if y[j] != y[a])
    semi = metric.mine_triplets(d, y, "semihard").tolist()
    assert len(semi) == sum(1 for a in range(n) for p in range(n) if a != p and y[a] == y[p])
    for a, p, q in semi:
        farther = [d[a, j] for j in range(n) if y[j] != y[a] and d[a, j] > d[a, p]]
        want = min(farther) if farther else max(d[a, j] for j in range(n) if y[j] != y[a])
        assert d[a, q] == want


def test_triplet_loss_is_the_mean_hinge_over_mined_triplets():
    x, y = _batch(1)
    x.requires_grad_(True)
    loss, logs = metric.triplet_loss(x, y, 0.2, "hard")
    xn = torch.nn.functional.normalize(x)
    d = metric.pairwise_squared_distances(xn)
    t = metric.mine_triplets(d, y, "hard")
    want = torch.stack([torch.relu(((xn[a] - xn[p]) ** 2).sum() - ((xn[a] - xn[q]) ** 2).sum() + 0.2) for a, p, q in t.tolist()]).mean()
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    loss.backward()
    assert torch.isfinite(x.grad).all() and logs["triplets"] == len(y)


def test_triplet_loss_without_positives_is_zero_and_differentiable():
    x = torch.randn(4, 3, requires_grad=True)
    loss, logs = metric.triplet_loss(x, torch.arange(4))
    loss.backward()
    assert float(loss.detach()) == 0.0 and logs["triplets"] == 0


def test_center_loss_value_gradient_and_paper_update():
    cl = metric.CenterLoss(3, 2, alpha=0.5)
    cl.centers.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
    x = torch.tensor([[2.0, 0, 0], [0, 3.0, 0], [4.0, 0, 0]], requires_grad=True)
    y = torch.tensor([0, 1, 0])
    c0 = cl.centers.clone()
    loss = cl.train()(x, y)
    assert float(loss.detach()) == pytest.approx(0.5 * (1 + 4 + 9) / 3)
    loss.backward()
    torch.testing.assert_close(x.grad, (x.detach() - c0[y]) / 3)
    # eq. (4) by hand: Δc_j = Σ(c_j − x_i) / (1 + n_j)
    want0 = c0[0] - 0.5 * ((c0[0] - x[0]) + (c0[0] - x[2])).detach() / 3
    want1 = c0[1] - 0.5 * (c0[1] - x[1]).detach() / 2
    torch.testing.assert_close(cl.centers, torch.stack([want0, want1]))
    cl.eval()(x, y)
    torch.testing.assert_close(cl.centers, torch.stack([want0, want1]))  # no update in eval mode


def test_center_loss_head_adds_lambda_times_center_term():
    head = metric.CenterLossHead(4, 3, lam=0.1)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    loss = head.eval()(x, y)
    softmax, center = (float(head.last[k]) for k in ("softmax", "center"))
    assert float(loss.detach()) == pytest.approx(softmax + 0.1 * center, rel=1e-6)


def test_triplet_categories_partition_the_valid_triplets():
    x, y = _batch(2)
    d = metric.pairwise_squared_distances(torch.nn.functional.normalize(x))
    cats = metric.triplet_categories(d, y, 0.2)
    n = len(y)
    valid = [(a, p, q) for a in range(n) for p in range(n) for q in range(n) if a != p and y[a] == y[p] and y[q] != y[a]]
    hard = sum(1 for a, p, q in valid if d[a, q] <= d[a, p]) / len(valid)
    assert cats["hard"] == pytest.approx(hard) and sum(cats.values()) == pytest.approx(1.0)
