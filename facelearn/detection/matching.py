"""Matching anchors to faces, vectorised over the batch (book chapter "Anchors, pyramids and tiny faces").

RetinaFace paper Sec. 4.1: an anchor is positive when its IoU with a face is ≥ 0.5, negative when its
best IoU is < 0.3, and ignored in between; in addition every face keeps its best anchor, so small or
oddly placed faces still get one positive. The common implementation drops that rule for faces whose best
IoU is below 0.2 (``min_best_iou``), which are too small for any anchor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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


def anchor_iou(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Intersection over union of every face with every anchor, the table matching reads.

    boxes: (B, M, 4) x1 y1 x2 y2; anchors: (A, 4) cx cy w h. Returns (B, M, A): |f ∩ a| / (|f| + |a| − |f ∩ a|),
    each entry computed with the operations of torchvision's ``box_iou`` (so equal to it bit for bit), one
    coordinate at a time on (B, M, A) instead of through (…, A, 2) corner tensors.
    """
    x1, y1, x2, y2 = cxcywh_to_xyxy(anchors).unbind(-1)  # (A,) each
    f1, g1, f2, g2 = boxes[..., None, :].unbind(-1)  # (B, M, 1) each
    inter = (torch.minimum(f2, x2) - torch.maximum(f1, x1)).clamp_(min=0)
    inter *= (torch.minimum(g2, y2) - torch.maximum(g1, y1)).clamp_(min=0)
    union = ((f2 - f1) * (g2 - g1) + (x2 - x1) * (y2 - y1)).sub_(inter)
    return inter.div_(union)


def match(anchors: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor, *, positive_iou: float = 0.5,
          negative_iou: float = 0.3, keep_best: bool = True, min_best_iou: float = 0.0) -> Matching:
    """Assign every anchor of every image a label and a face.

    anchors: (A, 4) cx cy w h; boxes: (B, M, 4) x1 y1 x2 y2 padded; valid: (B, M) bool (padding false).
    Anchors with best IoU ≥ ``positive_iou`` are positive, < ``negative_iou`` negative, others ignored;
    with ``keep_best`` every valid face's highest-IoU anchor is made positive and assigned to it — if that
    IoU is at least ``min_best_iou`` (default 0, the paper's rule; the common implementation uses 0.2, since
    a face far smaller than every anchor forces a positive whose box target log(w / a_w) / v_1 is huge).
    Where two faces keep the same anchor, the later face (higher index) gets it. The whole batch at once, on
    the device, without waiting for it (no data-dependent shapes).
    """
    if not negative_iou <= positive_iou:
        raise ValueError(f"negative_iou {negative_iou} must be ≤ positive_iou {positive_iou}")
    b, m = valid.shape
    iou = anchor_iou(boxes.to(anchors.dtype), anchors).masked_fill_(~valid[..., None], -1.0)  # (B, M, A)
    best_iou, matched = iou.max(dim=1)  # (B, A): best face of each anchor (the first of equals: 0 without faces)
    labels = torch.where(best_iou >= positive_iou, POSITIVE, torch.where(best_iou < negative_iou, NEGATIVE, IGNORE))
    if keep_best:
        best_of_face, best_anchor = iou.max(dim=2)  # (B, M): best IoU and anchor of each face
        face = torch.arange(m, device=valid.device).expand(b, m)
        face = torch.where(valid & (best_of_face >= min_best_iou), face, -1)
        kept = torch.full_like(matched, -1).scatter_reduce_(1, best_anchor, face, "amax")  # (B, A): face, or −1
        forced = kept >= 0
        labels = torch.where(forced, POSITIVE, labels)
        matched = torch.where(forced, kept, matched)
        best_iou = torch.where(forced, iou.gather(1, kept.clamp(min=0)[:, None]).squeeze(1), best_iou)
    return Matching(labels, matched, best_iou.clamp(min=0))


def gather_targets(values: torch.Tensor, matched: torch.Tensor) -> torch.Tensor:
    """values: (B, M, …) per face; matched: (B, A) face index per anchor. Returns (B, A, …): each anchor's
    face's values, copied row by row (one ``index_select`` of the B·M faces)."""
    b, m = values.shape[:2]
    rows = matched + torch.arange(b, device=matched.device)[:, None] * m  # (B, A): row in the flattened faces
    return values.flatten(0, 1).index_select(0, rows.flatten()).view(*matched.shape, *values.shape[2:])
