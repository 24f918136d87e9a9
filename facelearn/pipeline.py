"""A face recognition system: detect → 5-point alignment → embedding → verification and 1 : N identification,
and the accounting that charges each of its mistakes to the stage that made it (book chapter "A face
recognition system"). ``facelearn embed`` and ``facelearn landmarks`` run the same functions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.ops import box_iou

from facelearn.detection.postprocess import Detections, detect
from facelearn.errors import DataError
from facelearn.landmarks.crops import CropConfig, crop_matrix, to_image_coordinates
from facelearn.recognition.alignment import align_face
from facelearn.recognition.verification import VerificationResult, embed, evaluate


def checkpoint_task(path: str | os.PathLike) -> str:
    """What a checkpoint holds: ``detection``, ``recognition`` or ``landmarks`` (a facelearn checkpoint's own
    record, or the first model a reference release fits), or ``mesh`` (the mesh decoder)."""
    from facelearn.engine import load_checkpoint
    from facelearn.models import preset
    from facelearn.releases import describe, identify

    state = load_checkpoint(path)
    if isinstance(state.get("facelearn"), dict):
        return state["facelearn"]["task"]
    if "decoder" in state:
        return "mesh"
    names = identify(state)
    if not names:
        raise DataError.at(path, None, f"holds {describe(state) or 'no model facelearn knows'}")
    return preset(names[0]).task


def load_model(task: str, path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, int | None]:
    """(network in eval mode, side of the square crops it reads, or None for a detector) from a facelearn
    checkpoint or a reference release of ``task`` (``detection``, ``recognition``, ``landmarks``); a file of
    another task is refused with one line naming it (:func:`facelearn.registry.load`)."""
    from facelearn.engine import load_checkpoint
    from facelearn.models import preset
    from facelearn.registry import load
    from facelearn.releases import identify

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    model = load(path, task=task).to(device)
    if task == "detection":
        return model, None
    state = load_checkpoint(path)
    name = state["facelearn"]["model"] if isinstance(state.get("facelearn"), dict) else identify(state)[0]
    return model, preset(name).input_size[-1]


def find_faces(detector: nn.Module, image: np.ndarray, *, score_threshold: float = 0.5,
               scale: float | Sequence[float] = 1.0) -> Detections:
    """The faces a RetinaFace finds in one H×W×3 uint8 RGB image (:func:`facelearn.detection.postprocess.detect`)."""
    return detect(detector, image, score_threshold=score_threshold, scale=scale)


def align_all(image: np.ndarray, points: np.ndarray | torch.Tensor, size: int = 112) -> np.ndarray:
    """Every face warped onto the ArcFace template by its 5 points: image (H, W, 3) uint8, points (N, 5, 2)
    pixels → crops (N, size, size, 3) uint8. Rows of −1 (a detector without a landmark head) are refused."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
    if (points < 0).all(axis=(1, 2)).any():
        raise ValueError("a face has no 5 landmark points (a detector without a landmark head cannot align)")
    if not len(points):
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([align_face(image, p, size) for p in points])


def embed_crops(model: nn.Module, crops: np.ndarray, flip: bool = True) -> torch.Tensor:
    """Unit-length embeddings (N, D) of aligned uint8 RGB crops (N, S, S, 3), with the flip test-time sum."""
    if not len(crops):
        return torch.zeros(0, 0)
    return embed(model, torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2), flip=flip, dedupe=False)


def crop_box(width: int, height: int, config: CropConfig = CropConfig()) -> np.ndarray:
    """The face box (4,) whose landmark crop (its square widened by ``config.margin``) is a whole ``width`` ×
    ``height`` image centred on it: what a face crop made like PFLD's inputs holds."""
    side = max(width, height) / (1 + 2 * config.margin)
    cx, cy = width / 2, height / 2
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


