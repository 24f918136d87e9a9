"""Embedding networks for recognition (book chapters "Feature normalisation" and the loss chapters).

``SmallCNN`` is the CPU chapters' network for 28–32 px inputs.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.PReLU(c_out))


class SmallCNN(nn.Module):
    """Three conv stages (each two 3×3 conv–BN–PReLU and a 2×2 max-pool), then a linear embedding.

    x: (N, C, H, W) with H, W in 28…32 → (N, embedding_dim). ``width`` is the first stage's channels.
    A final BatchNorm1d on the embedding (as in insightface's backbones) keeps features centred.
    """

    def __init__(self, in_channels: int = 3, embedding_dim: int = 128, width: int = 32, input_size: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv_bn(in_channels, w), _conv_bn(w, w), nn.MaxPool2d(2),
            _conv_bn(w, 2 * w), _conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),
            _conv_bn(2 * w, 4 * w), _conv_bn(4 * w, 4 * w), nn.MaxPool2d(2),
        )
        side = input_size // 8
        self.embedding = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(4 * w * side * side, embedding_dim),
                                       nn.BatchNorm1d(embedding_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.features(x))


def digits_cnn_2d() -> SmallCNN:
    """The normalisation chapter's network: 1×32×32 digits → 2-D features (width 16)."""
    return SmallCNN(in_channels=1, embedding_dim=2, width=16, input_size=32)
