"""The mesh graph and Chebyshev convolution (chapter "The dense regression branch")."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facelearn.data.synthface import TOPOLOGY
from facelearn.detection.mesh.chebconv import ChebConv, chebyshev_basis
from facelearn.detection.mesh.graph import (adjacency, hops, k_ring, mesh_graph, normalised_laplacian,
                                            rescaled_laplacian, synthface_graph)


def test_adjacency_matches_a_loop_over_triangle_edges():
    a = adjacency(TOPOLOGY.triangles, len(TOPOLOGY.vertices)).toarray()
    edges = set()
    for t in TOPOLOGY.triangles.tolist():
        for i, j in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            edges |= {(i, j), (j, i)}
    brute = np.zeros_like(a)
    for i, j in edges:
        brute[i, j] = 1
    assert np.array_equal(a, brute)
    assert np.array_equal(a, a.T) and np.all(np.diag(a) == 0)


def test_laplacian_spectrum_and_null_vector():
    g = synthface_graph()
    lap = g.laplacian.toarray()
    eig = np.linalg.eigvalsh(lap)
    assert eig.min() > -1e-9 and eig.max() <= 2 + 1e-9
    assert g.lambda_max == pytest.approx(eig.max(), rel=1e-6)
    deg = g.adjacency.toarray().sum(1)
    assert np.abs(lap @ np.sqrt(deg)).max() < 1e-9  # D^{1/2} 1 spans the null space of a connected graph
    scaled = np.linalg.eigvalsh(g.scaled.toarray())
    assert scaled.min() >= -1 - 1e-9 and scaled.max() == pytest.approx(1.0, abs=1e-6)
    bound = np.linalg.eigvalsh(rescaled_laplacian(g.laplacian, 2.0).toarray())
    assert bound.min() >= -1 - 1e-9 and bound.max() <= 1 + 1e-9


def test_k_ring_against_breadth_first_search():
    g = synthface_graph()
    a = g.adjacency.tolil().rows
    for source in (0, 54, 300):
        dist = {source: 0}
        frontier = [source]
        while frontier:
            nxt = []
            for u in frontier:
                for w in a[u]:
                    if w not in dist:
                        dist[w] = dist[u] + 1
                        nxt.append(w)
            frontier = nxt
        h = hops(g.adjacency, source)
        assert all(h[v] == d for v, d in dist.items())
        assert set(k_ring(g.adjacency, source, 1).tolist()) == {source, *a[source]}


def test_bad_triangles_raise():
    with pytest.raises(ValueError, match="must be"):
        adjacency(np.zeros((4, 2), int), 5)
    with pytest.raises(ValueError, match="indices"):
        adjacency(np.array([[0, 1, 7]]), 5)


def _dense_cheb(lap_scaled: np.ndarray, x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Σ_k T_k(L̃) X Θ_k + b with T_k(L̃) = U cos(k arccos Λ) Uᵀ (independent of the recurrence)."""
    lam, u = np.linalg.eigh(lap_scaled)
    theta = np.arccos(np.clip(lam, -1, 1))
    out = np.zeros((x.shape[0], x.shape[1], weight.shape[2]))
    for k in range(weight.shape[0]):
        tk = (u * np.cos(k * theta)) @ u.T
        out += np.einsum("vw,bwc,co->bvo", tk, x, weight[k])
    return out + bias


def test_chebconv_matches_dense_spectral_computation():
    torch.manual_seed(0)
    g = synthface_graph()
    conv = ChebConv(3, 5, order=4).double()
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, g.n_vertices, 3, dtype=torch.float64)
    y = conv(x, g.scaled_tensor(torch.float64))
    ref = _dense_cheb(g.scaled.toarray(), x.numpy(), conv.weight.detach().numpy(), conv.bias.detach().numpy())
    assert np.abs(y.detach().numpy() - ref).max() < 1e-9


@settings(max_examples=8, deadline=None)
@given(order=st.integers(0, 4), source=st.integers(0, 643))
def test_chebconv_is_k_hop_local(order, source):
    g = synthface_graph()
    torch.manual_seed(order)
    conv = ChebConv(2, 3, order).double()
    lap = g.scaled_tensor(torch.float64)
    x = torch.randn(1, g.n_vertices, 2, dtype=torch.float64)
    x2 = x.clone()
    x2[0, source] += 1.0
    changed = (conv(x2, lap) - conv(x, lap)).abs().amax(-1)[0] > 1e-12
    h = hops(g.adjacency, source)
    assert not changed[torch.from_numpy(h > order)].any()        # nothing outside the K-ring moves
    assert changed[torch.from_numpy(h == order)].all()           # and the K-th ring does feel it


def test_chebconv_gradcheck_and_basis_shapes():
    g = mesh_graph(np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4]]), 5)
    lap = g.scaled_tensor(torch.float64)
    conv = ChebConv(2, 2, 2).double()
    x = torch.randn(2, 5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: conv(t, lap), (x,))
    terms = chebyshev_basis(x, lap, 3)
    assert len(terms) == 4 and all(t.shape == x.shape for t in terms)
    dense = torch.from_numpy(normalised_laplacian(g.adjacency).toarray() * 2 / g.lambda_max - np.eye(5))
    assert torch.allclose(terms[2], 2 * dense @ (dense @ x) - x)