@torch.no_grad()
def landmarks_in_boxes(model: nn.Module, image: np.ndarray, boxes: np.ndarray | torch.Tensor,
                       config: CropConfig = CropConfig()) -> np.ndarray:
    """PFLD's landmarks for each face box: image (H, W, 3) uint8 RGB, boxes (N, 4) x1 y1 x2 y2 → (N, P, 2)
    pixels. Each face is cropped as in training (the box's square widened by ``config.margin``)."""
    import cv2

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        return np.zeros((0, model.config.n_points, 2))
    matrices = np.stack([crop_matrix(b, config.size, config.margin) for b in boxes])
    crops = np.stack([cv2.warpAffine(image, m, (config.size, config.size), flags=cv2.INTER_LINEAR) for m in matrices])
    x = model.preprocess(torch.from_numpy(crops).permute(0, 3, 1, 2).to(next(model.parameters()).device))
    was_training = model.training
    pred, _ = model.eval()(x)
    model.train(was_training)
    return to_image_coordinates(pred.cpu(), torch.from_numpy(matrices).float(), config.size)


def identify(embeddings: torch.Tensor, gallery: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """1 : N search: each unit embedding (M, D) against a gallery of unit embeddings (K, D), one per person →
    (the nearest person (M,), its cosine similarity (M,)); rank-1 counts how often the nearest is right."""
    if not len(embeddings):
        return np.zeros(0, np.int64), np.zeros(0)
    best = (embeddings @ gallery.T).max(1)
    return best.indices.numpy(), best.values.numpy().astype(np.float64)


def match_boxes(boxes: torch.Tensor, truth: torch.Tensor, iou: float = 0.5) -> np.ndarray:
    """Greedy one-to-one matching of detections (M, 4), best score first, to true boxes (T, 4) at IoU ≥ ``iou``,
    the WIDER FACE rule → (M,) index of the true face each detection found, −1 for a false detection."""
    matched = np.full(len(boxes), -1, dtype=np.int64)
    if not len(boxes) or not len(truth):
        return matched
    overlap = box_iou(boxes.float(), truth.float()).numpy()
    taken = np.zeros(len(truth), dtype=bool)
    for m in range(len(boxes)):
        candidates = np.where(~taken & (overlap[m] >= iou))[0]
        if len(candidates):
            t = candidates[overlap[m, candidates].argmax()]
            matched[m], taken[t] = t, True
    return matched


def alignment_error(points: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean 5-point distance over the inter-ocular distance: points, truth (N, 5, 2) → (N,)."""
    points, truth = np.asarray(points, np.float64), np.asarray(truth, np.float64)
    return np.linalg.norm(points - truth, axis=-1).mean(-1) / np.linalg.norm(truth[:, 0] - truth[:, 1], axis=-1)


@dataclass(frozen=True)
class StageCounts:
    """Where each true face of a test ended (book chapter "A face recognition system", error analysis).

    correct: found and identified; missed: no detection at IoU ≥ 0.5; bad_alignment: found, wrongly identified,
    but identified correctly when aligned with its true 5 points; wrong_match: wrongly identified even then (the
    embedding's fault); false_detections: detections of no face (each would be reported as somebody)."""

    faces: int = 0
    correct: int = 0
    missed: int = 0
    bad_alignment: int = 0
    wrong_match: int = 0
    false_detections: int = 0

    def __add__(self, other: "StageCounts") -> "StageCounts":
        return StageCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def rank1(self) -> float:
        """Rank-1 identification rate of the whole system: correct / true faces."""
        return self.correct / max(self.faces, 1)


#: The stage names of :func:`face_stages`, in the order the stages run.
STAGES = ("correct", "missed", "bad_alignment", "wrong_match", "false_detections")


def face_stages(matched: np.ndarray, predicted: np.ndarray, predicted_true_points: np.ndarray,
                people: np.ndarray) -> tuple[list[str], list[str]]:
    """Charge each mistake to the first stage that made it → (one stage per true face, one per detection).

    matched (M,): :func:`match_boxes`; predicted (M,): the identity found with the detected points;
    predicted_true_points (M,): the identity found when the same face is aligned with its true points (ignored
    for false detections); people (T,): the true identity of each true face. Stages are names of :data:`STAGES`;
    a detection's stage is its face's, or ``false_detections``.
    """
    found = {int(t): m for m, t in enumerate(matched) if t >= 0}
    faces = []
    for t, person in enumerate(people):
        m = found.get(t)
        faces.append("missed" if m is None else "correct" if predicted[m] == person else
                     "bad_alignment" if predicted_true_points[m] == person else "wrong_match")
    return faces, [faces[t] if t >= 0 else "false_detections" for t in matched]


def charge_errors(matched: np.ndarray, predicted: np.ndarray, predicted_true_points: np.ndarray,
                  people: np.ndarray) -> StageCounts:
    """:func:`face_stages` counted: the true faces per stage, and the false detections."""
    faces, detections = face_stages(matched, predicted, predicted_true_points, people)
    counts = {name: faces.count(name) for name in STAGES[:-1]}
    return StageCounts(faces=len(people), false_detections=detections.count("false_detections"), **counts)


@dataclass
class SystemResult:
    """A system run on labelled scenes: the stage counts, 1 : 1 verification of each found face against the
    gallery (10-fold protocol), and one row per detection (scene, stage, true person or −1, predicted person,
    its similarity, alignment error, detection score, box, 5 points)."""

    counts: StageCounts
    verification: VerificationResult
    faces: list[dict]


def run_on_scenes(detector: nn.Module, recogniser: nn.Module, crop_size: int, gallery: torch.Tensor,
                  scenes: Sequence[tuple[np.ndarray, Sequence]], *, score_threshold: float = 0.5,
                  scale: float | Sequence[float] = 1.0, seed: int = 0) -> SystemResult:
    """Detect, align, embed and identify every face of ``scenes`` against ``gallery`` (K, D) unit embeddings.

    scenes: (image (H, W, 3) uint8 RGB, faces) with each face's ``person`` (gallery row), ``box`` (4,) and
    ``points`` (5, 2) — :func:`facelearn.data.synthface.people.render_people_scene`'s faces. Verification pairs
    each found face with its own gallery entry (same) and one other drawn with ``seed`` (different).
    """
    rng = np.random.default_rng(seed)
    total, rows, scores, issame = StageCounts(), [], [], []
    for s, (image, faces) in enumerate(scenes):
        det = find_faces(detector, image, score_threshold=score_threshold, scale=scale)
        truth = torch.as_tensor(np.array([f.box for f in faces]), dtype=torch.float32).reshape(-1, 4)
        people = np.array([f.person for f in faces], dtype=np.int64)
        matched = match_boxes(det.boxes, truth)
        true_points = np.array([faces[t].points if t >= 0 else det.landmarks[m].numpy()
                                for m, t in enumerate(matched)]).reshape(-1, 5, 2)
        probes = embed_crops(recogniser, align_all(image, det.landmarks, crop_size))
        predicted, similarity = identify(probes, gallery)
        predicted_true, _ = identify(embed_crops(recogniser, align_all(image, true_points, crop_size)), gallery)
        total = total + charge_errors(matched, predicted, predicted_true, people)
        _, stages = face_stages(matched, predicted, predicted_true, people)
        errors = alignment_error(det.landmarks.numpy(), true_points) if len(det) else np.zeros(0)
        for m, t in enumerate(matched):
            rows.append({"scene": s, "stage": stages[m], "person": int(people[t]) if t >= 0 else -1,
                         "predicted": int(predicted[m]), "similarity": float(similarity[m]),
                         "alignment_error": float(errors[m]), "score": float(det.scores[m]),
                         "box": det.boxes[m].tolist(), "landmarks": det.landmarks[m].tolist()})
            if t >= 0:
                other = int(rng.choice(np.delete(np.arange(len(gallery)), people[t])))
                scores += [float(probes[m] @ gallery[people[t]]), float(probes[m] @ gallery[other])]
                issame += [True, False]
    if len(scores) < 20:
        raise DataError(f"only {len(scores) // 2} faces were found: too few for the 10-fold verification protocol")
    return SystemResult(total, evaluate(np.array(scores), np.array(issame)), rows)
