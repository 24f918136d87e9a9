"""RetinaFace's multi-task loss with online hard example mining (book chapter "Context and detection
modules").

For an anchor i with matching label p_i* ∈ {0, 1} (paper Sec. 3.1, eq. 1 without the dense term):

    L = L_cls(p_i, p_i*) + λ1 p_i* L_box(t_i, t_i*) + λ2 p_i* L_pts(l_i, l_i*),   λ1 = 0.25, λ2 = 0.1,

with L_cls the two-class softmax cross-entropy, L_box and L_pts smooth-L1 on the encoded offsets (box_coding
eq. 1, 2). L_pts is masked for faces without landmark annotations. Negatives vastly outnumber positives
(≈ 16,800 anchors for a handful of faces), so OHEM keeps only the negatives with the highest
classification loss, ``neg_pos_ratio`` of them per positive (paper: 3). Each term is averaged over the
positives it covers (L_cls over the positives, as the common implementation does). With
``dense_weight`` λ3 > 0 and a model with the ``dense`` head, λ3 L_pixel of the dense regression branch is
added (paper eq. 1's fourth term; :mod:`facelearn.detection.mesh.branch`, chapter "The dense regression
branch"); it needs ``images=``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from facelearn.detection.box_coding import VARIANCES, encode_boxes, encode_landmarks
from facelearn.detection.matching import NEGATIVE, POSITIVE, gather_targets, match, pad_boxes
from facelearn.engine.logs import per


@dataclass(frozen=True)
class LossConfig:
    """box_weight λ1, landmark_weight λ2; positive/negative IoU thresholds of matching and the least IoU for
    which a face keeps its best anchor (min_best_iou); neg_pos_ratio of
    OHEM (``None``: every negative counts); min_negatives kept per image even without faces."""

    box_weight: float = 0.25
    landmark_weight: float = 0.1
    positive_iou: float = 0.5
    negative_iou: float = 0.3
    min_best_iou: float = 0.0
    neg_pos_ratio: float | None = 3.0
    min_negatives: int = 8
    variances: tuple[float, float] = VARIANCES
    # the dense branch (chapter "The dense regression branch"): λ3 (0: off), faces rendered per image, render size
    dense_weight: float = 0.0
    dense_faces: int = 2
    dense_size: int = 64


def ohem_mask(cls_loss: torch.Tensor, labels: torch.Tensor, ratio: float | None, min_negatives: int = 0) -> torch.Tensor:
    """Which anchors the classification loss uses: all positives plus the hardest negatives.

    cls_loss: (B, A) per-anchor classification loss; labels: (B, A) 1 / 0 / −1. Per image b, keeps the
    k_b = min(max(⌈ratio · P_b⌉, min_negatives), N_b) negatives with the largest loss (P_b positives, N_b
    negatives; NaN counts as largest, equal losses fall in the order of a descending sort); ``ratio=None``
    keeps every negative. Returns (B, A) bool. One sort per image, whose first k_b places are scattered back
    to their anchors (the inverse permutation), so k_b never has to be read on the host.
    """
    pos = labels == POSITIVE
    neg = labels == NEGATIVE
    if ratio is None:
        return pos | neg
    n_pos = pos.sum(dim=1)
    k = torch.clamp(torch.ceil(n_pos * ratio).long(), min=min_negatives)
    k = torch.minimum(k, neg.sum(dim=1))
    order = cls_loss.detach().masked_fill(~neg, float("-inf")).argsort(dim=1, descending=True)
    first_k = torch.arange(order.shape[1], device=order.device) < k[:, None]  # (B, A): in sorted order
    hardest = torch.empty_like(neg).scatter_(1, order, first_k)  # back to each anchor: is its rank below k_b?
    return pos | (neg & hardest)


class MultiTaskLoss:
    """``loss(outputs, anchors, boxes, landmarks, has_landmarks) -> (loss, logs)``.

    outputs: the model's dict (``cls`` (B, A, 2), ``box`` (B, A, 4), ``landmarks`` (B, A, 10));
    anchors: (A, 4) cx cy w h; boxes: list of B (N_b, 4) x1 y1 x2 y2; landmarks: list of (N_b, 5, 2);
    has_landmarks: list of (N_b,) bool. logs, detached 0-d tensors on the outputs' device: ``cls``, ``box``,
    ``landmarks`` (unweighted terms), ``positives`` (mean per image) and ``negatives`` (kept by OHEM, mean per
    image). Every anchor of the batch goes through the same tensor operations (the positives are selected by
    masks, not gathered), so nothing waits for the device; the dense branch, when on, waits once, for the
    renderer's number of pixel-triangle pairs.
    """

    def __init__(self, config: LossConfig = LossConfig(), dense_branch=None) -> None:
        self.config = config
        self.dense_branch = dense_branch  # built on first use when dense_weight > 0 (loads the shipped decoder)

    def __call__(self, outputs: dict[str, torch.Tensor], anchors: torch.Tensor, boxes: list[torch.Tensor],
                 landmarks: list[torch.Tensor], has_landmarks: list[torch.Tensor],
                 images: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        cfg = self.config
        logits = outputs["cls"].float()
        anchors = anchors.to(logits.device, torch.float32)
        gt, valid = pad_boxes([b.to(logits.device, torch.float32) for b in boxes])
        m = match(anchors, gt, valid, positive_iou=cfg.positive_iou, negative_iou=cfg.negative_iou,
                  min_best_iou=cfg.min_best_iou)
        pos = m.labels == POSITIVE

        target = pos.long()
        ce = F.cross_entropy(logits.reshape(-1, 2), target.reshape(-1), reduction="none").view_as(target).float()
        used = ohem_mask(ce, m.labels, cfg.neg_pos_ratio, cfg.min_negatives)
        n_pos = pos.sum().clamp(min=1).float()
        loss_cls = (ce * used).sum() / n_pos

        box_t = encode_boxes(gather_targets(gt, m.matched), anchors, cfg.variances)  # (B, A, 4)
        loss_box = _positive_smooth_l1(outputs["box"].float(), box_t, pos) / n_pos
        loss_pts = outputs["box"].sum() * 0.0
        if "landmarks" in outputs:
            pts, has = _pad_landmarks(landmarks, has_landmarks, gt.shape[1], logits.device)
            with_pts = pos & gather_targets(has, m.matched)  # (B, A): positives whose face has landmarks
            pts_t = encode_landmarks(gather_targets(pts, m.matched), anchors, cfg.variances)  # (B, A, 10)
            loss_pts = (_positive_smooth_l1(outputs["landmarks"].float(), pts_t, with_pts)
                        / with_pts.sum().clamp(min=1).float())
        loss = loss_cls + cfg.box_weight * loss_box + cfg.landmark_weight * loss_pts
        b = max(len(boxes), 1)
        logs: dict[str, torch.Tensor | float] = {
            "cls": loss_cls.detach(), "box": loss_box.detach(), "landmarks": loss_pts.detach(),
            "positives": per(pos.sum(), b), "negatives": per((used & ~pos).sum(), b)}
        if cfg.dense_weight > 0 and "dense" in outputs:  # + λ3 L_pixel (RetinaFace eq. 3)
            if images is None:
                raise ValueError("the dense branch's pixel loss needs the images (pass images=)")
            if self.dense_branch is None:
                from facelearn.detection.mesh.branch import DenseBranch

                self.dense_branch = DenseBranch(size=cfg.dense_size, faces_per_image=cfg.dense_faces)
            loss_dense, rendered = self.dense_branch.loss(outputs["dense"], pos, m.matched, m.iou, gt, images)
            loss = loss + cfg.dense_weight * loss_dense
            logs.update(dense=loss_dense.detach(), rendered=rendered / b)
        return loss, logs


def _positive_smooth_l1(pred: torch.Tensor, target: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Σ smooth-L1(pred − target) over the anchors where ``keep`` holds. pred, target: (B, A, k); keep: (B, A)
    bool. Elsewhere the prediction is its own target, so those terms and their gradients are exactly zero;
    the shapes never depend on how many anchors are kept."""
    target = torch.where(keep[..., None], target, pred.detach())
    return F.smooth_l1_loss(pred, target, reduction="sum")


