"""Chebyshev spectral graph convolution (book chapter "The dense regression branch").

A spectral filter g(L) = U g(Λ) Uᵀ needs the Laplacian's eigenvectors U; Defferrard et al. (2016) instead
take a polynomial of degree K in the rescaled Laplacian L̃ (graph eq. (2)), written in the Chebyshev basis
T_0(x) = 1, T_1(x) = x, T_k(x) = 2x T_{k−1}(x) − T_{k−2}(x), which is stable on [−1, 1]:

    T̄_0 = X,  T̄_1 = L̃ X,  T̄_k = 2 L̃ T̄_{k−1} − T̄_{k−2}                                 (chebconv eq. (1))
    Y = Σ_{k=0}^{K} T̄_k Θ_k + b                                                            (chebconv eq. (2))

with X (V, C_in) the vertex features, Θ_k (C_in, C_out) learned. Only K sparse products are needed, and
since (L̃^k)_ij = 0 when i and j are more than k edges apart, the output at a vertex depends only on its
K-ring: the filter is K-localised. (Defferrard's and CoMA's "K" counts the terms, K = degree + 1; here
``order`` is the degree, so ``order`` = K hops.)
"""

from __future__ import annotations

import math

import torch
from torch import nn


def chebyshev_basis(x: torch.Tensor, scaled_laplacian: torch.Tensor, order: int) -> list[torch.Tensor]:
    """[T̄_0, …, T̄_order] of chebconv eq. (1) for x (B, V, C) and sparse or dense L̃ (V, V); each (B, V, C)."""
    b, v, c = x.shape
    flat = x.permute(1, 0, 2).reshape(v, b * c)  # (V, B·C): one sparse product serves the whole batch

    def mul(t: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(scaled_laplacian, t) if scaled_laplacian.is_sparse else scaled_laplacian @ t

    terms = [flat]
    if order >= 1:
        terms.append(mul(flat))
    for _ in range(2, order + 1):
        terms.append(2 * mul(terms[-1]) - terms[-2])
    return [t.reshape(v, b, c).permute(1, 0, 2) for t in terms]


class ChebConv(nn.Module):
    """y = Σ_k T̄_k Θ_k + b (chebconv eq. (2)). forward(x (B, V, C_in), L̃ (V, V) sparse) → (B, V, C_out)."""

    def __init__(self, in_channels: int, out_channels: int, order: int, bias: bool = True) -> None:
        super().__init__()
        if order < 0:
            raise ValueError(f"order must be ≥ 0, got {order}")
        self.order = order
        self.weight = nn.Parameter(torch.empty(order + 1, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        bound = math.sqrt(6.0 / ((order + 1) * in_channels + out_channels))  # Glorot over the stacked terms
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor, scaled_laplacian: torch.Tensor) -> torch.Tensor:
        terms = chebyshev_basis(x, scaled_laplacian.to(x.dtype), self.order)
        y = torch.einsum("kbvc,kco->bvo", torch.stack(terms), self.weight)
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[2]}, order={self.order}"
