"""Backbones of RetinaFace: MobileNet-0.25 (as in the common implementation) and torchvision's ResNet-50
/ ResNet-152 (book chapter "Context and detection modules").

Each backbone returns a dict of feature maps ``{"C2": …, "C3": …, "C4": …, "C5": …}`` (stride 4, 8, 16,
32) and exposes their channel counts in ``channels``. ImageNet weights are loaded only when asked for
(``pretrained=True``) — they are downloaded by torchvision and need the network.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, leaky: float | None = 0.0,
            groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + LeakyReLU(``leaky``); ``leaky=None`` leaves out the activation."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if leaky is not None:
        layers.append(nn.LeakyReLU(leaky, inplace=True))
    return nn.Sequential(*layers)


def conv_dw(cin: int, cout: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    """Depthwise-separable block: 3×3 depthwise conv-BN-act then 1×1 pointwise conv-BN-act."""
    return nn.Sequential(conv_bn(cin, cin, 3, stride, leaky, groups=cin), conv_bn(cin, cout, 1, 1, leaky))


class MobileNetV1(nn.Module):
    """MobileNet-v1 with width multiplier 0.25 (channels 8 … 256), LeakyReLU(0.1), as the common RetinaFace.

    Input (B, 3, H, W); outputs C2 (32 ch, stride 4), C3 (64, 8), C4 (128, 16), C5 (256, 32).
    """

    def __init__(self, width: float = 0.25) -> None:
        super().__init__()
        c = lambda n: int(n * width)  # noqa: E731
        self.stage0 = nn.Sequential(conv_bn(3, c(32), 3, 2, 0.1), conv_dw(c(32), c(64), 1),
                                    conv_dw(c(64), c(128), 2), conv_dw(c(128), c(128), 1))
        self.stage1 = nn.Sequential(conv_dw(c(128), c(256), 2), conv_dw(c(256), c(256), 1))
        self.stage2 = nn.Sequential(conv_dw(c(256), c(512), 2), *[conv_dw(c(512), c(512), 1) for _ in range(5)])
        self.stage3 = nn.Sequential(conv_dw(c(512), c(1024), 2), conv_dw(c(1024), c(1024), 1))
        self.channels = {"C2": c(128), "C3": c(256), "C4": c(512), "C5": c(1024)}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c2 = self.stage0(x)
        c3 = self.stage1(c2)
        c4 = self.stage2(c3)
        return {"C2": c2, "C3": c3, "C4": c4, "C5": self.stage3(c4)}


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its pooling and classifier. Outputs C2–C5 (strides 4–32)."""

    def __init__(self, builder: Callable[..., nn.Module], weights: object | None = None) -> None:
        super().__init__()
        net = builder(weights=weights)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        width = net.fc.in_features  # 2048 for ResNet-50/152
        self.channels = {"C2": width // 8, "C3": width // 4, "C4": width // 2, "C5": width}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c2 = self.layer1(self.stem(x))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return {"C2": c2, "C3": c3, "C4": c4, "C5": self.layer4(c4)}


def build_backbone(name: str, pretrained: bool = False) -> nn.Module:
    """``mobilenet0.25``, ``resnet50`` or ``resnet152``. ``pretrained`` loads torchvision's ImageNet weights
    (ResNets only; downloads them). MobileNet-0.25 always starts from scratch here."""
    import torchvision.models as tvm

    if name == "mobilenet0.25":
        if pretrained:
            raise ValueError("no ImageNet weights are distributed for MobileNet-0.25; use pretrained=False")
        return MobileNetV1(0.25)
    if name == "resnet50":
        return ResNetBackbone(tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1 if pretrained else None)
    if name == "resnet152":
        return ResNetBackbone(tvm.resnet152, tvm.ResNet152_Weights.IMAGENET1K_V1 if pretrained else None)
    raise ValueError(f"unknown backbone {name!r}; known: mobilenet0.25, resnet50, resnet152")
