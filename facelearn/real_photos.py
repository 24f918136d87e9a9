"""The quick models on real photographs, in one report (book chapter "SynthFace", section "From SynthFace to
real photographs"), and the ``facelearn eval real-photos`` command.

Every quick model of the book learns from SynthFace alone. This report measures what transfers to real
faces: the detector's AP at IoU 0.4 on labelled photos and its confident false positives on photos without a
face, beside OpenCV's Haar cascade (:mod:`facelearn.detection.real_photos`); the recogniser's 10-fold
verification accuracy and ROC AUC on matched pairs of real faces, mismatched across people
(:func:`facelearn.recognition.verification.pairs_across_identities`); and PFLD's 5-point error, normalised by
the distance between the labelled eye centres.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from facelearn.detection.real_photos import (DetectionReport, LabelledPhoto, evaluate_detector, haar_detector,
                                             no_face_photos, read_labels, retinaface_detector)
from facelearn.detection.test_time import PROTOCOLS
from facelearn.errors import DataError


def load_photos(labels: str | os.PathLike, images: str | os.PathLike) -> list[tuple[LabelledPhoto, np.ndarray]]:
    """The labelled photos of ``labels`` (see :func:`~facelearn.detection.real_photos.read_labels`) with their
    H×W×3 uint8 RGB images from the folder ``images``; a missing image or a size unlike the label's is a
    :class:`DataError`."""
    from facelearn.detection.training import read_rgb

    out = []
    for photo in read_labels(labels):
        path = Path(images) / photo.name
        if not path.is_file():
            raise DataError.at(path, None, f"no image for the labelled photo {photo.name!r} of {labels}")
        image = read_rgb(path)
        if (image.shape[1], image.shape[0]) != photo.size:
            raise DataError.at(path, None, f"image is {image.shape[1]}x{image.shape[0]}, labels say "
                                           f"{photo.size[0]}x{photo.size[1]}")
        out.append((photo, image))
    return out


@torch.no_grad()
def verification_on_pairs(model: torch.nn.Module, images: torch.Tensor) -> dict:
    """10-fold accuracy and ROC AUC of ``model`` on matched pairs of different people: images (2P, 3, S, S) RGB in
    [0, 1] (or uint8), rows 2i and 2i + 1 of person i. The P matched pairs are balanced by P mismatched
    ones (:func:`~facelearn.recognition.verification.pairs_across_identities`); ``roc_auc_all_pairs`` scores
    the matched pairs against every pair of two people."""
    from facelearn.recognition.verification import (embed, evaluate, pair_scores, pairs_across_identities,
                                                    roc_auc_all_pairs)

    e = embed(model, images, dedupe=False)
    index, issame = pairs_across_identities(len(images) // 2)
    result = evaluate(pair_scores(e[index]), issame, n_folds=10)
    return {"accuracy": result.accuracy, "std": result.std, "roc_auc": result.roc_auc, "pairs": result.n_pairs,
            "roc_auc_all_pairs": roc_auc_all_pairs(e), "images": len(images)}


def five_point_errors(model: torch.nn.Module, photos: Sequence[tuple[LabelledPhoto, np.ndarray]]) -> np.ndarray:
    """PFLD's error on each labelled face (K,): its 98 WFLW points mapped to the 5 points (pupils 96, 97, nose
    tip 54, mouth corners 76, 82), cropped from the labelled box as in training, mean distance to the labelled
    points over the distance between the labelled eye centres."""
    from facelearn.data.synthface.topology import FIVE_FROM_98
    from facelearn.pipeline import alignment_error, landmarks_in_boxes

    errors = [alignment_error(landmarks_in_boxes(model, image, photo.boxes)[:, FIVE_FROM_98], photo.points)
              for photo, image in photos]
    return np.concatenate(errors) if errors else np.zeros(0)


@dataclass
class RealPhotoReport:
    """detection: {detector name: :class:`DetectionReport`}; verification: :func:`verification_on_pairs`'s
    figures (or None); landmarks: per-face 5-point errors (or None)."""

    detection: dict[str, DetectionReport] = field(default_factory=dict)
    verification: dict | None = None
    landmarks: np.ndarray | None = None

    def as_dict(self) -> dict:
        lm = None if self.landmarks is None else {"mean": float(self.landmarks.mean()),
                                                  "per_face": [round(float(e), 4) for e in self.landmarks]}
        return {"detection": {k: r.as_dict() for k, r in self.detection.items()}, "verification": self.verification,
                "landmarks_5_point_error": lm}

    def lines(self) -> list[str]:
        """The report as text, one figure per line."""
        out = []
        for name, r in self.detection.items():
            fps = ", ".join(f"{k} {v}" for k, v in r.false_positives.items())
            out.append(f"{name:<22} AP@0.4 {r.ap:.3f}  recall@0.5 {r.recall:.2f} of {r.faces} faces  "
                       f"confident FPs {r.total_false_positives} ({fps})")
        if self.verification:
            v = self.verification
            out.append(f"verification: accuracy {v['accuracy']:.3f} ± {v['std']:.3f} on {v['pairs']} pairs, "
                       f"ROC AUC {v['roc_auc']:.3f} (all pairs of two people: {v['roc_auc_all_pairs']:.3f})")
        if self.landmarks is not None and len(self.landmarks):
            out.append(f"PFLD 5-point error {self.landmarks.mean():.4f} of the eye distance "
                       f"(per face: {' '.join(f'{e:.3f}' for e in self.landmarks)})")
        return out


def _cmd(args: argparse.Namespace) -> int:
    from facelearn.data.identities import read_bin
    from facelearn.detection.training import find_checkpoint, load_detector
    from facelearn.landmarks import recipe
    from facelearn.recognition.training import load_model, shipped_checkpoint

    photos = load_photos(args.labels, args.images)
    report = RealPhotoReport()
    detector = load_detector(args.detector or find_checkpoint("retinaface_mnet025_quick.pt"))
    no_face = no_face_photos()
    for name in args.protocol:
        report.detection[f"retinaface ({name})"] = evaluate_detector(
            retinaface_detector(detector, **PROTOCOLS[name].keywords), photos, no_face)
    report.detection["haar cascade"] = evaluate_detector(haar_detector(), photos, no_face)
    if args.pairs:
        model, rec, _ = load_model(args.recogniser or shipped_checkpoint("arcface"))
        images, _ = read_bin(args.pairs, size=rec.input_size)
        report.verification = verification_on_pairs(model, images)
    report.landmarks = five_point_errors(recipe.load(args.landmarks or recipe.shipped_checkpoint("pfld-quick")),
                                         photos)
    print(json.dumps(report.as_dict()) if args.json else "\n".join(report.lines()))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``real-photos`` under ``facelearn eval``."""
    from facelearn.cli import common, subparser

    p = subparser(subparsers, "real-photos",
                  "the quick models on real photographs: detector AP at IoU 0.4 on labelled photos and confident "
                  "false positives (score >= 0.5) on scikit-image's photos without a face, beside OpenCV's Haar "
                  "cascade; verification on matched pairs of real faces; PFLD's 5-point error",
                  "facelearn eval real-photos --labels labels.json --images photos/ --pairs small_lfw.bin --json",
                  _cmd)
    p.add_argument("--labels", required=True, help="labels file: boxes and 5 points per face (JSON)")
    p.add_argument("--images", required=True, help="folder holding the labelled images")
    p.add_argument("--pairs", help="insightface .bin of matched pairs of different people (images 2i, 2i+1)")
    p.add_argument("--protocol", nargs="+", choices=sorted(PROTOCOLS), default=["real"],
                   help="detector test-time protocols to measure (facelearn.detection.test_time)")
    p.add_argument("--detector", help="RetinaFace checkpoint (default: the shipped quick model)")
    p.add_argument("--recogniser", help="recognition checkpoint (default: the shipped quick ArcFace)")
    p.add_argument("--landmarks", help="PFLD checkpoint (default: the shipped quick PFLD)")
    common(p, json="print the report as JSON")
