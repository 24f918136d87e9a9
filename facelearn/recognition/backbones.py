"""Embedding networks for recognition (book chapters "Feature normalisation" and the loss chapters).

``SmallCNN`` is the CPU chapters' network for small inputs (16–64 px). Every backbone carries the
:class:`~facelearn.weights.Preprocess` record its weights read (``input``: facelearn's and insightface's
RGB in [−1, 1], (x/255 − 0.5)/0.5, at its input size): ``model(model.preprocess(images))`` with images
(N, 3, S, S) RGB, uint8 pixels or float in [0, 1] as the identity data sets yield them.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from facelearn.weights import SIGNED, Preprocess


def signed(size: int) -> Preprocess:
    """The recognition input at ``size`` × ``size``: RGB, (x/255 − 0.5)/0.5, i.e. [−1, 1]."""
    return replace(SIGNED, size=(size, size))


class Embedder(nn.Module):
    """A recognition backbone: ``input`` is its :class:`~facelearn.weights.Preprocess`, ``preprocess`` applies it."""

    input: Preprocess | None

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) RGB, uint8 pixels or float in [0, 1] → the (N, 3, S, S) input ``forward`` reads, on the
        images' device. A greyscale network (``input`` None: the normalisation chapter's digits) reads its
        [0, 1] images as they are."""
        return images if self.input is None else self.input(images)


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.PReLU(c_out))


class SmallCNN(Embedder):
    """Three conv stages (each two 3×3 conv–BN–PReLU and a 2×2 max-pool), then a linear embedding.

    x: (N, C, S, S) with S = ``input_size``, a multiple of 8 → (N, embedding_dim). ``width`` is the first stage's channels.
    A final BatchNorm1d on the embedding (as in insightface's backbones) keeps features centred; the
    normalisation chapter turns it off (``embedding_bn=False``) to show how plain softmax grows feature norms.
    ``input``: :func:`signed` at ``input_size`` for RGB, none for one channel.
    """

    def __init__(self, in_channels: int = 3, embedding_dim: int = 128, width: int = 32, input_size: int = 32,
                 embedding_bn: bool = True, dropout: float = 0.1) -> None:
        super().__init__()
        self.input = signed(input_size) if in_channels == 3 else None
        w = width
        self.features = nn.Sequential(
            _conv_bn(in_channels, w), _conv_bn(w, w), nn.MaxPool2d(2),
            _conv_bn(w, 2 * w), _conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),
            _conv_bn(2 * w, 4 * w), _conv_bn(4 * w, 4 * w), nn.MaxPool2d(2),
        )
        side = input_size // 8
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * w * side * side, embedding_dim)]
        if embedding_bn:
            layers.append(nn.BatchNorm1d(embedding_dim))
        self.embedding = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.features(x))


def digits_cnn_2d() -> SmallCNN:
    """The normalisation chapter's network: 1×16×16 digits → 2-D features (width 16, no BN or dropout on them)."""
    return SmallCNN(in_channels=1, embedding_dim=2, width=16, input_size=16, embedding_bn=False, dropout=0.0)


def synthface_cnn() -> SmallCNN:
    """The loss chapters' network: 3×64×64 SynthFace faces → 128-d embeddings (width 16, CPU-sized)."""
    return SmallCNN(in_channels=3, embedding_dim=128, width=16, input_size=64)


# -- iResNet (Duta et al. 2020 as used by insightface's ArcFace; ArcFace sec. 3.3 "IR" blocks) ---------------

