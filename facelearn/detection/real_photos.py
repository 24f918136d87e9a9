"""A face detector measured on real photographs (book chapter "SynthFace", section "From SynthFace to real
photographs"): average precision on labelled photos, confident false positives on photos without a face, and
OpenCV's Haar cascade (Viola and Jones 2001) as the baseline a user would otherwise reach for.

A *detector* here is any callable from an H×W×3 uint8 RGB image to an (N, 5) float array ``x1 y1 x2 y2 score``
(pixels), so a RetinaFace with a test-time protocol and the Haar cascade are scored by the same code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from facelearn.detection.evaluation import voc_ap
from facelearn.errors import DataError

Detector = Callable[[np.ndarray], np.ndarray]

#: IoU at which a detection counts as a labelled face: the labels run from the brows to the chin, tighter than
#: WIDER FACE's boxes, so the usual 0.5 would punish a detector for the data set it learnt the convention from.
IOU_THRESHOLD = 0.4
#: A detection this confident is one a user would draw; on a photo without a face each one is a false positive.
CONFIDENT = 0.5
#: scikit-image sample photographs without a face, shipped inside the scikit-image package (no download).
NO_FACE_PHOTOS = ("coffee", "rocket", "chelsea", "horse", "grass", "gravel", "brick", "hubble_deep_field")


@dataclass(frozen=True)
class LabelledPhoto:
    """One labelled photograph. boxes: (K, 4) x1 y1 x2 y2; points: (K, 5, 2) x y in the 5-point order (left
    eye, right eye, nose tip, left and right mouth corner, image-left first); size: (width, height)."""

    name: str
    boxes: np.ndarray
    points: np.ndarray
    size: tuple[int, int]


def read_labels(path: str | os.PathLike) -> list[LabelledPhoto]:
    """Read a labels file: ``{"images": {name: {"size_wh": [W, H], "boxes_x1y1x2y2": [[x1, y1, x2, y2], …],
    "points_5x2": [[[x, y] × 5], …]}}}``. A :class:`DataError` names the file and the image at fault."""
    path = Path(path)
    try:
        images = json.loads(path.read_text(encoding="utf-8"))["images"]
    except FileNotFoundError:
        raise DataError.at(path, None, "no such labels file") from None
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError.at(path, None, f"not a labels file with an 'images' object ({type(err).__name__})") from None
    photos = []
    for name, entry in images.items():
        try:
            boxes = np.asarray(entry["boxes_x1y1x2y2"], dtype=np.float64).reshape(-1, 4)
            points = np.asarray(entry["points_5x2"], dtype=np.float64).reshape(-1, 5, 2)
            w, h = (int(v) for v in entry["size_wh"])
        except (KeyError, TypeError, ValueError) as err:
            raise DataError.at(path, None, f"image {name!r}: bad entry ({type(err).__name__}: {err})") from None
        if len(points) != len(boxes) or not np.isfinite(boxes).all() or (boxes[:, 2:] <= boxes[:, :2]).any():
            raise DataError.at(path, None, f"image {name!r}: {len(boxes)} boxes (x2 > x1, y2 > y1 needed) "
                                           f"and {len(points)} point sets")
        photos.append(LabelledPhoto(name, boxes, points, (w, h)))
    return photos


def average_precision(detections: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray],
                      iou_threshold: float = IOU_THRESHOLD) -> float:
    """VOC all-point AP over several photos, detections pooled and ranked by score.

    detections[i]: (N_i, 5) x1 y1 x2 y2 score; ground_truth[i]: (K_i, 4) x1 y1 x2 y2 (continuous IoU, no +1).
    Best first, each detection takes the face of its photo it overlaps most; it is a true positive if that IoU
    is ≥ ``iou_threshold`` and the face is not yet taken, otherwise a false positive (a duplicate).
    """
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} detection sets for {len(ground_truth)} photos")
    n_faces = sum(len(g) for g in ground_truth)
    if n_faces == 0:
        raise ValueError("no labelled face: average precision is undefined")
    rows = [(float(d[4]), i, k) for i, det in enumerate(detections) for k, d in enumerate(np.asarray(det).reshape(-1, 5))]
    rows.sort(key=lambda r: -r[0])
    taken = [np.zeros(len(g), dtype=bool) for g in ground_truth]
    true_positive = np.zeros(len(rows))
    for j, (_, i, k) in enumerate(rows):
        if len(ground_truth[i]) == 0:
            continue
        box = torch.as_tensor(np.asarray(detections[i], dtype=np.float64).reshape(-1, 5)[k:k + 1, :4])
        iou = box_iou(box, torch.as_tensor(np.asarray(ground_truth[i], dtype=np.float64)))[0].numpy()
        best = int(iou.argmax())
        if iou[best] >= iou_threshold and not taken[i][best]:
            taken[i][best] = True
            true_positive[j] = 1
    tp = np.cumsum(true_positive)
    recall = tp / n_faces
    precision = tp / np.arange(1, len(rows) + 1)
    return voc_ap(recall, precision)


def confident_detections(detections: np.ndarray, threshold: float = CONFIDENT) -> int:
    """How many of one photo's detections (N, 5) have a score ≥ ``threshold``."""
    return int((np.asarray(detections).reshape(-1, 5)[:, 4] >= threshold).sum())


