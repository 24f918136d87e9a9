"""SynthFace's samplers: cluttered backgrounds, detection scenes with WIDER-FACE-like statistics, WFLW-like
landmark photos and aligned identity crops (book chapter "SynthFace").

The detection sampler follows statistics measured from the official WIDER FACE validation ground truth
(``wider_face_val.mat``: 3,226 images ~1024 px wide, 39,708 faces), see :data:`WIDER_FACES_PER_IMAGE`:
the number of faces per image is drawn from the measured histogram (log-uniform inside each bin); an image
with n faces has a median face height of about 184·n^(−0.6) px at 1024 px width (spread 0.8 in log between
images) and a within-image log spread growing with n; sizes are scaled by ``image width / 1024``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import cv2
import numpy as np

from facelearn.data.synthface.model import Expression, Identity, choose, sample_expression, sample_identity
from facelearn.data.synthface.render import FaceRender, draw_face

#: (low, high, images) bins of faces per image in the WIDER FACE val ground truth (3,226 images).
WIDER_FACES_PER_IMAGE = ((1, 1, 1122), (2, 2, 416), (3, 3, 220), (4, 5, 345), (6, 9, 341), (10, 19, 389),
                         (20, 49, 249), (50, 99, 84), (100, 400, 60))
#: WIDER FACE val per-face attribute frequencies (blur 0/1/2, occlusion 0/1/2, atypical pose, extreme
#: illumination, exaggerated expression), measured from the same file; the samplers aim at these.
WIDER_ATTRIBUTES = {"blur": (0.143, 0.261, 0.595), "occlusion": (0.60, 0.181, 0.219), "pose": 0.042,
                    "illumination": 0.058, "expression": 0.010}


def background(rng: np.random.Generator, height: int, width: int, clutter: int = 30) -> np.ndarray:
    """A cluttered BGR background: a smooth colour field with texture and ``clutter`` non-face distractors
    (rectangles, ellipses including skin-coloured blobs without features, lines, polygons, rings)."""
    gh, gw = int(rng.integers(2, 6)), int(rng.integers(2, 6))
    grey = rng.uniform(40, 220, (gh, gw, 1))
    field = (grey + rng.uniform(-60, 60, (gh, gw, 3)) * rng.uniform(0.2, 1.0)).astype(np.float32)
    small = cv2.resize(field, (max(2, width // 8), max(2, height // 8)), interpolation=cv2.INTER_LINEAR)
    small += rng.normal(0, rng.uniform(2, 16), small.shape).astype(np.float32)
    img = cv2.resize(np.clip(small, 0, 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    scale = min(height, width)
    n = int(clutter)
    kinds, u = rng.integers(0, 5, n), rng.uniform(0, 1, (n, 12))
    for kind, r in zip(kinds.tolist(), u.tolist()):
        colour = (int(255 * r[0]), int(255 * r[1]), int(255 * r[2]))
        cx, cy = int(r[3] * width), int(r[4] * height)
        s = int(scale * (0.02 + 0.28 * r[5]) ** 1.5) + 2
        if kind == 0:
            cv2.rectangle(img, (cx - s, cy - s // 2), (cx + s, cy + int(s * (0.3 + r[6]))), colour, -1)
        elif kind == 1:
            if r[7] < 0.3:  # a face-coloured, face-sized blob without features: a hard negative
                colour = (int(60 + 120 * r[0]), int(90 + 110 * r[1]), int(130 + 110 * r[2]))
            cv2.ellipse(img, (cx, cy), (s, int(s * (0.5 + r[6]))), 180 * r[8], 0, 360, colour, -1)
        elif kind == 2:
            cv2.line(img, (cx, cy), (int(r[6] * width), int(r[7] * height)), colour, 1 + int(r[8] * max(1, scale // 60)))
        elif kind == 3:
            pts = np.array([[cx + s * (2 * r[6 + k] - 1), cy + s * (2 * r[(9 + k) % 12] - 1)] for k in range(3)]
                           + [[cx, cy + s]], dtype=np.int32)
            cv2.fillPoly(img, [pts], colour)
        else:
            cv2.circle(img, (cx, cy), s // 2 + 1, colour, 1 + int(3 * r[6]))
    return img


def clamp(x: float, lo: float, hi: float) -> float:
    """float(np.clip(x, lo, hi)) for one number, without NumPy's per-call overhead."""
    return float(min(max(x, lo), hi))


def sample_pose(rng: np.random.Generator, profile: float = 0.06, spread: float = 1.0) -> tuple[float, float, float]:
    """(yaw, pitch, roll) degrees: mostly near-frontal, a fraction ``profile`` turned 45–90°."""
    if rng.random() < profile:
        yaw = float(rng.uniform(45, 90) * rng.choice([-1, 1]))
    else:
        yaw = clamp(rng.normal(0, 20 * spread), -50, 50)
    pitch = clamp(rng.normal(0, 9 * spread), -35, 35)
    roll = clamp(rng.normal(0, 7 * spread), -30, 30) if rng.random() > 0.02 else float(rng.uniform(-60, 60))
    return yaw, pitch, roll


