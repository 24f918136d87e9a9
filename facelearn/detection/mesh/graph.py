"""The SynthFace mesh as a graph (book chapter "The dense regression branch").

A triangle mesh with V vertices is a graph: vertices i, j are adjacent (A_ij = 1) when they share a
triangle edge. Spectral graph convolution needs the symmetric normalised Laplacian

    L = I − D^{-1/2} A D^{-1/2},      D = diag(Σ_j A_ij)                                   (graph eq. (1))

whose eigenvalues lie in [0, 2], and its rescaling to [−1, 1], the domain of Chebyshev polynomials,

    L̃ = 2 L / λ_max − I                                                                    (graph eq. (2))

(Defferrard et al. 2016). A polynomial of degree K in L̃ only mixes vertices at most K edges apart, so the
k-ring of a vertex (:func:`k_ring`) is the receptive field of a K-th order Chebyshev convolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import shortest_path
from scipy.sparse.linalg import eigsh


def adjacency(triangles: np.ndarray, n_vertices: int) -> sp.csr_matrix:
    """A (V, V) symmetric 0/1 sparse adjacency from triangles (T, 3) int: i ~ j when they share an edge."""
    tri = np.asarray(triangles, dtype=np.int64)
    if tri.ndim != 2 or tri.shape[1] != 3:
        raise ValueError(f"triangles must be (T, 3), got {tri.shape}")
    if tri.size and (tri.min() < 0 or tri.max() >= n_vertices):
        raise ValueError(f"triangle indices must lie in [0, {n_vertices})")
    i = np.concatenate([tri[:, 0], tri[:, 1], tri[:, 2]])
    j = np.concatenate([tri[:, 1], tri[:, 2], tri[:, 0]])
    a = sp.coo_matrix((np.ones(len(i)), (i, j)), shape=(n_vertices, n_vertices)).tocsr()
    a = ((a + a.T) > 0).astype(np.float64)
    a.setdiag(0)
    a.eliminate_zeros()
    return a.tocsr()


def normalised_laplacian(adj: sp.spmatrix) -> sp.csr_matrix:
    """L = I − D^{-1/2} A D^{-1/2} (graph eq. (1)); isolated vertices get L_ii = 1 as well."""
    deg = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-12)), 0.0)
    d = sp.diags(inv_sqrt)
    return (sp.identity(adj.shape[0], format="csr") - d @ adj @ d).tocsr()


def largest_eigenvalue(lap: sp.spmatrix) -> float:
    """λ_max of a symmetric Laplacian by Lanczos (``scipy.sparse.linalg.eigsh``); ≤ 2 for eq. (1)."""
    return float(eigsh(lap, k=1, which="LA", return_eigenvectors=False, tol=1e-8, v0=np.ones(lap.shape[0]))[0])


def rescaled_laplacian(lap: sp.spmatrix, lambda_max: float | None = None) -> sp.csr_matrix:
    """L̃ = 2L/λ_max − I (graph eq. (2)); ``lambda_max=None`` computes it, 2.0 uses the bound."""
    lmax = largest_eigenvalue(lap) if lambda_max is None else float(lambda_max)
    return (2.0 / lmax * lap - sp.identity(lap.shape[0], format="csr")).tocsr()


def to_torch_sparse(m: sp.spmatrix, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A scipy sparse matrix as a coalesced ``torch.sparse_coo_tensor`` of the same shape."""
    coo = m.tocoo()
    with torch.device("cpu"):  # real data even inside a ``torch.device("meta")`` block (``facelearn models``)
        idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        return torch.sparse_coo_tensor(idx, torch.from_numpy(coo.data).to(dtype), coo.shape,
                                       check_invariants=True).coalesce()


def hops(adj: sp.spmatrix, source: int) -> np.ndarray:
    """(V,) int: the number of edges on the shortest path from ``source`` to each vertex (−1: unreachable)."""
    d = shortest_path(adj, unweighted=True, indices=[int(source)])[0]
    return np.where(np.isfinite(d), d, -1).astype(np.int64)


def k_ring(adj: sp.spmatrix, source: int, k: int) -> np.ndarray:
    """The vertices at most ``k`` edges from ``source`` (its k-ring, including itself), sorted indices."""
    h = hops(adj, source)
    return np.flatnonzero((h >= 0) & (h <= k))


@dataclass(frozen=True)
class MeshGraph:
    """A mesh's graph: triangles (T, 3), adjacency A, Laplacian L, λ_max and L̃ (scipy sparse)."""

    triangles: np.ndarray
    adjacency: sp.csr_matrix
    laplacian: sp.csr_matrix
    lambda_max: float
    scaled: sp.csr_matrix

    @property
    def n_vertices(self) -> int:
        return self.adjacency.shape[0]

    def scaled_tensor(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """L̃ as a sparse (V, V) tensor (for :class:`facelearn.detection.mesh.chebconv.ChebConv`)."""
        return to_torch_sparse(self.scaled, dtype)


def mesh_graph(triangles: np.ndarray, n_vertices: int) -> MeshGraph:
    """Build the :class:`MeshGraph` of a triangle mesh (graph eqs. (1), (2))."""
    a = adjacency(triangles, n_vertices)
    lap = normalised_laplacian(a)
    lmax = largest_eigenvalue(lap)
    return MeshGraph(np.asarray(triangles, dtype=np.int64), a, lap, lmax, rescaled_laplacian(lap, lmax))


@lru_cache(maxsize=1)
def synthface_graph() -> MeshGraph:
    """The graph of SynthFace's head mesh (``TOPOLOGY``: 644 vertices, 1192 triangles), built once."""
    from facelearn.data.synthface import TOPOLOGY

    return mesh_graph(TOPOLOGY.triangles, len(TOPOLOGY.vertices))