def no_face_photos(names: Sequence[str] = NO_FACE_PHOTOS) -> dict[str, np.ndarray]:
    """scikit-image's sample photographs without a face, as H×W×3 uint8 RGB (grey and binary ones stacked)."""
    from skimage import data, img_as_ubyte

    out = {}
    for name in names:
        image = img_as_ubyte(getattr(data, name)())
        out[name] = np.ascontiguousarray(np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3])
    return out


def haar_detector(cascade: str = "haarcascade_frontalface_default.xml", **options: Any) -> Detector:
    """OpenCV's Haar cascade as a :data:`Detector`. Each box's score is the cascade's last-stage weight
    squashed to (0, 1) by a logistic, so it ranks the boxes for AP; every box OpenCV returns (its default
    ``minNeighbors=3``) is one it would draw, so its score is set to at least :data:`CONFIDENT`.
    options: ``detectMultiScale3`` keywords (default ``scaleFactor=1.1, minNeighbors=3``)."""
    import cv2

    model = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, cascade))
    if model.empty():
        raise FileNotFoundError(f"{cascade}: not found in {cv2.data.haarcascades}")
    options = {"scaleFactor": 1.1, "minNeighbors": 3, **options}

    def detector(image: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        boxes, _, weights = model.detectMultiScale3(grey, outputRejectLevels=True, **options)
        if len(boxes) == 0:
            return np.zeros((0, 5))
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        score = CONFIDENT + (1 - CONFIDENT) / (1 + np.exp(-np.asarray(weights, dtype=np.float64).ravel()))
        return np.c_[b[:, :2], b[:, :2] + b[:, 2:], score]

    return detector


def retinaface_detector(model: torch.nn.Module, score_threshold: float = 0.02, **protocol: Any) -> Detector:
    """A RetinaFace as a :data:`Detector`: :func:`facelearn.detection.postprocess.detect` with ``protocol``
    (its test-time keywords; none: its default protocol), candidates above ``score_threshold``, all NMS
    survivors kept (so false positives are counted, not capped at ``detect``'s 750)."""
    from facelearn.detection.postprocess import PRE_NMS_TOP_K, detect

    def detector(image: np.ndarray) -> np.ndarray:
        det = detect(model, image, score_threshold=score_threshold, max_detections=PRE_NMS_TOP_K, **protocol)
        return np.c_[det.boxes.numpy(), det.scores.numpy()].astype(np.float64)

    return detector


@dataclass
class DetectionReport:
    """A detector on real photographs: ``ap`` at :data:`IOU_THRESHOLD` over the labelled photos, ``recall``
    (labelled faces found by a confident detection), ``false_positives`` (confident detections per no-face
    photo) and their ``total``."""

    ap: float
    recall: float
    faces: int
    false_positives: dict[str, int]

    @property
    def total_false_positives(self) -> int:
        return sum(self.false_positives.values())

    def as_dict(self) -> dict:
        return {"ap": self.ap, "recall": self.recall, "faces": self.faces, "false_positives": self.false_positives,
                "total_false_positives": self.total_false_positives}


def evaluate_detector(detector: Detector, photos: Sequence[tuple[LabelledPhoto, np.ndarray]],
                      no_face: Mapping[str, np.ndarray]) -> DetectionReport:
    """Score ``detector`` on labelled photos (each with its H×W×3 RGB image) and on no-face photos."""
    found = [detector(image) for _, image in photos]
    truth = [p.boxes for p, _ in photos]
    confident = [d[d[:, 4] >= CONFIDENT] for d in found]
    ap = average_precision(found, truth) if photos else float("nan")
    faces = sum(len(t) for t in truth)
    hit = sum(int((box_iou(torch.as_tensor(t), torch.as_tensor(c[:, :4])) >= IOU_THRESHOLD).any(1).sum())
              for t, c in zip(truth, confident) if len(t) and len(c))
    fps = {name: confident_detections(detector(image)) for name, image in no_face.items()}
    return DetectionReport(ap, hit / faces if faces else float("nan"), faces, fps)