class IBasicBlock(nn.Module):
    """insightface's improved residual unit: BN → 3×3 conv → BN → PReLU → 3×3 conv (stride) → BN, plus the
    shortcut (a 1×1 conv + BN when the shape changes). (N, C_in, H, W) → (N, C_out, H/stride, W/stride)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in, eps=1e-5), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out, eps=1e-5), nn.PReLU(c_out),
            nn.Conv2d(c_out, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out, eps=1e-5))
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out, eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class IResNet(Embedder):
    """iResNet for 112×112 faces: 3×3 stem (64, stride 1), four stages of :class:`IBasicBlock` with 64, 128,
    256, 512 channels (the first block of each stage strides 2: 112 → 7), then BN, dropout, a linear layer
    from 512·7·7 and a BatchNorm1d with its scale frozen at 1 (insightface's "features" layer).

    x: (N, 3, 112, 112) → (N, embedding_dim). ``layers``: blocks per stage ((2,2,2,2) = iResNet-18,
    (3,4,14,3) = 50, (3,13,30,3) = 100).
    """

    def __init__(self, layers: tuple[int, int, int, int], embedding_dim: int = 512, dropout: float = 0.0,
                 input_size: int = 112) -> None:
        super().__init__()
        self.input = signed(input_size)
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        stages, c_in = [], 64
        for c_out, n in zip((64, 128, 256, 512), layers):
            blocks = [IBasicBlock(c_in, c_out, 2)] + [IBasicBlock(c_out, c_out) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        side = input_size // 16
        self.head = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(dropout), nn.Flatten(),
                                  nn.Linear(512 * side * side, embedding_dim), nn.BatchNorm1d(embedding_dim))
        nn.init.constant_(self.head[-1].weight, 1.0)
        self.head[-1].weight.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def iresnet18() -> IResNet:
    """iResNet-18, 512-d embedding, 112×112 input."""
    return IResNet((2, 2, 2, 2))


def iresnet34() -> IResNet:
    """iResNet-34, 512-d embedding, 112×112 input."""
    return IResNet((3, 4, 6, 3))


def iresnet50() -> IResNet:
    """iResNet-50, 512-d embedding, 112×112 input (insightface's ms1mv2_r50 recipe backbone)."""
    return IResNet((3, 4, 14, 3))


def iresnet100() -> IResNet:
    """iResNet-100, 512-d embedding, 112×112 input (ArcFace's LResNet100E-IR)."""
    return IResNet((3, 13, 30, 3))


# -- MobileFaceNet (Chen et al. 2018, Table 1) --------------------------------------------------------------

def _conv(c_in: int, c_out: int, k: int, s: int, groups: int = 1, act: bool = True,
          padding: int | None = None) -> nn.Sequential:
    pad = k // 2 if padding is None else padding
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, s, pad, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
    if act:
        layers.append(nn.PReLU(c_out))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """MobileNetV2 inverted residual with PReLU: 1×1 expand (×t) → 3×3 depthwise (stride) → 1×1 linear
    projection; a residual connection when the stride is 1 and the channels match."""

    def __init__(self, c_in: int, c_out: int, stride: int, t: int) -> None:
        super().__init__()
        hidden = c_in * t
        self.body = nn.Sequential(_conv(c_in, hidden, 1, 1), _conv(hidden, hidden, 3, stride, groups=hidden),
                                  _conv(hidden, c_out, 1, 1, act=False))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileFaceNet(Embedder):
    """MobileFaceNet (Chen et al. 2018, Table 1): 3×3 conv, 3×3 depthwise conv, five bottleneck groups
    (t, c, n, s) = (2,64,5,2), (4,128,1,2), (2,128,6,1), (4,128,1,2), (2,128,2,1), 1×1 conv to 512, a 7×7
    global depthwise conv (GDConv, no non-linearity) and a linear 1×1 conv to the embedding.
    x: (N, 3, 112, 112) → (N, embedding_dim); about one million parameters for 128-d.
    """

    SETTING = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))

    def __init__(self, embedding_dim: int = 128) -> None:
        super().__init__()
        self.input = signed(112)
        layers: list[nn.Module] = [_conv(3, 64, 3, 2), _conv(64, 64, 3, 1, groups=64)]
        c_in = 64
        for t, c, n, s in self.SETTING:
            for i in range(n):
                layers.append(Bottleneck(c_in, c, s if i == 0 else 1, t))
                c_in = c
        layers += [_conv(c_in, 512, 1, 1), _conv(512, 512, 7, 1, groups=512, act=False, padding=0)]
        self.features = nn.Sequential(*layers)
        self.embedding = nn.Sequential(nn.Conv2d(512, embedding_dim, 1, bias=False), nn.BatchNorm2d(embedding_dim),
                                       nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.features(x))


def mobilefacenet() -> MobileFaceNet:
    """MobileFaceNet, 128-d embedding, 112×112 input."""
    return MobileFaceNet()