@dataclass
class Light:
    """A light direction (camera space, pointing from the face to the light) and an ambient share."""

    direction: np.ndarray
    ambient: float
    gain: float = 1.0
    extreme: bool = False


def sample_light(rng: np.random.Generator, extreme: float = 0.06) -> Light:
    """A random light; a fraction ``extreme`` is dark or hard side light (WIDER's "extreme illumination")."""
    if rng.random() < extreme:
        d = np.array([rng.choice([-1, 1]) * rng.uniform(0.8, 1.5), rng.uniform(-0.8, 0.3), -0.3])
        return Light(d, float(rng.uniform(0.05, 0.2)), float(rng.uniform(0.45, 0.8)), True)
    d = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.8, 0.3), -1.0])
    return Light(d, float(rng.uniform(0.35, 0.6)), float(rng.uniform(0.85, 1.15)))


@dataclass
class SceneFace:
    """One face of a scene: its render (landmarks, box), parameters and WIDER-style attribute labels."""

    render: FaceRender
    identity: Identity
    expression: Expression
    pose: tuple[float, float, float]
    blur: int
    occlusion: int
    illumination: int
    invalid: int
    occluded_fraction: float = 0.0
    attributes: dict = field(default_factory=dict)

    @property
    def atypical_pose(self) -> int:
        y, p, r = self.pose
        return int(abs(y) >= 60 or abs(p) >= 30 or abs(r) >= 30)

    @property
    def exaggerated(self) -> int:
        return int(self.expression.mouth_open > 0.65 or self.expression.eye_closure > 0.9)


