"""Partial FC's margin on the margin heads' target-only path, against the formulation it replaced: autograd of
F.normalize on both sides, the cosines clamped, an (S_r)-column one-hot margin, ×s, the cross-entropy over the
sampled classes. Bit for bit for s a power of two, on one process, on one shard of a split, and on two."""

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from facelearn.recognition import margins
from facelearn.recognition.partial_fc import PartialFC, _GatherRows, _SumOverShards

C, D = 23, 8


def _former_logits(head, x, index, rows, cols):
    """s·where(one_hot, ψ(cos θ_y), cos θ) over the kept centres: x (N, D) → (N, S_r)."""
    weight = head.weight if index is None else head.weight[index]
    cos = F.linear(F.normalize(x), F.normalize(weight)).clamp(-1.0, 1.0)
    one_hot = torch.zeros(cos.shape, dtype=torch.bool).index_put_((rows, cols), torch.tensor(True))
    target = torch.zeros_like(cos).index_put((rows, cols), head.psi(cos[rows, cols]))
    return head.s * torch.where(one_hot, target, cos)


def _former_cross_entropy(logits, rows, cols, world):
    """log Σ_j exp(z_ij − M_i) + M_i − z_iy, the maxima, sums and targets reduced over the processes."""
    shift = logits.detach().max(dim=1).values
    target = torch.zeros(len(logits)).index_put((rows,), logits[rows, cols])
    if world > 1:
        dist.all_reduce(shift, op=dist.ReduceOp.MAX)
    sums = torch.exp(logits - shift[:, None]).sum(dim=1)
    if world > 1:
        sums, target = _SumOverShards.apply(sums), _SumOverShards.apply(target)
    return (torch.log(sums) + shift - target).mean()


def _loss_and_grads(head, x, labels, former):
    """(loss, ∂/∂x, ∂/∂W of this shard) of the library's head, or of the former formulation on the centres
    and rows the head sampled in its own forward pass just before."""
    x = x.clone().requires_grad_()
    head.weight.grad = None
    if not former:
        loss = head(x, labels)
    else:
        index, rows, cols = head.sampled["index"], head.sampled["rows"], head.sampled["cols"]
        features = _GatherRows.apply(x, float(head.world)) if head.world > 1 else x
        loss = _former_cross_entropy(_former_logits(head, features, index, rows, cols), rows, cols, head.world)
    loss.backward()
    return loss.detach(), x.grad, head.weight.grad


def _batch(head, n, gen, on_centres=True):
    """n rows and labels: a quarter on their class centre and a quarter on another class's (cos θ rounds to 1
    or just past it: the clamp's kink, where only equal bits agree; near them unless ``on_centres``), a
    quarter opposite their centre (θ + m > π), the rest random; the centres those of classes [0, C) at
    random, the head's shard of them."""
    centres = torch.randn(head.n_classes, D, generator=gen)
    with torch.no_grad():
        head.weight.copy_(centres[head.start:head.stop])
    labels = torch.randint(0, head.n_classes, (n,), generator=gen)
    x = torch.randn(n, D, generator=gen)
    noise = 0.0 if on_centres else 0.3
    x[::4] = centres[labels[::4]] * 2.5 + noise * x[::4]
    x[1::4] = centres[(labels[1::4] + 1) % head.n_classes] * 2.5 + noise * x[1::4]
    x[2::4] = -centres[labels[2::4]] * 2.0 + 0.1 * x[2::4]
    return x, labels


def _assert_same(got, want, exact, what):
    if exact:
        assert torch.equal(got, want), what
    else:  # s·(x̂·ŵ) and (s·x̂)·ŵ round differently; the centres' gradient g − ŵ(ŵ·g) cancels a few ulps
        torch.testing.assert_close(got, want, rtol=2e-4, atol=1e-5, msg=lambda m: f"{what}: {m}")


def _compare(head, x, labels, exact, what):
    got = _loss_and_grads(head, x, labels, former=False)
    want = _loss_and_grads(head, x, labels, former=True)
    for a, b, name in zip(got, want, ("loss", "grad x", "grad W")):
        _assert_same(a, b, exact, f"{what} {name}")


