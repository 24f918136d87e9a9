"""The official WIDER FACE evaluation (book chapter "Training and evaluating RetinaFace").

A faithful re-implementation of the benchmark's MATLAB tool (``eval_tools``: ``read_pred.m``,
``norm_score.m``, ``evaluation.m``, ``boxoverlap.m``, ``VOCap.m``), vectorised with NumPy:

1. every image's predictions ``x y w h score`` are **sorted by score, highest first** (``read_pred.m``;
   the popular Python port skips this and mis-scores files that are not already sorted);
2. scores are min–max normalised over *all* predictions of the validation set (``norm_score.m``);
3. per image, each prediction (in score order) is compared with the ground truth by the VOC IoU with the
   ``+1`` pixel convention (boxes ``x1 = x, x2 = x + w``; ``w = x2 - x1 + 1``). Its best ground-truth face
   (largest IoU, first on ties) matches when IoU ≥ 0.5. A prediction matched to a face that the setting
   ignores (not in its ``gt_list``) is ignored — neither a true nor a false positive; one matched to a
   kept face recalls it if it was not recalled yet; every other prediction is a false positive
   (duplicates included). Images without ground-truth faces or without predictions are skipped;
4. at each of 1000 thresholds ``1 - t/1000`` the kept faces recalled and the proposals (non-ignored
   predictions) with score ≥ threshold are summed over images: precision = recalled / proposals,
   recall = recalled / faces of the setting; AP is the VOC all-point area under that curve (``VOCap.m``).

Because a prediction's best face does not depend on the order of matching, step 3 equals: a prediction
is *ignored* iff its best face (IoU ≥ 0.5) is not kept, and a kept face is recalled at threshold τ iff
the highest-scoring prediction matched to it has score ≥ τ. :func:`evaluate` uses that closed form;
:func:`image_evaluation` is the per-image greedy loop's output, vectorised, for teaching and tests.

Prediction files are read and written by :mod:`facelearn.detection.predictions` (re-exported here).

One deliberate deviation: when every prediction has the same score the MATLAB normalisation divides 0 by
0 (every score becomes NaN and nothing is ever detected); here all scores become 1.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from facelearn.data.widerface import SETTINGS, ValGroundTruth, find_val_ground_truth, read_val_ground_truth
from facelearn.detection.predictions import Key, read_prediction_file, read_predictions, write_prediction_file

__all__ = ["IOU_THRESHOLD", "THRESHOLDS", "PRCurve", "WiderFaceResult", "box_overlap", "best_match", "evaluate",
           "evaluate_folder", "image_evaluation", "normalise_scores", "read_prediction_file", "read_predictions",
           "voc_ap", "write_prediction_file"]

IOU_THRESHOLD = 0.5
THRESHOLDS = 1000
_SINGLE_MIN = float(np.finfo(np.float32).tiny)  # MATLAB realmin('single'), norm_score.m's start for the max
_SINGLE_MAX = float(np.finfo(np.float32).max)  # MATLAB realmax('single'), its start for the min


# -- the metric --------------------------------------------------------------------------------------
def normalise_scores(predictions: Mapping[Key, np.ndarray]) -> dict[Key, np.ndarray]:
    """Global min–max score normalisation (``norm_score.m``): (N, 5) arrays → copies, score in [0, 1]."""
    scores = [p[:, 4] for p in predictions.values() if len(p)]
    out = {k: np.array(p, dtype=np.float64).reshape(-1, 5) for k, p in predictions.items()}
    if not scores:
        return out
    all_scores = np.concatenate(scores)
    hi, lo = max(_SINGLE_MIN, float(all_scores.max())), min(_SINGLE_MAX, float(all_scores.min()))
    for p in out.values():
        p[:, 4] = (p[:, 4] - lo) / (hi - lo) if hi > lo else 1.0
    return out


def box_overlap(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU of the official ``boxoverlap.m`` (VOC ``+1`` convention), boxes ``x1 y1 x2 y2``.

    gt: (G, 4); pred: (P, 4) → (P, G); 0 where the intersection is empty. Eq.: IoU = |A∩B| / (|A|+|B|-|A∩B|)
    with |A| = (x2 - x1 + 1)(y2 - y1 + 1).
    """
    gt, pred = np.asarray(gt, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    iw = np.minimum(pred[:, None, 2], gt[None, :, 2]) - np.maximum(pred[:, None, 0], gt[None, :, 0]) + 1
    ih = np.minimum(pred[:, None, 3], gt[None, :, 3]) - np.maximum(pred[:, None, 1], gt[None, :, 1]) + 1
    inter = iw * ih
    area_g = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
    area_p = (pred[:, 2] - pred[:, 0] + 1) * (pred[:, 3] - pred[:, 1] + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area_p[:, None] + area_g[None, :] - inter)
    iou[(iw <= 0) | (ih <= 0)] = 0.0
    return np.nan_to_num(iou, nan=-np.inf)  # MATLAB's max skips NaN


def _xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:4]], axis=1)  # evaluation.m: x2 = x + w


