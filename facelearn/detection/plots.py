"""Figures of the detection chapters: boxes, anchors, landmarks and detections drawn with matplotlib
(book chapters "Anchors, pyramids and tiny faces", "Context and detection modules", "Training and
evaluating RetinaFace")."""

from __future__ import annotations

import numpy as np
import torch

from facelearn.detection.box_coding import cxcywh_to_xyxy
from facelearn.viz import palette

#: One Okabe–Ito colour per pyramid level; the levels' boxes also differ in line style (palette.LINESTYLES).
LEVEL_COLOURS = ("#D55E00", "#E69F00", "#009E73", "#56B4E9", "#CC79A7")


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def draw_boxes(ax, boxes, colour: str = palette.POSITIVE, width: float = 1.5, labels=None, style="-") -> None:
    """Draw (N, 4) x1 y1 x2 y2 boxes on a matplotlib axis, with optional text labels."""
    from matplotlib.patches import Rectangle

    for i, (x1, y1, x2, y2) in enumerate(_np(boxes).reshape(-1, 4)):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=width,
                               linestyle=style))
        if labels is not None:
            ax.text(x1, y1 - 2, str(labels[i]), color=colour, fontsize=7, va="bottom")


def draw_landmarks(ax, points, colours=("#D55E00", "#56B4E9", "#009E73", "#CC79A7", "#F0E442"),
                   size: float = 8) -> None:
    """Draw (N, 5, 2) landmarks, one colour and one marker per point of the 5-point order (left eye ○, right
    eye □, nose △, left mouth corner ◇, right mouth corner ▽)."""
    pts = _np(points).reshape(-1, 5, 2)
    for k, c in enumerate(colours):
        ax.scatter(pts[:, k, 0], pts[:, k, 1], s=size, c=c, marker=palette.marker(k), linewidths=0)


def draw_anchor_levels(ax, image: np.ndarray, config, centre: tuple[float, float]) -> None:
    """The image with, for every pyramid level of ``config``, the anchors of the cell containing ``centre``
    (one colour and line style per level) and that level's grid of anchor centres nearby (one marker per level)."""
    from facelearn.detection.anchors import anchor_levels, generate_anchors

    h, w = image.shape[:2]
    ax.imshow(image)
    anchors = generate_anchors(config, (h, w))
    levels = anchor_levels(config, (h, w))
    for level, stride in enumerate(config.strides):
        a = anchors[levels == level]
        d = (a[:, :2] - torch.tensor(centre)).abs()
        cell = a[(d <= stride / 2).all(dim=1)]
        near = a[(d <= 2.5 * stride).all(dim=1)]
        colour = LEVEL_COLOURS[level % len(LEVEL_COLOURS)]
        ax.scatter(_np(near[:, 0]), _np(near[:, 1]), s=6, c=colour, marker=palette.marker(level), linewidths=0)
        draw_boxes(ax, cxcywh_to_xyxy(cell), colour, 1.2, style=palette.linestyle(level))
        ax.plot([], [], color=colour, ls=palette.linestyle(level), marker=palette.marker(level), ms=3,
                label=f"stride {stride}: {', '.join(f'{s:.0f}' for s in config.sizes[level])} px")
    ax.legend(loc="lower right", fontsize=7)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")


def draw_matching(ax, image: np.ndarray, anchors: torch.Tensor, labels: torch.Tensor, faces: torch.Tensor,
                  ignored: bool = True) -> None:
    """Positive anchors (bluish green, solid) and, optionally, ignored ones (yellow, dashed) of one image, with
    its faces (white, thick). anchors: (A, 4) cx cy w h; labels: (A,) 1 / 0 / −1; faces: (N, 4) x1 y1 x2 y2."""
    ax.imshow(image)
    draw_boxes(ax, cxcywh_to_xyxy(anchors[labels == 1]), palette.POSITIVE, 1.0)
    if ignored:
        draw_boxes(ax, cxcywh_to_xyxy(anchors[labels == -1]), palette.IGNORED, 0.6, style="--")
    draw_boxes(ax, faces, "white", 2.0)
    ax.axis("off")


def draw_detections(ax, image: np.ndarray, det, ground_truth=None, min_score: float = 0.5) -> None:
    """Detections (solid bluish-green boxes with scores, landmarks) above ``min_score`` on the image;
    ground-truth boxes (N, 4) x1 y1 x2 y2 dashed white when given."""
    ax.imshow(image)
    keep = det.scores >= min_score
    if ground_truth is not None:
        draw_boxes(ax, ground_truth, "white", 1.0, style="--")
    draw_boxes(ax, det.boxes[keep], palette.POSITIVE, 1.2, labels=[f"{s:.2f}" for s in _np(det.scores[keep])])
    draw_landmarks(ax, det.landmarks[keep], size=6)
    ax.axis("off")
