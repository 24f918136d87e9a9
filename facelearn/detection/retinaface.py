"""RetinaFace: backbone → feature pyramid → SSH context modules → task heads (book chapters "Context and
detection modules" and "Training and evaluating RetinaFace").

The model reads top to bottom like the paper's Fig. 2. Its input is (B, 3, H, W) RGB in [0, 1] of any
size; it normalises with the ImageNet mean and standard deviation itself, so a caller never has to
remember the constants. Its output is a dict of per-anchor predictions, one entry per task head:
``cls`` (B, A, 2) logits, ``box`` (B, A, 4) and ``landmarks`` (B, A, 10) offsets (box_coding eq. 1, 2).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from facelearn.detection.anchors import AnchorConfig, anchor_config, generate_anchors
from facelearn.detection.backbones import build_backbone
from facelearn.detection.fpn import FPN
from facelearn.detection.heads import build_heads
from facelearn.detection.ssh import SSH

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class RetinaFaceConfig:
    """backbone: ``mobilenet0.25``, ``resnet50`` or ``resnet152``; anchors: ``common`` (P3–P5) or ``paper``
    (P2–P6); channels: pyramid / SSH width (64 for MobileNet-0.25, 256 for ResNets); tasks: the heads;
    pretrained: load ImageNet weights into the backbone (ResNets; needs the network)."""

    backbone: str = "mobilenet0.25"
    anchors: str = "common"
    channels: int = 64
    tasks: tuple[str, ...] = ("cls", "box", "landmarks")
    pretrained: bool = False

    @property
    def leaky(self) -> float:
        """LeakyReLU slope of FPN and SSH: 0.1 for narrow (≤ 64 channel) models, else a plain ReLU."""
        return 0.1 if self.channels <= 64 else 0.0


PRESETS = {
    "mobilenet0.25-common": RetinaFaceConfig("mobilenet0.25", "common", 64),
    "mobilenet0.25-paper": RetinaFaceConfig("mobilenet0.25", "paper", 64),
    "resnet50-common": RetinaFaceConfig("resnet50", "common", 256),
    "resnet50-paper": RetinaFaceConfig("resnet50", "paper", 256),
    "resnet152-paper": RetinaFaceConfig("resnet152", "paper", 256),
    # with the fourth head, the dense regression branch (chapter "The dense regression branch")
    "mobilenet0.25-common-dense": RetinaFaceConfig("mobilenet0.25", "common", 64,
                                                   tasks=("cls", "box", "landmarks", "dense")),
}


def config(name: str, **changes: object) -> RetinaFaceConfig:
    """The preset called ``name`` (keys of :data:`PRESETS`), with ``changes`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown RetinaFace preset {name!r}; known: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **changes)


class RetinaFace(nn.Module):
    """The single-stage face detector. ``forward(images (B, 3, H, W) in [0, 1])`` → dict of (B, A, k)."""

    def __init__(self, cfg: RetinaFaceConfig = RetinaFaceConfig()) -> None:
        super().__init__()
        self.config = cfg
        self.anchor_config: AnchorConfig = anchor_config(cfg.anchors)
        self.body = build_backbone(cfg.backbone, cfg.pretrained)
        # common: C3–C5; paper: C2–C5 plus P6 computed from C5
        self.levels = ["C3", "C4", "C5"] if cfg.anchors == "common" else ["C2", "C3", "C4", "C5"]
        in_channels = [self.body.channels[k] for k in self.levels]
        p6 = self.body.channels["C5"] if self.anchor_config.num_levels == len(self.levels) + 1 else None
        self.fpn = FPN(in_channels, cfg.channels, extra_p6_from=p6, leaky=cfg.leaky)
        self.ssh = nn.ModuleList([SSH(cfg.channels, cfg.channels, cfg.leaky) for _ in range(self.anchor_config.num_levels)])
        self.heads = build_heads(cfg.channels, self.anchor_config.anchors_per_location, cfg.tasks)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The per-level SSH outputs, finest first: list of (B, channels, H_l, W_l)."""
        x = (images - self.mean) / self.std
        c = self.body(x)
        pyramid = self.fpn([c[k] for k in self.levels])
        return [m(p) for m, p in zip(self.ssh, pyramid)]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(images)
        return {task: head(feats) for task, head in self.heads.items()}

    def anchors(self, image_size: tuple[int, int], device: torch.device | str | None = None) -> torch.Tensor:
        """(A, 4) cx cy w h anchors matching ``forward``'s output for an (H, W) input."""
        return generate_anchors(self.anchor_config, image_size, device=device)


def build(name: str = "mobilenet0.25-common", **changes: object) -> RetinaFace:
    """A RetinaFace from the preset ``name`` (see :data:`PRESETS`)."""
    return RetinaFace(config(name, **changes))


def mobilenet025_common() -> RetinaFace:
    """MobileNet-0.25 with the common anchors (426,608 parameters)."""
    return build("mobilenet0.25-common")


def mobilenet025_paper() -> RetinaFace:
    """MobileNet-0.25 with the paper's P2–P6 anchors."""
    return build("mobilenet0.25-paper")


def resnet50_common() -> RetinaFace:
    """ResNet-50 with the common anchors (27,293,600 parameters)."""
    return build("resnet50-common")


def resnet50_paper() -> RetinaFace:
    """ResNet-50 with the paper's P2–P6 anchors."""
    return build("resnet50-paper")


def resnet152_paper() -> RetinaFace:
    """ResNet-152 with the paper's P2–P6 anchors (the paper's strongest single model)."""
    return build("resnet152-paper")
