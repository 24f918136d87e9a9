"""Feature pyramid (book chapter "Context and detection modules").

Lateral 1×1 convolutions bring every backbone level to the same width; a top-down pass adds the
nearest-upsampled coarser map to each finer one and smooths the sum with a 3×3 convolution (Lin et al.,
FPN). The paper's P6 is a 3×3 stride-2 convolution on C5 (RetinaFace Sec. 4.1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facelearn.detection.backbones import conv_bn


class FPN(nn.Module):
    """in_channels: channels of the input levels, finest first; out_channels: the pyramid's width;
    extra_p6_from: channels of C5 to add P6 from (or ``None``); leaky: LeakyReLU slope (the common
    implementation uses 0.1 when out_channels ≤ 64, else 0 = ReLU).

    forward(list of (B, C_l, H_l, W_l), finest first) → list of (B, out_channels, H_l, W_l) (+ P6).
    """

    def __init__(self, in_channels: list[int], out_channels: int, extra_p6_from: int | None = None,
                 leaky: float = 0.0) -> None:
        super().__init__()
        self.lateral = nn.ModuleList([conv_bn(c, out_channels, 1, 1, leaky) for c in in_channels])
        self.merge = nn.ModuleList([conv_bn(out_channels, out_channels, 3, 1, leaky) for _ in in_channels[:-1]])
        self.p6 = conv_bn(extra_p6_from, out_channels, 3, 2, leaky) if extra_p6_from else None

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        lat = [conv(f) for conv, f in zip(self.lateral, features)]
        outs = [lat[-1]]
        for i in range(len(lat) - 2, -1, -1):  # top-down: coarse to fine
            up = F.interpolate(outs[0], size=lat[i].shape[-2:], mode="nearest")
            outs.insert(0, self.merge[i](up.add_(lat[i])))  # the sum written into the fresh upsampled map
        if self.p6 is not None:
            outs.append(self.p6(features[-1]))
        return outs
