"""Detection augmentations that keep boxes and 5-point landmarks consistent with the image (book chapter
"Training and evaluating RetinaFace").

The recipe of the common RetinaFace implementation: a random square crop of 0.3, 0.45, 0.6, 0.8 or 1.0 of
the short side that keeps the faces whose centre stays inside, photometric distortion (brightness,
contrast, saturation, hue), a horizontal mirror that swaps the landmark points 0↔1 and 3↔4, and a resize
to the training size; :func:`to_tensor` then gives the data sets' images, RGB in [0, 1] (the model's
``preprocess`` turns them into its input).

Conventions: images are ``(H, W, 3) uint8`` in OpenCV's BGR order; coordinates are continuous pixels (pixel
``(i, j)`` covers ``[j, j+1) × [i, i+1)``), so a mirror maps ``x ↦ W − x`` and a resize by ``s`` maps
``x ↦ s·x`` (which is what ``cv2.resize`` does to the image). boxes: ``(N, 4)`` ``x1 y1 x2 y2``; landmarks:
``(N, 5, 2)``; mask: ``(N,)`` bool, rows without landmarks (mask False) keep −1 untouched. Every random
step takes a ``np.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import cv2
import numpy as np
import torch

#: The 5-point order (left eye, right eye, nose, left mouth, right mouth) after a mirror: 0↔1, 3↔4.
FIVE_POINT_FLIP = (1, 0, 2, 4, 3)
#: Crop sides as fractions of the image's short side (the common implementation's ``PRE_SCALES``).
CROP_SCALES = (0.3, 0.45, 0.6, 0.8, 1.0)
#: The common implementation's per-channel mean, BGR (its ``rgb_mean``): the colour padding is filled with
#: (its networks subtract it, :data:`facelearn.weights.BGR_MEAN_SUBTRACTED`, so padding reads as zero).
BGR_MEAN = (104.0, 117.0, 123.0)
_INTERPOLATIONS = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA, cv2.INTER_NEAREST, cv2.INTER_LANCZOS4)


class Sample(NamedTuple):
    """An image with its faces: image (H, W, 3) uint8; boxes (N, 4) float32 x1 y1 x2 y2 pixels;
    landmarks (N, 5, 2) float32 pixels (−1 where mask is False); mask (N,) bool."""

    image: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    mask: np.ndarray


def hflip_points(points: np.ndarray, width: float, permutation: Sequence[int] | None = None) -> np.ndarray:
    """Mirror points horizontally in an image ``width`` wide: ``x ↦ width − x``, then reorder the point
    axis so that a left point stays a left point.

    points: (..., K, 2); permutation: K indices, new point k = mirrored old point ``permutation[k]``
    (e.g. :data:`FIVE_POINT_FLIP`, or the 98-point WFLW table); it must be an involution for a double
    mirror to be the identity. Returns a new float array of the same shape.
    """
    points = np.array(points, copy=True)
    if not np.issubdtype(points.dtype, np.floating):
        points = points.astype(np.float64)
    points[..., 0] = width - points[..., 0]
    if permutation is not None:
        permutation = np.asarray(permutation)
        if sorted(permutation.tolist()) != list(range(points.shape[-2])):
            raise ValueError(f"permutation must reorder all {points.shape[-2]} points, got {permutation.tolist()}")
        points = points[..., permutation, :]
    return points


def hflip(sample: Sample) -> Sample:
    """Mirror image, boxes (``x1' = W − x2``, ``x2' = W − x1``) and landmarks (0↔1, 3↔4)."""
    image, boxes, landmarks, mask = sample
    width = image.shape[1]
    boxes = boxes.copy()
    boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    landmarks = landmarks.copy()
    landmarks[mask] = hflip_points(landmarks[mask], width, FIVE_POINT_FLIP)
    return Sample(np.ascontiguousarray(image[:, ::-1]), boxes, landmarks, mask)


def crop(sample: Sample, roi: Sequence[int]) -> Sample:
    """Cut ``roi = (l, t, r, b)`` out of the image; keep the faces whose box centre lies strictly inside it,
    clip their boxes and landmarks to the crop and shift them to its origin."""
    image, boxes, landmarks, mask = sample
    l, t, r, b = (int(v) for v in roi)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = (centre[:, 0] > l) & (centre[:, 0] < r) & (centre[:, 1] > t) & (centre[:, 1] < b)
    origin, size = np.array([l, t], np.float32), np.array([r - l, b - t], np.float32)
    boxes = boxes[inside].copy()
    boxes[:, :2] = np.maximum(boxes[:, :2], origin) - origin
    boxes[:, 2:] = np.minimum(boxes[:, 2:], origin + size) - origin
    landmarks, mask = landmarks[inside].copy(), mask[inside]
    landmarks[mask] = np.clip(landmarks[mask] - origin, 0, size)
    return Sample(image[t:b, l:r], boxes, landmarks, mask)


def random_square_crop(sample: Sample, rng: np.random.Generator, *, scales: Sequence[float] = CROP_SCALES,
                       max_tries: int = 250, out_size: int | None = None,
                       min_face: float = 0.0) -> tuple[Sample, tuple[int, int, int, int] | None]:
    """A random square crop whose side is a random ``scale`` × the short side, at a random place.

    A try is kept when some face lies entirely inside the crop and, after :func:`crop`, at least one face
    remains whose smaller side exceeds ``min_face`` pixels at ``out_size`` (default: the crop's own size).
    Returns (the crop, its roi ``l t r b``) or, when ``max_tries`` fail, (the input, ``None``).
    """
    height, width = sample.image.shape[:2]
    short = min(width, height)
    boxes = sample.boxes
    for _ in range(max_tries):
        side = max(1, int(scales[int(rng.integers(len(scales)))] * short))
        l = int(rng.integers(width - side)) if width > side else 0
        t = int(rng.integers(height - side)) if height > side else 0
        roi = (l, t, l + side, t + side)
        whole = (boxes[:, 0] >= l) & (boxes[:, 1] >= t) & (boxes[:, 2] <= l + side) & (boxes[:, 3] <= t + side)
        if not whole.any():
            continue
        out = crop(sample, roi)
        sides = np.minimum(out.boxes[:, 2] - out.boxes[:, 0], out.boxes[:, 3] - out.boxes[:, 1])
        big = sides * (out_size or side) / side > min_face
        if big.any():
            return Sample(out.image, out.boxes[big], out.landmarks[big], out.mask[big]), roi
    return sample, None


def photometric_distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness (±32), contrast (×0.5–1.5), saturation (×0.5–1.5) and hue (±18 of OpenCV's 180), each
    applied with probability ½, contrast first or last with probability ½. image: (H, W, 3) uint8 BGR."""
    out = image.astype(np.float32)

    def maybe_contrast(x: np.ndarray) -> np.ndarray:
        return np.clip(x * rng.uniform(0.5, 1.5), 0, 255) if rng.integers(2) else x

    contrast_first = bool(rng.integers(2))
    if rng.integers(2):
        out = np.clip(out + rng.uniform(-32, 32), 0, 255)
    if contrast_first:
        out = maybe_contrast(out)
    hsv = cv2.cvtColor(out.round().astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.float32)
    if rng.integers(2):
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.5), 0, 255)
    if rng.integers(2):
        hsv[..., 0] = (hsv[..., 0] + int(rng.integers(-18, 19))) % 180
    out = cv2.cvtColor(hsv.round().astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    if not contrast_first:
        out = maybe_contrast(out)
    return out.round().astype(np.uint8)


def pad_to_square(image: np.ndarray, fill: Sequence[float] = BGR_MEAN) -> np.ndarray:
    """Pad on the right or bottom to a square of the long side with ``fill``; coordinates are unchanged."""
    height, width = image.shape[:2]
    side = max(height, width)
    out = np.empty((side, side, image.shape[2]), dtype=image.dtype)
    out[:] = np.asarray(fill, dtype=np.float64).round().astype(image.dtype)
    out[:height, :width] = image
    return out


def resize(sample: Sample, size: int, interpolation: int = cv2.INTER_LINEAR) -> Sample:
    """Resize the image to ``size × size`` and scale the coordinates with it (x by size/W, y by size/H)."""
    image, boxes, landmarks, mask = sample
    height, width = image.shape[:2]
    scale = np.array([size / width, size / height], dtype=np.float32)
    boxes = (boxes.reshape(-1, 2, 2) * scale).reshape(-1, 4)
    landmarks = landmarks.copy()
    landmarks[mask] = landmarks[mask] * scale
    return Sample(cv2.resize(image, (size, size), interpolation=interpolation), boxes, landmarks, mask)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 BGR → (3, H, W) float32 RGB in [0, 1] (pixels / 255): the data contract of every task's
    data set; a model's ``preprocess`` makes its input from it."""
    return torch.from_numpy(np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1))).float() / 255.0


