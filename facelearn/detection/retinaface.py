"""RetinaFace: backbone → feature pyramid → SSH context modules → task heads (book chapters "Context and
detection modules" and "Training and evaluating RetinaFace").

The model reads top to bottom like the paper's Fig. 2. ``model.preprocess(images)`` turns (B, 3, H, W) RGB
images of any size — uint8 pixels or floats in [0, 1], as the data set yields them — into the input its
weights were trained on: the :class:`~facelearn.weights.Preprocess` stored in its config (the ImageNet mean
and standard deviation for facelearn's own weights, BGR minus a mean for the reference implementation's
release), so a caller never has to remember the constants. ``forward`` takes that input and returns a dict
of per-anchor predictions, one entry per task head: ``cls`` (B, A, 2) logits, ``box`` (B, A, 4) and
``landmarks`` (B, A, 10) offsets (box_coding eq. 1, 2).
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
from facelearn.weights import IMAGENET, Preprocess


@dataclass(frozen=True)
class RetinaFaceConfig:
    """backbone: ``mobilenet0.25``, ``resnet50`` or ``resnet152``; anchors: ``common`` (P3–P5) or ``paper``
    (P2–P6); channels: pyramid / SSH width (64 for MobileNet-0.25, 256 for ResNets); tasks: the heads;
    pretrained: load ImageNet weights into the backbone (ResNets; needs the network); input: the convention
    the weights read, applied by :meth:`RetinaFace.preprocess`."""

    backbone: str = "mobilenet0.25"
    anchors: str = "common"
    channels: int = 64
    tasks: tuple[str, ...] = ("cls", "box", "landmarks")
    pretrained: bool = False
    input: Preprocess = IMAGENET

    @property
    def leaky(self) -> float:
        """LeakyReLU slope of FPN and SSH: 0.1 for narrow (≤ 64 channel) models, else a plain ReLU."""
        return 0.1 if self.channels <= 64 else 0.0


#: Named after the model registry (:data:`facelearn.models.PRESETS`): the common 3-level anchors unless ``-paper``.
PRESETS = {
    "retinaface-mobilenet0.25": RetinaFaceConfig("mobilenet0.25", "common", 64),
    "retinaface-mobilenet0.25-paper": RetinaFaceConfig("mobilenet0.25", "paper", 64),
    "retinaface-resnet50": RetinaFaceConfig("resnet50", "common", 256),
    "retinaface-resnet50-paper": RetinaFaceConfig("resnet50", "paper", 256),
    "retinaface-resnet152-paper": RetinaFaceConfig("resnet152", "paper", 256),
    # with the fourth head, the dense regression branch (chapter "The dense regression branch")
    "retinaface-mobilenet0.25-dense": RetinaFaceConfig("mobilenet0.25", "common", 64,
                                                       tasks=("cls", "box", "landmarks", "dense")),
}


def config(name: str, **changes: object) -> RetinaFaceConfig:
    """The preset called ``name`` (keys of :data:`PRESETS`), with ``changes`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown RetinaFace preset {name!r}; known: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **changes)


class RetinaFace(nn.Module):
    """The single-stage face detector: ``model(model.preprocess(images))``, images (B, 3, H, W) RGB → dict of
    (B, A, k)."""

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

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB, uint8 pixels or float in [0, 1] (or uint8 H×W×3 arrays) → the (B, 3, H, W) input
        ``forward`` reads: the config's :class:`~facelearn.weights.Preprocess`, on the images' device."""
        return self.config.input(images)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The per-level SSH outputs of the preprocessed input x (B, 3, H, W), finest first: list of
        (B, channels, H_l, W_l)."""
        c = self.body(x)
        pyramid = self.fpn([c[k] for k in self.levels])
        return [m(p) for m, p in zip(self.ssh, pyramid)]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.features(x)
        return {task: head(feats) for task, head in self.heads.items()}

    def anchors(self, image_size: tuple[int, int], device: torch.device | str | None = None) -> torch.Tensor:
        """(A, 4) cx cy w h anchors matching ``forward``'s output for an (H, W) input."""
        return generate_anchors(self.anchor_config, image_size, device=device)


def build(name: str = "retinaface-mobilenet0.25", **changes: object) -> RetinaFace:
    """A RetinaFace from the preset ``name`` (see :data:`PRESETS`)."""
    return RetinaFace(config(name, **changes))


def mobilenet025_common() -> RetinaFace:
    """MobileNet-0.25 with the common anchors (426,608 parameters)."""
    return build("retinaface-mobilenet0.25")


def mobilenet025_paper() -> RetinaFace:
    """MobileNet-0.25 with the paper's P2–P6 anchors."""
    return build("retinaface-mobilenet0.25-paper")


def resnet50_common() -> RetinaFace:
    """ResNet-50 with the common anchors (27,293,600 parameters)."""
    return build("retinaface-resnet50")


def resnet50_paper() -> RetinaFace:
    """ResNet-50 with the paper's P2–P6 anchors."""
    return build("retinaface-resnet50-paper")


def mobilenet025_dense() -> RetinaFace:
    """MobileNet-0.25, common anchors, with the dense regression branch's head."""
    return build("retinaface-mobilenet0.25-dense")


def resnet152_paper() -> RetinaFace:
    """ResNet-152 with the paper's P2–P6 anchors (the paper's strongest single model)."""
    return build("retinaface-resnet152-paper")
