"""Figures of the detection chapters: boxes, anchors, landmarks and detections drawn with matplotlib
(book chapters "Anchors, pyramids and tiny faces", "Context and detection modules", "Training and
evaluating RetinaFace")."""

from __future__ import annotations

import numpy as np
import torch

from facelearn.detection.box_coding import cxcywh_to_xyxy

LEVEL_COLOURS = ("tab:red", "tab:orange", "tab:green", "tab:blue", "tab:purple")


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def draw_boxes(ax, boxes, colour: str = "lime", width: float = 1.5, labels=None, style: str = "-") -> None:
    """Draw (N, 4) x1 y1 x2 y2 boxes on a matplotlib axis, with optional text labels."""
    from matplotlib.patches import Rectangle

    for i, (x1, y1, x2, y2) in enumerate(_np(boxes).reshape(-1, 4)):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=width,
                               linestyle=style))
        if labels is not None:
            ax.text(x1, y1 - 2, str(labels[i]), color=colour, fontsize=7, va="bottom")


def draw_landmarks(ax, points, colours=("red", "blue", "lime", "magenta", "cyan"), size: float = 8) -> None:
    """Draw (N, 5, 2) landmarks, one colour per point of the 5-point order."""
    pts = _np(points).reshape(-1, 5, 2)
    for k, c in enumerate(colours):
        ax.scatter(pts[:, k, 0], pts[:, k, 1], s=size, c=c, linewidths=0)


def draw_anchor_levels(ax, image: np.ndarray, config, centre: tuple[float, float]) -> None:
    """The image with, for every pyramid level of ``config``, the anchors of the cell containing ``centre``
    (one colour per level) and that level's grid of anchor centres nearby."""
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
        ax.scatter(_np(near[:, 0]), _np(near[:, 1]), s=4, c=colour)
        draw_boxes(ax, cxcywh_to_xyxy(cell), colour, 1.2)
        ax.plot([], [], color=colour, label=f"stride {stride}: {', '.join(f'{s:.0f}' for s in config.sizes[level])} px")
    ax.legend(loc="lower right", fontsize=7)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")


def draw_matching(ax, image: np.ndarray, anchors: torch.Tensor, labels: torch.Tensor, faces: torch.Tensor,
                  ignored: bool = True) -> None:
    """Positive anchors (green) and, optionally, ignored ones (yellow dashed) of one image, with its faces
    (white). anchors: (A, 4) cx cy w h; labels: (A,) 1 / 0 / −1; faces: (N, 4) x1 y1 x2 y2."""
    ax.imshow(image)
    draw_boxes(ax, cxcywh_to_xyxy(anchors[labels == 1]), "lime", 1.0)
    if ignored:
        draw_boxes(ax, cxcywh_to_xyxy(anchors[labels == -1]), "yellow", 0.6, style="--")
    draw_boxes(ax, faces, "white", 2.0)
    ax.axis("off")


def draw_detections(ax, image: np.ndarray, det, ground_truth=None, min_score: float = 0.5) -> None:
    """Detections (boxes with scores, landmarks) above ``min_score`` on the image; ground-truth boxes
    (N, 4) x1 y1 x2 y2 dashed white when given."""
    ax.imshow(image)
    keep = det.scores >= min_score
    if ground_truth is not None:
        draw_boxes(ax, ground_truth, "white", 1.0, style="--")
    draw_boxes(ax, det.boxes[keep], "lime", 1.2, labels=[f"{s:.2f}" for s in _np(det.scores[keep])])
    draw_landmarks(ax, det.landmarks[keep], size=6)
    ax.axis("off")
