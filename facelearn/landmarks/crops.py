"""Face crops for PFLD training and testing, with pose-preserving augmentation (book: chapter "PFLD").

Each annotated face becomes a 112×112 crop by one similarity transform (``cv2.warpAffine``): the face box
enlarged by ``margin`` into a square, randomly rotated, scaled and shifted while training, then mirrored
with probability ½ — a mirror also permutes the landmarks (:func:`facelearn.data.wflw.flip_permutation`),
since the left eye of the mirrored face is the right eye of the original — and partly hidden by a random
grey rectangle (occlusion). The Euler angles that supervise the auxiliary net are computed from the
crop's own landmarks with :func:`facelearn.landmarks.euler.euler_from_landmarks`, so they follow every
augmentation. Random draws come from torch's global generator, which the trainer seeds and checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from facelearn.data.files import read_rgb
from facelearn.data.wflw import LandmarkRecord, flip_permutation
from facelearn.errors import DataError
from facelearn.landmarks.euler import euler_from_landmarks


@dataclass(frozen=True)
class CropConfig:
    """Crop geometry and augmentation ranges. ``rotation`` in degrees (±), ``scale`` a (low, high) zoom,
    ``translation`` a fraction of the crop side (±), ``flip`` and ``occlusion`` probabilities, ``occlusion_size``
    the (low, high) side of the rectangle as a fraction of the crop."""

    size: int = 112
    margin: float = 0.15
    rotation: float = 30.0
    scale: tuple[float, float] = (0.9, 1.1)
    translation: float = 0.05
    flip: float = 0.5
    occlusion: float = 0.3
    occlusion_size: tuple[float, float] = (0.15, 0.4)


def crop_matrix(box: np.ndarray, size: int, margin: float, angle_deg: float = 0.0, zoom: float = 1.0,
                shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The 2×3 similarity that maps image pixels to crop pixels.

    box: (4,) x_min y_min x_max y_max; the square of side max(w, h)·(1 + 2·margin) around its centre fills the
    ``size``×``size`` crop after a rotation by ``angle_deg`` (counter-clockwise on screen), a zoom and a shift
    (crop pixels).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    if side <= 0:
        raise ValueError(f"empty face box {box}")
    m = cv2.getRotationMatrix2D(((x0 + x1) / 2, (y0 + y1) / 2), angle_deg, zoom * size / side)
    m[:, 2] += np.array([size / 2 - (x0 + x1) / 2 + shift[0], size / 2 - (y0 + y1) / 2 + shift[1]])
    return m


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(2, 3) matrix applied to (P, 2) points → (P, 2)."""
    return points @ m[:, :2].T + m[:, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    """The inverse of a (2, 3) affine map."""
    return cv2.invertAffineTransform(m)


def flip_landmarks(points: np.ndarray, width: int) -> np.ndarray:
    """Landmarks of the mirrored image: x → (width − 1) − x, then the mirror permutation. (P, 2) → (P, 2)."""
    out = points.copy()
    out[:, 0] = (width - 1) - out[:, 0]
    return out[flip_permutation(len(points))]


class LandmarkCrops(Dataset):
    """Crops of annotated faces as PFLD's training/test samples.

    records: from :func:`facelearn.data.wflw.read_wflw`; images_dir: the folder their paths are relative to;
    augment: random rotation/scale/shift/flip/occlusion (training) or the plain crop (testing).
    Each item is a dict: ``image`` (3, S, S) float in [0, 1]; ``landmarks`` (2P,) crop coordinates / S;
    ``angles`` (3,) yaw, pitch, roll radians; ``attributes`` (6,) float; ``matrix`` (2, 3) image→crop map;
    ``index``.
    """

    def __init__(self, records: list[LandmarkRecord], images_dir: str | os.PathLike, *, augment: bool = False,
                 config: CropConfig = CropConfig(), cache_images: bool = True) -> None:
        self.records, self.images_dir = list(records), Path(images_dir)
        self.augment, self.config, self.cache_images = augment, config, cache_images
        self._cache: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.records)

    def image(self, i: int) -> np.ndarray:
        """The full RGB image (H, W, 3) uint8 of record ``i``."""
        name = self.records[i].image
        if name in self._cache:
            return self._cache[name]
        path = self.images_dir / name
        img = read_rgb(path)
        if self.cache_images:
            self._cache[name] = img
        return img

    def _draw(self) -> dict:
        c, r = self.config, torch.rand(9).tolist()
        return {"angle": (2 * r[0] - 1) * c.rotation, "zoom": c.scale[0] + r[1] * (c.scale[1] - c.scale[0]),
                "shift": ((2 * r[2] - 1) * c.translation * c.size, (2 * r[3] - 1) * c.translation * c.size),
                "flip": r[4] < c.flip, "occlude": r[5] < c.occlusion, "occ": (r[6], r[7], r[8])}

    def __getitem__(self, i: int) -> dict:
        rec, c = self.records[i], self.config
        p = self._draw() if self.augment else {"angle": 0.0, "zoom": 1.0, "shift": (0.0, 0.0), "flip": False,
                                               "occlude": False}
        m = crop_matrix(rec.box, c.size, c.margin, p["angle"], p["zoom"], p["shift"])
        crop = cv2.warpAffine(self.image(i), m, (c.size, c.size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        pts = apply_affine(m, rec.landmarks.astype(np.float64))
        if p["flip"]:
            crop = np.ascontiguousarray(crop[:, ::-1])
            pts = flip_landmarks(pts, c.size)
            m = np.array([[-1.0, 0.0, c.size - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0.0, 0.0, 1.0]])
        if p["occlude"]:
            crop = crop.copy()
            lo, hi = c.occlusion_size
            w = int(c.size * (lo + (hi - lo) * p["occ"][0]))
            x, y = int(p["occ"][1] * (c.size - w)), int(p["occ"][2] * (c.size - w))
            crop[y:y + w, x:x + w] = 128
        try:
            angles = euler_from_landmarks(pts, c.size, c.size)
        except ValueError:
            angles = np.zeros(3)
        return {
            "image": torch.from_numpy(crop).permute(2, 0, 1).float().div_(255),
            "landmarks": torch.from_numpy((pts / c.size).reshape(-1).astype(np.float32)),
            "angles": torch.from_numpy(angles.astype(np.float32)),
            "attributes": torch.from_numpy(rec.attributes.astype(np.float32)),
            "matrix": torch.from_numpy(m.astype(np.float32)),
            "index": i,
        }


def to_image_coordinates(pred: torch.Tensor, matrix: torch.Tensor, size: int = 112) -> np.ndarray:
    """Predicted crop landmarks (N, 2P) in [0, 1] back to image pixels with each crop's (N, 2, 3) matrix →
    (N, P, 2) float64."""
    pts = pred.detach().cpu().double().numpy().reshape(len(pred), -1, 2) * size
    return np.stack([apply_affine(invert_affine(m.astype(np.float64)), p)
                     for p, m in zip(pts, matrix.detach().cpu().numpy())])

