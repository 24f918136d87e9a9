"""PFLD: a practical facial landmark detector (book: chapter "PFLD landmark detection").

The backbone is built from MobileNetV2 inverted-residual blocks {cite}`sandler2018mobilenetv2` and reads
top to bottom like Fig. 2 of the PFLD paper {cite}`guo2019pfld`::

    112×112×3 ─conv3×3/2─ 56×56×64 ─conv3×3─ 56×56×64
      ─ IR(t=2, s=2) ×5 ─ 28×28×64   ← feature handed to the auxiliary net
      ─ IR(t=2, s=2), IR(t=4) ×6 ─ 14×14×128
      ─ IR(t=2) ─ S1: 14×14×16 ──────────── average-pool → 16
      ─ conv3×3/2 ─ S2: 7×7×32 ──────────── average-pool → 32
      ─ conv7×7 ─ S3: 1×1×128 ───────────── 128
    concat(S1, S2, S3) = 176 ─ fully connected ─ 2·P coordinates

All channel counts are multiplied by the width ``α`` (``PFLD 0.25X`` and ``PFLD 1X`` in the paper). The
auxiliary network maps the 28×28 feature to (yaw, pitch, roll); it is used only while training.
Coordinates are predicted in [0, 1] relative to the 112×112 crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from facelearn.weights import UNIT, Preprocess


@dataclass(frozen=True)
class PFLDConfig:
    """Shape of a PFLD model.

    width: the width multiplier α applied to every channel count (1.0 → PFLD 1X, 0.25 → PFLD 0.25X);
    n_points: number of landmarks P (98 for WFLW, 68 for 300-W); input_size: side of the square crop;
    input: the convention the weights read, applied by :meth:`PFLD.preprocess`; s3_norm: the
    BatchNorm after S3's 7×7 convolution (PFLD-pytorch defines one but never applies it: its release
    loads with ``False``, the layer then the identity).
    """

    width: float = 1.0
    n_points: int = 98
    input_size: int = 112
    input: Preprocess = UNIT
    s3_norm: bool = True

    def channels(self, c: int) -> int:
        """``c`` scaled by the width multiplier, at least 1."""
        return max(1, int(round(c * self.width)))


PRESETS = {"1x": PFLDConfig(1.0), "0.25x": PFLDConfig(0.25)}


def conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int | None = None,
                 groups: int = 1) -> nn.Sequential:
    """Convolution (no bias) → BatchNorm → ReLU."""
    padding = kernel // 2 if padding is None else padding
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class InvertedResidual(nn.Module):
    """MobileNetV2's inverted residual block (MobileNetV2 Table 1).

    1×1 expansion to ``t·c_in`` → 3×3 depthwise (stride ``s``) → 1×1 linear projection to ``c_out``, with the
    identity shortcut when the shapes allow it (``stride == 1`` and ``c_in == c_out``) and ``residual``.
    x: (N, c_in, H, W) → (N, c_out, H/s, W/s).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int, residual: bool = True) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.residual = residual and stride == 1 and c_in == c_out
        self.body = nn.Sequential(
            conv_bn_relu(c_in, hidden, 1),
            conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class PFLD(nn.Module):
    """The PFLD backbone with multi-scale fully connected fusion (PFLD §3, Fig. 2).

    preprocess(crops): (N, 3, 112, 112) RGB crops, uint8 pixels or float in [0, 1] as the landmark data set
    yields them → the input the weights read (the config's :class:`~facelearn.weights.Preprocess`).
    forward(x): that input → (landmarks (N, 2P) in [0, 1] crop units, feature (N, 64α, 28, 28)).
    The feature is the input of :class:`AuxiliaryNet`.
    """

    def __init__(self, config: PFLDConfig = PFLDConfig()) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        c64, c128 = c(64), c(128)
        self.stem = nn.Sequential(conv_bn_relu(3, c64, 3, 2), conv_bn_relu(c64, c64, 3, 1))   # 56×56
        self.stage3 = nn.Sequential(InvertedResidual(c64, c64, 2, 2, residual=False),          # 28×28
                                    *[InvertedResidual(c64, c64, 1, 2) for _ in range(4)])
        self.stage4 = nn.Sequential(InvertedResidual(c64, c128, 2, 2, residual=False),         # 14×14
                                    InvertedResidual(c128, c128, 1, 4, residual=False),
                                    *[InvertedResidual(c128, c128, 1, 4) for _ in range(5)])
        self.s1 = InvertedResidual(c128, c(16), 1, 2, residual=False)                          # S1 14×14
        self.s2 = conv_bn_relu(c(16), c(32), 3, 2)                                             # S2 7×7
        side = config.input_size // 16
        self.s3 = nn.Sequential(nn.Conv2d(c(32), c(128), side, 1, 0),                           # S3 1×1
                                nn.BatchNorm2d(c(128)) if config.s3_norm else nn.Identity(), nn.ReLU(inplace=True))
        self.fc = nn.Linear(c(16) + c(32) + c(128), 2 * config.n_points)

    def preprocess(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) RGB crops (uint8 or [0, 1]) → the (N, 3, S, S) input ``forward`` reads."""
        return self.config.input(crops)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = self.stage3(self.stem(x))
        s1 = self.s1(self.stage4(feature))
        s2 = self.s2(s1)
        s3 = self.s3(s2)
        fused = torch.cat([s1.mean(dim=(2, 3)), s2.mean(dim=(2, 3)), s3.flatten(1)], dim=1)
        return self.fc(fused), feature


class AuxiliaryNet(nn.Module):
    """The auxiliary network that predicts the Euler angles from PFLD's 28×28 feature (PFLD §3, Fig. 2).

    Four conv–BN–ReLU layers (3×3/2, 3×3, 3×3/2, 7×7), a max-pool over what remains, two fully connected
    layers. forward(feature): (N, 64α, 28, 28) → (N, 3) angles (yaw, pitch, roll) in radians.
    """

    def __init__(self, config: PFLDConfig = PFLDConfig()) -> None:
        super().__init__()
        c = config.channels
        self.body = nn.Sequential(conv_bn_relu(c(64), c(128), 3, 2), conv_bn_relu(c(128), c(128), 3, 1),
                                  conv_bn_relu(c(128), c(32), 3, 2), conv_bn_relu(c(32), c(128), 7, 1, padding=1),
                                  nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(c(128), 32), nn.Linear(32, 3))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(feature))


def pfld_pair(config: PFLDConfig = PFLDConfig()) -> nn.ModuleDict:
    """PFLD and its auxiliary net in one ``nn.ModuleDict`` (keys ``pfld``, ``aux``), as the trainer needs."""
    return nn.ModuleDict({"pfld": PFLD(config), "aux": AuxiliaryNet(config)})


def pfld_1x() -> PFLD:
    """PFLD 1X with 98 WFLW points (preset ``pfld-1x``)."""
    return PFLD(PRESETS["1x"])


def pfld_025x() -> PFLD:
    """PFLD 0.25X with 98 WFLW points (preset ``pfld-0.25x``)."""
    return PFLD(PRESETS["0.25x"])


def pfld_aux_1x() -> AuxiliaryNet:
    """The auxiliary Euler-angle network of PFLD 1X (preset ``pfld-aux-1x``)."""
    return AuxiliaryNet(PRESETS["1x"])


def pfld_aux_025x() -> AuxiliaryNet:
    """The auxiliary Euler-angle network of PFLD 0.25X (preset ``pfld-aux-0.25x``)."""
    return AuxiliaryNet(PRESETS["0.25x"])