def draw_occluder(canvas: np.ndarray, box: np.ndarray, rng: np.random.Generator, heavy: bool, skin=None) -> np.ndarray:
    """Draw an object over part of the face box; returns its polygon (K, 2) (pixels)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    frac = rng.uniform(0.35, 0.6) if heavy else rng.uniform(0.12, 0.3)
    side = rng.integers(4)
    if side == 0:  # from below (a hand, a scarf, a mask)
        poly = np.array([[x1 - 0.1 * w, y2 - frac * h], [x2 + 0.1 * w, y2 - frac * h * rng.uniform(0.8, 1.2)],
                         [x2 + 0.1 * w, y2 + 0.1 * h], [x1 - 0.1 * w, y2 + 0.1 * h]])
    elif side == 1:  # from the left or right
        e = x1 + frac * w if rng.random() < 0.5 else x2 - frac * w
        far = x1 - 0.1 * w if e < (x1 + x2) / 2 + 1e-9 and e <= x1 + frac * w else x2 + 0.1 * w
        poly = np.array([[far, y1 - 0.1 * h], [e, y1 + rng.uniform(-0.1, 0.1) * h], [e, y2], [far, y2 + 0.1 * h]])
    elif side == 2:  # an ellipse somewhere on the face
        c = (x1 + rng.uniform(0.2, 0.8) * w, y1 + rng.uniform(0.2, 0.8) * h)
        r = np.sqrt(frac * w * h / np.pi)
        poly = np.array(cv2.ellipse2Poly((int(c[0]), int(c[1])), (max(1, int(r * 1.2)), max(1, int(r / 1.2))),
                                         int(rng.uniform(0, 180)), 0, 360, 20), dtype=np.float64)
    else:  # a bar across (a microphone, a pole, a raised arm)
        y0 = y1 + rng.uniform(0.2, 0.8) * h
        t = frac * h / 2
        poly = np.array([[x1 - 0.2 * w, y0 - t], [x2 + 0.2 * w, y0 - t * rng.uniform(0.5, 1.5)], [x2 + 0.2 * w, y0 + t],
                         [x1 - 0.2 * w, y0 + t]])
    colour = rng.uniform(0, 255, 3) if skin is None or rng.random() < 0.6 else np.asarray(skin)[::-1] * 0.9
    cv2.fillPoly(canvas, [np.round(poly * 16).astype(np.int32)], tuple(int(c) for c in colour), cv2.LINE_8, 4)
    return poly


def covered_fraction(box: np.ndarray, polys: list[np.ndarray]) -> float:
    """Fraction of the box covered by the union of ``polys`` (rasterised on a 32×32 grid)."""
    if not polys:
        return 0.0
    x1, y1, x2, y2 = box
    w, h = max(x2 - x1, 1e-6), max(y2 - y1, 1e-6)
    mask = np.zeros((32, 32), np.uint8)
    for p in polys:
        q = (p - [x1, y1]) / [w, h] * 32
        cv2.fillPoly(mask, [np.round(q * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return float(mask.mean())


def inside(points: np.ndarray, polys: list[np.ndarray]) -> np.ndarray:
    """(N,) bool: which points lie inside any polygon (even-odd rule)."""
    result = np.zeros(len(points), bool)
    for poly in polys:
        x, y = points[:, 0:1], points[:, 1:2]
        x0, y0 = poly[:, 0], poly[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        cond = (y0 > y) != (y1 > y)
        xc = x0 + (y - y0) * (x1 - x0) / np.where(y1 == y0, 1e-12, y1 - y0)
        result |= (np.sum(cond & (x < xc), 1) % 2) == 1
    return result


def blur_roi(canvas: np.ndarray, box: np.ndarray, sigma: float) -> None:
    """Gaussian-blur the box (with a margin) in place."""
    if sigma <= 0.3:
        return
    x1, y1, x2, y2 = box
    m = 3 * sigma + 2
    a, b = int(max(0, x1 - m)), int(max(0, y1 - m))
    c, d = int(min(canvas.shape[1], x2 + m + 1)), int(min(canvas.shape[0], y2 + m + 1))
    if c - a > 2 and d - b > 2:
        canvas[b:d, a:c] = cv2.GaussianBlur(canvas[b:d, a:c], (0, 0), sigma)


class _Scratch(threading.local):
    """Per-thread float32 work images of :func:`finish` — the noise (H, W), the noise in three channels and
    the noisy image (H, W, 3) — for the last two image sizes: fresh ones cost page faults at every image."""

    def __init__(self) -> None:
        self.by_shape: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def get(self, shape: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        work = self.by_shape.get(shape)
        if work is None:
            if len(self.by_shape) >= 2:
                del self.by_shape[next(iter(self.by_shape))]
            work = self.by_shape[shape] = (np.empty(shape[:2], np.float32), np.empty(shape, np.float32),
                                           np.empty(shape, np.float32))
        return work


_SCRATCH = _Scratch()


def finish(img: np.ndarray, rng: np.random.Generator, noise: float = 4.0, gain: float = 1.0) -> np.ndarray:
    """Sensor effects on a whole image: exposure ``gain`` and Gaussian noise of σ up to ``noise`` grey levels
    (drawn by OpenCV's generator, seeded from ``rng``)."""
    sigma = float(rng.uniform(0, noise)) if noise > 0 else 0.0
    seed = int(rng.integers(2 ** 31 - 1))
    if sigma < 0.3 and abs(gain - 1) < 1e-3:
        return img
    if sigma >= 0.3:
        n, n3, out = _SCRATCH.get(img.shape)
        cv2.setRNGSeed(seed)
        cv2.randn(n, 0.0, sigma)
        # the image in float32 plus the noise (the same in the three channels); OpenCV's add of two float32
        # images is NumPy's float32 addition, without NumPy's slow broadcast over the channel axis
        np.copyto(out, img)
        out = cv2.add(out, cv2.cvtColor(n, cv2.COLOR_GRAY2BGR, dst=n3), dst=out)
    else:
        out = img.astype(np.float32)
    return cv2.convertScaleAbs(out, alpha=gain) if abs(gain - 1) >= 1e-3 else np.clip(out, 0, 255, out=out).astype(np.uint8)


def render_face_with_attributes(canvas, rng, identity, expression, pose, centre, height, light: Light, *,
                                occlusion_p=(0.72, 0.14, 0.14), blur_sigma: float = 0.0, clothes=True,
                                visibility: str = "all") -> tuple[FaceRender, list[np.ndarray]]:
    """Draw one face, maybe an occluder over it, blur it; returns the render and the occluder polygons."""
    fr = draw_face(canvas, identity, expression, pose, centre, height, light=light.direction, ambient=light.ambient,
                   clothes=rng.uniform(0, 255, 3) if clothes else None, visibility=visibility)
    level = choose(rng, occlusion_p)
    polys = [draw_occluder(canvas, fr.box, rng, heavy=level == 2, skin=identity.skin)] if level else []
    if polys:
        fr.visible98 &= ~inside(fr.landmarks98, polys)
    blur_roi(canvas, fr.box, blur_sigma)
    return fr, polys


def sample_scene_layout(rng: np.random.Generator, width: int, height: int, n_faces: int | None = None,
                        reference_width: float = 1024.0) -> list[tuple[float, float, float]]:
    """(cx, cy, face height) for each face of one scene, following WIDER FACE's measured statistics."""
    if n_faces is None:
        bins = np.array(WIDER_FACES_PER_IMAGE, dtype=np.float64)
        lo, hi, count = bins[int(rng.choice(len(bins), p=bins[:, 2] / bins[:, 2].sum()))]
        n_faces = int(np.floor(np.exp(rng.uniform(np.log(lo), np.log(hi + 1)))))
    s = width / reference_width
    median = 175.0 * n_faces ** -0.6 * np.exp(rng.normal(0, 0.7 - 0.05 * np.log(n_faces)))
    spread = 0.4 * (1 - np.exp(-0.5 * np.log(n_faces)))
    heights = np.clip(median * np.exp(rng.normal(0, spread, n_faces)) * s, 3.0, 0.85 * height)
    placed: list[tuple[float, float, float]] = []
    boxes = []
    for h in sorted(heights.tolist()):
        w = 0.85 * h
        for _ in range(12):
            cx, cy = rng.uniform(w / 2 - 0.2 * w, width - w / 2 + 0.2 * w), rng.uniform(h / 2 - 0.1 * h, height - h / 2)
            b = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
            if all(_iou(b, o) < 0.25 for o in boxes[-200:]):
                placed.append((cx, cy, h))
                boxes.append(b)
                break
    return placed


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