@pytest.mark.parametrize("s", [64.0, 32.0, 30.0, 10.0])
@pytest.mark.parametrize("margin", ["arcface", "cosface", "combined"])
@pytest.mark.parametrize("sample_rate", [1.0, 0.3])
@pytest.mark.parametrize("shard", [None, (7, 15)])
def test_partial_fc_gives_the_former_loss_and_gradients(s, margin, sample_rate, shard):
    """``shard``: this process holds classes [start, stop) only, so rows of other classes have no target here
    (the logits and gradients of one process of a split; the sums over the processes are the tests below)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(sum(map(ord, margin)) + int(s))
    for trial in range(3):
        head = PartialFC(D, C, margin, s, None, sample_rate)
        if shard is not None:
            head.start, head.stop = shard
            head.weight = torch.nn.Parameter(head.weight.detach()[:shard[1] - shard[0]].clone())
        exact = math.log2(s).is_integer()
        x, labels = _batch(head, 5 + 9 * trial, gen, on_centres=exact)
        _compare(head, x, labels, exact, f"{margin} s={s} {trial}")
        if shard is not None:
            assert len(head.sampled["rows"]) < len(labels)  # some rows' classes live elsewhere


def test_forward_samples_as_sample_does_and_draws_nothing_else():
    head = PartialFC(D, 1000, "arcface", 64.0, None, 0.1)
    labels = torch.randint(0, 1000, (40,))
    torch.manual_seed(4)
    index, target = head.sample(labels)
    after = torch.rand(3)
    torch.manual_seed(4)
    head(torch.randn(40, D, generator=torch.Generator().manual_seed(1)), labels)
    assert torch.equal(head.sampled["index"], index) and torch.equal(head.sampled["cols"], target)
    assert torch.equal(torch.rand(3), after)


@pytest.mark.parametrize("bound", [None, 1.0])
def test_rows_without_a_target_are_only_clamped_and_pass_no_target_gradient(bound):
    """labels −1: take_targets gives 0 there, write_targets leaves the row clamped; both against plain
    indexing of the rows that have one, in value and gradient, and gradcheck."""
    labels = torch.tensor([3, -1, 0, -1, 2])
    rows = torch.tensor([0, 2, 4])
    scores = torch.randn(5, 4, dtype=torch.float64) * 1.5
    scores[1, 0] = 1.0  # on the bound, in column 0 of a row without a target
    target = torch.randn(5, dtype=torch.float64)
    g = torch.randn(5, 4, dtype=torch.float64)
    got, want = [scores.clone().requires_grad_() for _ in range(2)]
    taken = margins.take_targets(got, labels)
    assert torch.equal(taken[[1, 3]].detach(), torch.zeros(2, dtype=torch.float64))
    out = margins.write_targets(got * 1.0, labels, taken ** 2 + target, bound)
    (out * g).sum().backward()
    plain = want if bound is None else want.clamp(-bound, bound)
    values = want[rows, labels[rows]] ** 2 + target[rows]
    ref = plain.index_put((rows, labels[rows]), values)
    (ref * g).sum().backward()
    assert torch.equal(out.detach(), ref.detach()) and torch.equal(got.grad, want.grad)
    away = torch.where((scores.abs() - 1.0).abs() < 0.1, 0.5, scores)
    assert torch.autograd.gradcheck(
        lambda v, t: margins.write_targets(v * 1.0, labels, margins.take_targets(v, labels) * t, bound),
        (away.clone().requires_grad_(), target.clone().requires_grad_()))


def _two_ranks(rank, world, out):
    gen = torch.Generator().manual_seed(9)
    results = {}
    for margin in ("arcface", "cosface", "combined"):
        for s in (64.0, 32.0):
            for sample_rate in (1.0, 0.3):
                torch.manual_seed(rank)  # each process samples its own negatives
                head = PartialFC(D, C, margin, s, None, sample_rate)
                x, labels = _batch(head, 4 * world, gen)  # the same global batch on both processes
                mine = slice(rank * 4, rank * 4 + 4)
                got = _loss_and_grads(head, x[mine], labels[mine], former=False)
                want = _loss_and_grads(head, x[mine], labels[mine], former=True)
                results[f"{margin} s={s} rate={sample_rate}"] = (got, want, len(head.sampled["rows"]))
    torch.save(results, Path(out) / f"{rank}.pt")


def test_partial_fc_on_two_processes_gives_the_former_loss_and_gradients(tmp_path):
    from test_distributed import _spawn

    assert _spawn(_two_ranks, str(tmp_path), world=2, timeout=120) == [0, 0]
    ranks = [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in range(2)]
    for name in ranks[0]:
        assert ranks[0][name][2] + ranks[1][name][2] == 8  # each row's target on exactly one process
        assert 0 < ranks[0][name][2] < 8
        for got, want, _ in (r[name] for r in ranks):
            for a, b, what in zip(got, want, ("loss", "grad x", "grad W")):
                assert torch.equal(a, b), f"{name} {what}"