@dataclass(frozen=True)
class DetectionAugment:
    """The training augmentation as data: crop → distort → (pad when no crop was found) → mirror → resize.

    size: the square training size; scales, max_tries, min_face: :func:`random_square_crop`; distort:
    photometric distortion on/off; mirror: probability of a mirror; random_interpolation: pick one of five
    OpenCV interpolations per sample (as the common implementation) instead of bilinear; fill: the pad
    colour, BGR.
    """

    size: int = 640
    scales: tuple[float, ...] = CROP_SCALES
    max_tries: int = 250
    min_face: float = 0.0
    distort: bool = True
    mirror: float = 0.5
    random_interpolation: bool = True
    fill: tuple[float, float, float] = BGR_MEAN

    @classmethod
    def preset(cls, name: str) -> "DetectionAugment":
        """``common``: 640 px, the common implementation's recipe; ``quick``: 320 px for CPU chapters."""
        presets = {"common": cls(), "quick": cls(size=320)}
        if name not in presets:
            raise ValueError(f"unknown augmentation preset {name!r}; choose from {sorted(presets)}")
        return presets[name]

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Augment one sample; returns an image ``size × size`` with coordinates in its pixels."""
        sample, roi = random_square_crop(sample, rng, scales=self.scales, max_tries=self.max_tries,
                                         out_size=self.size, min_face=self.min_face)
        image = photometric_distort(sample.image, rng) if self.distort else sample.image
        if roi is None:
            image = pad_to_square(image, self.fill)
        sample = sample._replace(image=image)
        if rng.random() < self.mirror:
            sample = hflip(sample)
        method = _INTERPOLATIONS[int(rng.integers(len(_INTERPOLATIONS)))] if self.random_interpolation \
            else cv2.INTER_LINEAR
        return resize(sample, self.size, method)


def letterbox(sample: Sample, size: int, fill: Sequence[float] = BGR_MEAN) -> tuple[Sample, float]:
    """Evaluation resizing: pad to a square (right/bottom, with ``fill``) and resize to ``size``, keeping the
    aspect ratio. Returns the sample and the scale ``size / long side`` (divide outputs by it for the original)."""
    padded = sample._replace(image=pad_to_square(sample.image, fill))
    return resize(padded, size), size / padded.image.shape[0]
