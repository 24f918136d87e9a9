"""Anchors: one square box per scale at every position of every pyramid level (book chapter
"Anchors, pyramids and tiny faces").

Two presets (RetinaFace paper Sec. 4.1 and the common 3-level implementation):

* ``paper``: P2–P6 (strides 4–64), three scales per level in steps of 2^(1/3), sizes 16 … ≈406 px,
  aspect ratio 1 — 102,300 anchors at 640 × 640;
* ``common``: strides 8/16/32 with sizes 16/32, 64/128, 256/512 — 16,800 anchors at 640 × 640.

Anchors are (cx, cy, w, h) in pixels of the network input. Order: level by level, then row by row,
then column by column, then size by size — the order in which :mod:`facelearn.detection.heads` flattens
its outputs.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class AnchorConfig:
    """Anchor sizes per pyramid level.

    strides: the stride (px) of each level's feature map; sizes: per level, the side lengths (px) of the
    square anchors centred on each feature-map cell; name: ``paper`` or ``common``.
    """

    name: str
    strides: tuple[int, ...]
    sizes: tuple[tuple[float, ...], ...]

    @property
    def num_levels(self) -> int:
        return len(self.strides)

    @property
    def anchors_per_location(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.sizes)

    def feature_sizes(self, image_size: tuple[int, int]) -> list[tuple[int, int]]:
        """(H_l, W_l) of each level for an (H, W) input: ⌈H / stride⌉, as stride-2 convolutions with
        padding 1 produce."""
        h, w = image_size
        return [(math.ceil(h / s), math.ceil(w / s)) for s in self.strides]

    def count(self, image_size: tuple[int, int]) -> int:
        """Number of anchors for an (H, W) input."""
        return sum(fh * fw * k for (fh, fw), k in zip(self.feature_sizes(image_size), self.anchors_per_location))


def paper_config() -> AnchorConfig:
    """RetinaFace paper: P2–P6, sizes 16·2^(l−2)·2^(k/3) on level P_l, k = 0, 1, 2 (16 … 406 px)."""
    strides = (4, 8, 16, 32, 64)
    sizes = tuple(tuple(16 * 2 ** level * 2 ** (k / 3) for k in range(3)) for level in range(5))
    return AnchorConfig("paper", strides, sizes)


def common_config() -> AnchorConfig:
    """The common 3-level implementation: strides 8/16/32, sizes 16/32, 64/128, 256/512."""
    return AnchorConfig("common", (8, 16, 32), ((16.0, 32.0), (64.0, 128.0), (256.0, 512.0)))


PRESETS = {"paper": paper_config, "common": common_config}


def anchor_config(name: str) -> AnchorConfig:
    """The anchor preset called ``name`` (``paper`` or ``common``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown anchor preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]()


def generate_anchors(config: AnchorConfig, image_size: tuple[int, int],
                     device: torch.device | str | None = None) -> torch.Tensor:
    """All anchors of an (H, W) input. Returns (A, 4) float32 (cx, cy, w, h) in pixels.

    The anchor of level l, cell (i, j) and size s is centred on the cell centre
    ((j + ½)·stride_l, (i + ½)·stride_l) with width = height = s. A detector asks for the same few sizes
    again and again (one per pyramid pass), so the last sizes' anchors are kept and a copy is returned.
    """
    h, w = image_size
    return _anchors(config, (int(h), int(w)), None if device is None else torch.device(device)).clone()


@functools.lru_cache(maxsize=16)
def _anchors(config: AnchorConfig, image_size: tuple[int, int], device: torch.device | None) -> torch.Tensor:
    out = []
    for (fh, fw), stride, sizes in zip(config.feature_sizes(image_size), config.strides, config.sizes):
        ys = (torch.arange(fh, dtype=torch.float32, device=device) + 0.5) * stride
        xs = (torch.arange(fw, dtype=torch.float32, device=device) + 0.5) * stride
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")  # (fh, fw)
        k = len(sizes)
        side = torch.tensor(sizes, dtype=torch.float32, device=device)
        level = torch.stack([cx[..., None].expand(fh, fw, k), cy[..., None].expand(fh, fw, k),
                             side.expand(fh, fw, k), side.expand(fh, fw, k)], dim=-1)
        out.append(level.reshape(-1, 4))
    return torch.cat(out)


def anchor_levels(config: AnchorConfig, image_size: tuple[int, int]) -> torch.Tensor:
    """(A,) int64: the pyramid level index (0 = finest) of each anchor, in :func:`generate_anchors` order."""
    counts = [fh * fw * k for (fh, fw), k in zip(config.feature_sizes(image_size), config.anchors_per_location)]
    return torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))


def best_anchor_iou(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """For each face, the IoU of its best-overlapping anchor — the "coverage" curve of the chapter.

    boxes: (N, 4) x1 y1 x2 y2; anchors: (A, 4) cx cy w h. Returns (N,).
    """
    from torchvision.ops import box_iou

    from facelearn.detection.box_coding import cxcywh_to_xyxy

    if len(boxes) == 0:
        return boxes.new_zeros(0)
    return box_iou(boxes, cxcywh_to_xyxy(anchors)).max(dim=1).values


def coverage(config: AnchorConfig, face_sizes: list[float], image_size: tuple[int, int] = (640, 640),
             samples: int = 200, seed: int = 0) -> dict[str, np.ndarray]:
    """How well anchors cover square faces of each side length, placed at random positions.

    Returns ``median_iou`` (S,) — the median over positions of the best anchor IoU — and ``matchable`` (S,),
    the fraction of positions whose best anchor reaches IoU ≥ 0.5 (a positive without the "keep the best
    anchor" rule).
    """
    g = torch.Generator().manual_seed(seed)
    anchors = generate_anchors(config, image_size)
    h, w = image_size
    med, frac = [], []
    for s in face_sizes:
        xy = torch.rand(samples, 2, generator=g) * torch.tensor([w - s, h - s])
        boxes = torch.cat([xy, xy + s], dim=1)
        best = best_anchor_iou(boxes, anchors)
        med.append(float(best.median()))
        frac.append(float((best >= 0.5).float().mean()))
    return {"median_iou": np.array(med), "matchable": np.array(frac)}