def _pad_landmarks(landmarks: list[torch.Tensor], has: list[torch.Tensor], m: int,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    pts = torch.zeros(len(landmarks), m, 5, 2, device=device)
    mask = torch.zeros(len(landmarks), m, dtype=torch.bool, device=device)
    for i, (p, h) in enumerate(zip(landmarks, has)):
        pts[i, : len(p)] = p.to(device, torch.float32).reshape(-1, 5, 2)
        mask[i, : len(h)] = h.to(device).bool()
    return pts, mask


@torch.no_grad()
def loss_balance(outputs: dict[str, torch.Tensor], anchors: torch.Tensor, boxes: list[torch.Tensor],
                 ratios: list[float | None], config: LossConfig = LossConfig()) -> list[dict[str, float]]:
    """How the classification loss splits between positives and negatives with each OHEM ``ratio``
    (``None``: every negative). Returns per ratio: ``positives`` / ``negatives`` (anchors used) and
    ``positive_loss`` / ``negative_loss`` (summed cross-entropy)."""
    logits = outputs["cls"].float()
    gt, valid = pad_boxes([b.to(logits.device, torch.float32) for b in boxes])
    m = match(anchors.to(logits.device, torch.float32), gt, valid, positive_iou=config.positive_iou,
              negative_iou=config.negative_iou, min_best_iou=config.min_best_iou)
    pos = m.labels == POSITIVE
    ce = F.cross_entropy(logits.reshape(-1, 2), pos.long().reshape(-1), reduction="none").view(pos.shape)
    rows = []
    for r in ratios:
        neg = ohem_mask(ce, m.labels, r, config.min_negatives) & ~pos
        rows.append({"ratio": r, "positives": int(pos.sum()), "negatives": int(neg.sum()),
                     "positive_loss": float(ce[pos].sum()), "negative_loss": float(ce[neg].sum())})
    return rows