def best_match(pred: np.ndarray, gt: np.ndarray, iou_threshold: float = IOU_THRESHOLD) -> np.ndarray:
    """Each prediction's best ground-truth face, or −1 when its largest IoU is below the threshold.

    pred: (P, ≥4) ``x y w h …``; gt: (G, 4) ``x y w h`` → (P,) int64.
    """
    if len(pred) == 0 or len(gt) == 0:
        return np.full(len(pred), -1, dtype=np.int64)
    iou = box_overlap(_xywh_to_xyxy(gt), _xywh_to_xyxy(pred[:, :4]))
    best = iou.argmax(axis=1)
    return np.where(iou[np.arange(len(pred)), best] >= iou_threshold, best, -1)


def image_evaluation(pred: np.ndarray, gt: np.ndarray, keep: np.ndarray,
                     iou_threshold: float = IOU_THRESHOLD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image as ``evaluation.m``'s ``image_evaluation``, after sorting by score.

    pred: (P, 5) ``x y w h score``; gt: (G, 4) ``x y w h``; keep: 0-based indices of the faces the setting
    scores. Returns (order (P,) the score-descending order applied to ``pred``, pred_recall (P,) kept faces
    recalled by the first k+1 sorted predictions, proposal (P,) bool: sorted prediction k is not ignored).
    """
    order = np.argsort(-pred[:, 4], kind="stable")
    match = best_match(pred[order], gt, iou_threshold)
    kept = np.zeros(len(gt), dtype=bool)
    kept[np.asarray(keep, dtype=np.int64)] = True
    hit = match >= 0
    proposal = ~(hit & ~kept[np.maximum(match, 0)])
    first = np.zeros(len(pred), dtype=np.int64)
    good = np.flatnonzero(hit & kept[np.maximum(match, 0)])
    if len(good):
        _, first_of_face = np.unique(match[good], return_index=True)  # earliest prediction of each face
        first[good[first_of_face]] = 1
    return order, np.cumsum(first), proposal


def _count_at_least(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(T,) number of ``values`` ≥ each threshold."""
    values = np.sort(values)
    return len(values) - np.searchsorted(values, thresholds, side="left")


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point average precision (``VOCap.m``): area under the precision envelope.

    recall, precision: (T,) with recall non-decreasing; NaN precision (no proposal) is skipped by the
    envelope's max as MATLAB's ``max`` does.
    """
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


@dataclass(frozen=True)
class PRCurve:
    """One setting's curve over the thresholds ``1 - t/T`` (t = 1…T, descending).

    thresholds, precision, recall: (T,) float (precision NaN where nothing is proposed);
    proposals, recalled: (T,) int sums over images; faces: the setting's face count.
    """

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    proposals: np.ndarray
    recalled: np.ndarray
    faces: int


@dataclass(frozen=True)
class WiderFaceResult:
    """AP per setting (``easy``, ``medium``, ``hard``), their PR curves, and what was read."""

    ap: dict[str, float]
    curves: dict[str, PRCurve]
    images: int
    predictions: int
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()

    def to_dict(self, curves: bool = True) -> dict:
        """JSON-ready dict (NaN → ``None``); ``curves`` adds precision/recall lists per setting."""
        def clean(v: float) -> float | None:
            return None if math.isnan(v) else float(v)

        out = {"ap": {k: clean(v) for k, v in self.ap.items()}, "images": self.images,
               "predictions": self.predictions, "missing": len(self.missing), "missing_files": list(self.missing),
               "unexpected_files": list(self.unexpected)}
        if curves:
            out["curves"] = {s: {"threshold": [round(float(t), 6) for t in c.thresholds],
                                 "precision": [clean(v) for v in c.precision],
                                 "recall": [clean(v) for v in c.recall], "faces": c.faces}
                             for s, c in self.curves.items()}
        return out


def evaluate(predictions: Mapping[Key, np.ndarray], gt: ValGroundTruth, *, iou_threshold: float = IOU_THRESHOLD,
             thresholds: int = THRESHOLDS, settings: tuple[str, ...] = SETTINGS,
             missing: tuple[str, ...] | None = None, unexpected: tuple[str, ...] = ()) -> WiderFaceResult:
    """Score predictions with the official protocol (module docstring).

    predictions[(event, name)]: (N, 5) ``x y w h score`` in any order, raw scores (normalised here);
    images of ``gt`` without an entry have no detections and are listed in ``missing``.
    """
    keys = [(e, f) for e in gt.events for f in gt.files[e]]
    wanted = set(keys)
    preds = normalise_scores({k: v for k, v in predictions.items() if k in wanted})
    if missing is None:
        missing = tuple(f"{e}/{f}" for e, f in keys if (e, f) not in preds)
    scores, faces, offsets, offset = [], [], {}, 0
    for key in keys:  # every prediction's best face, as a global face index (−1: none)
        offsets[key] = offset
        g, p = gt.boxes[key], preds.get(key)
        offset += len(g)
        if p is None or len(p) == 0 or len(g) == 0:  # evaluation.m skips these images
            continue
        match = best_match(p, g, iou_threshold)
        scores.append(p[:, 4])
        faces.append(np.where(match >= 0, match + offsets[key], -1))
    score = np.concatenate(scores) if scores else np.zeros(0)
    face = np.concatenate(faces) if faces else np.zeros(0, dtype=np.int64)
    steps = 1.0 - np.arange(1, thresholds + 1) / thresholds
    ap, curves = {}, {}
    for setting in settings:
        kept = np.zeros(offset, dtype=bool)
        for key in keys:
            kept[offsets[key] + gt.keep[setting][key]] = True
        n_faces = int(kept.sum())
        matched = face >= 0
        ignored = matched & ~kept[np.maximum(face, 0)]
        best = np.full(offset, -np.inf)
        good = matched & ~ignored
        np.maximum.at(best, face[good], score[good])  # best score per kept face
        recalled = _count_at_least(best[np.isfinite(best)], steps)
        proposals = _count_at_least(score[~ignored], steps)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = recalled / proposals
            recall = recalled / n_faces if n_faces else np.full(thresholds, np.nan)
        curves[setting] = PRCurve(steps, precision, recall, proposals, recalled, n_faces)
        ap[setting] = voc_ap(recall, precision) if n_faces else float("nan")
    return WiderFaceResult(ap, curves, len(keys), int(sum(len(v) for v in preds.values())),
                           tuple(missing), tuple(unexpected))


def evaluate_folder(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike | None = None, *,
                    progress: bool = False, **kwargs) -> WiderFaceResult:
    """Read official prediction files under ``pred_dir`` and the ``.mat`` files in ``gt_dir`` (default:
    :func:`~facelearn.data.widerface.find_val_ground_truth`), then :func:`evaluate`."""
    gt = read_val_ground_truth(gt_dir if gt_dir is not None else find_val_ground_truth())
    preds = read_predictions(pred_dir, gt, progress=progress)
    return evaluate(preds.boxes, gt, missing=tuple(preds.missing), unexpected=tuple(preds.unexpected), **kwargs)
