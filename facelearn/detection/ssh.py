"""SSH context / detection module (book chapter "Context and detection modules").

Najibi et al.'s SSH widens each level's receptive field cheaply: one 3×3 branch (½ of the output
channels), and a shared 3×3 followed by one more 3×3 (a 5×5 field, ¼) or two more (a 7×7 field, ¼). The
three branches are concatenated and passed through a ReLU (RetinaFace Sec. 3.2, "context module").
"""

from __future__ import annotations

import torch
from torch import nn

from facelearn.detection.backbones import conv_bn


class SSH(nn.Module):
    """(B, C_in, H, W) → (B, C_out, H, W); C_out divisible by 4. ``leaky`` as in :class:`FPN`."""

    def __init__(self, in_channels: int, out_channels: int, leaky: float = 0.0) -> None:
        super().__init__()
        if out_channels % 4:
            raise ValueError(f"SSH out_channels must be divisible by 4, got {out_channels}")
        half, quarter = out_channels // 2, out_channels // 4
        self.conv3 = conv_bn(in_channels, half, 3, 1, None)
        self.conv5_1 = conv_bn(in_channels, quarter, 3, 1, leaky)
        self.conv5_2 = conv_bn(quarter, quarter, 3, 1, None)
        self.conv7_2 = conv_bn(quarter, quarter, 3, 1, leaky)
        self.conv7_3 = conv_bn(quarter, quarter, 3, 1, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.conv3(x)
        t = self.conv5_1(x)
        b5 = self.conv5_2(t)
        b7 = self.conv7_3(self.conv7_2(t))
        return torch.cat([b3, b5, b7], dim=1).relu_()  # in place on the fresh concatenation: one map less


def receptive_field(kernels: list[int]) -> int:
    """Receptive field (in feature-map cells) of stride-1 convolutions with the given kernel sizes stacked:
    1 + Σ (k − 1). SSH's branches: [3] → 3, [3, 3] → 5, [3, 3, 3] → 7."""
    return 1 + sum(k - 1 for k in kernels)


@torch.no_grad()
def branch_footprints(ssh: SSH, size: int = 15) -> dict[str, torch.Tensor]:
    """Which output cells of each SSH branch change when one input cell (the centre of a ``size`` × ``size``
    map) changes: the empirical receptive field of the 3×3, 5×5 and 7×7 branches. Returns
    {"3x3" | "5x5" | "7x7": (size, size) bool}."""
    was = ssh.training
    ssh.eval()
    c_in = ssh.conv3[0].in_channels
    half, quarter = ssh.conv3[0].out_channels, ssh.conv5_2[0].out_channels
    x = torch.zeros(1, c_in, size, size)
    base = ssh(x)
    x[0, :, size // 2, size // 2] = 1.0
    diff = (ssh(x) - base).abs()[0]
    ssh.train(was)
    parts = {"3x3": diff[:half], "5x5": diff[half:half + quarter], "7x7": diff[half + quarter:]}
    return {k: v.sum(dim=0) > 0 for k, v in parts.items()}


def effective_receptive_field(features: "callable", image_size: tuple[int, int], level: int) -> torch.Tensor:
    """Gradient magnitude of the centre cell of pyramid level ``level`` with respect to the input image —
    the *effective* receptive field in pixels (Luo et al. 2016). features: images (1, 3, H, W) → list of
    per-level maps (e.g. ``RetinaFace.features``). Returns (H, W), normalised to max 1."""
    x = torch.full((1, 3, *image_size), 0.5, requires_grad=True)
    f = features(x)[level]
    f[0, :, f.shape[2] // 2, f.shape[3] // 2].sum().backward()
    g = x.grad[0].abs().sum(dim=0)
    return g / g.max().clamp(min=1e-12)
