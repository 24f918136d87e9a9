"""Matching anchors to faces, vectorised over the batch (book chapter "Anchors, pyramids and tiny faces").

RetinaFace paper Sec. 4.1: an anchor is positive when its IoU with a face is ≥ 0.5, negative when its
best IoU is < 0.3, and ignored in between; in addition every face keeps its best anchor, so small or
oddly placed faces still get one positive. The common implementation drops that rule for faces whose best
IoU is below 0.2 (``min_best_iou``), which are too small for any anchor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_iou

from facelearn.detection.box_coding import cxcywh_to_xyxy

POSITIVE, NEGATIVE, IGNORE = 1, 0, -1


@dataclass(frozen=True)
class Matching:
    """Result of :func:`match`.

    labels: (B, A) int64, 1 positive, 0 negative, −1 ignored; matched: (B, A) int64 index of the face each
    anchor is assigned to (meaningful where labels == 1); iou: (B, A) best IoU of each anchor.
    """

    labels: torch.Tensor
    matched: torch.Tensor
    iou: torch.Tensor


def pad_boxes(boxes: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a list of (N_b, 4) boxes into (B, M, 4) zeros-padded and a (B, M) bool validity mask."""
    m = max([len(b) for b in boxes] + [1])
    ref = boxes[0] if boxes else torch.zeros(0, 4)
    out = ref.new_zeros(len(boxes), m, 4)
    valid = torch.zeros(len(boxes), m, dtype=torch.bool, device=ref.device)
    for i, b in enumerate(boxes):
        out[i, : len(b)] = b
        valid[i, : len(b)] = True
    return out, valid


def match(anchors: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor, *, positive_iou: float = 0.5,
          negative_iou: float = 0.3, keep_best: bool = True, min_best_iou: float = 0.0) -> Matching:
    """Assign every anchor of every image a label and a face.

    anchors: (A, 4) cx cy w h; boxes: (B, M, 4) x1 y1 x2 y2 padded; valid: (B, M) bool (padding false).
    Anchors with best IoU ≥ ``positive_iou`` are positive, < ``negative_iou`` negative, others ignored;
    with ``keep_best`` every valid face's highest-IoU anchor is made positive and assigned to it — if that
    IoU is at least ``min_best_iou`` (default 0, the paper's rule; the common implementation uses 0.2, since
    a face far smaller than every anchor forces a positive whose box target log(w / a_w) / v_1 is huge).
    """
    if not negative_iou <= positive_iou:
        raise ValueError(f"negative_iou {negative_iou} must be ≤ positive_iou {positive_iou}")
    b, m = valid.shape
    a = anchors.shape[0]
    iou = torch.full((b, m, a), -1.0, device=anchors.device, dtype=anchors.dtype)
    if valid.any():
        iou[valid] = box_iou(boxes[valid].to(anchors.dtype), cxcywh_to_xyxy(anchors))  # one call for the batch
    best_iou, matched = iou.max(dim=1)  # (B, A): best face of each anchor
    labels = torch.full((b, a), IGNORE, dtype=torch.int64, device=anchors.device)
    labels[best_iou < negative_iou] = NEGATIVE
    labels[best_iou >= positive_iou] = POSITIVE
    if keep_best and valid.any():
        best_of_face, best_anchor = iou.max(dim=2)  # (B, M): best IoU and anchor of each face
        bi, fi = (valid & (best_of_face >= min_best_iou)).nonzero(as_tuple=True)
        ai = best_anchor[bi, fi]
        labels[bi, ai] = POSITIVE
        matched[bi, ai] = fi
        best_iou[bi, ai] = iou[bi, fi, ai]
    if m and not valid.any():
        matched.zero_()
    return Matching(labels, matched, best_iou.clamp(min=0))


def gather_targets(values: torch.Tensor, matched: torch.Tensor) -> torch.Tensor:
    """values: (B, M, …) per face; matched: (B, A) face index per anchor. Returns (B, A, …)."""
    idx = matched.reshape(*matched.shape, *([1] * (values.dim() - 2))).expand(*matched.shape, *values.shape[2:])
    return torch.gather(values, 1, idx)
