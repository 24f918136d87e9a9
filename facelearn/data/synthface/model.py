"""SynthFace's parametric face: identity, expression and appearance parameters and the shape they give
(book chapter "SynthFace: a face world with exact ground truth").

A face is the fixed mesh of :mod:`facelearn.data.synthface.topology` with its vertices moved by

    X = X̄ + relief(X̄) + Σ_k α_k · B_k(X̄) + Σ_j β_j · E_j(X̄)                                (SynthFace eq. (1))

where X̄ is the mean head, ``relief`` adds nose, eye sockets, brow ridge, lips, cheeks and chin, the
identity fields B_k (face width and length, jaw, cheeks, eye spacing and size, nose length/width/height,
mouth width, lip thickness, brow height, chin) are smooth hand-made displacement fields weighted by the
identity's coefficients α ~ N(0, 1), and the expression fields E_j (mouth open, smile, eye closure, raised
brows) are weighted by β ∈ [0, 1] — a hand-built analogue of a 3-D morphable model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from facelearn.data.synthface.topology import TOPOLOGY, FaceTopology

IDENTITY_SHAPE = ("face_width", "face_length", "jaw", "cheeks", "eye_spacing", "eye_size", "nose_length",
                  "nose_width", "nose_height", "mouth_width", "lip_thickness", "brow_height", "chin", "forehead")
EXPRESSIONS = ("mouth_open", "smile", "eye_closure", "brow_raise")
HAIR_STYLES = ("bald", "short", "fringe", "long")

SKIN_TONES = np.array([[236, 205, 180], [224, 180, 150], [200, 150, 115], [170, 120, 85], [130, 88, 60],
                       [95, 62, 42]], dtype=np.float64)  # RGB, light to dark
HAIR_COLOURS = np.array([[25, 20, 18], [60, 40, 28], [110, 75, 45], [165, 120, 70], [215, 190, 130],
                         [150, 150, 150], [120, 40, 25]], dtype=np.float64)
IRIS_COLOURS = np.array([[60, 40, 25], [95, 70, 40], [70, 110, 140], [80, 120, 80], [40, 30, 25]], dtype=np.float64)


@dataclass(frozen=True)
class Identity:
    """Who a face is: shape coefficients α (one per :data:`IDENTITY_SHAPE`, ~N(0,1)) and appearance.

    Colours are RGB floats in 0…255. ``hair_style`` indexes :data:`HAIR_STYLES`; ``beard`` is 0 (none),
    1 (stubble) or 2 (full); ``glasses`` 0 (none), 1 (clear), 2 (sunglasses).
    """

    shape: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    hair_style: int
    hairline: float
    brow_colour: np.ndarray
    brow_thickness: float
    iris: np.ndarray
    lips: np.ndarray
    beard: int
    glasses: int
    glasses_colour: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def to_json(self) -> dict:
        """A JSON-able description (for ``meta.json``)."""
        return {"shape": dict(zip(IDENTITY_SHAPE, np.round(self.shape, 4).tolist())),
                "skin": np.round(self.skin, 1).tolist(), "hair": np.round(self.hair, 1).tolist(),
                "hair_style": HAIR_STYLES[self.hair_style], "beard": int(self.beard), "glasses": int(self.glasses)}


@dataclass(frozen=True)
class Expression:
    """β coefficients in [0, 1], one per :data:`EXPRESSIONS` (all zero: neutral)."""

    mouth_open: float = 0.0
    smile: float = 0.0
    eye_closure: float = 0.0
    brow_raise: float = 0.0

    def to_json(self) -> dict:
        return {k: round(float(getattr(self, k)), 4) for k in EXPRESSIONS}


_CDFS: dict[tuple, np.ndarray] = {}


def choose(rng: np.random.Generator, p) -> int:
    """int(rng.choice(len(p), p=p)), drawing the same from ``rng`` without its per-call checks: one uniform u,
    then the first index whose cumulative probability (divided by the total, as NumPy does) exceeds u."""
    p = tuple(p)
    cdf = _CDFS.get(p)
    if cdf is None:
        if not p or min(p) < 0 or abs(math.fsum(p) - 1) > 1.5e-8:
            raise ValueError(f"probabilities must be non-negative and sum to 1, got {p}")
        cdf = np.cumsum(np.asarray(p, dtype=np.float64))
        cdf /= cdf[-1]
        _CDFS[p] = cdf
    return int(cdf.searchsorted(rng.random(), side="right"))


def sample_identity(rng: np.random.Generator) -> Identity:
    """A random identity: shape α ~ N(0, 1) and appearance drawn from the palettes above."""
    tone = rng.uniform(0, len(SKIN_TONES) - 1)
    i = int(tone)
    skin = SKIN_TONES[i] + (tone - i) * (SKIN_TONES[min(i + 1, len(SKIN_TONES) - 1)] - SKIN_TONES[i])
    skin = skin * rng.uniform(0.93, 1.07, 3)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.8, 1.2)
    style = choose(rng, (0.08, 0.42, 0.25, 0.25))
    brow = hair * 0.7 if rng.random() < 0.8 else HAIR_COLOURS[0]
    beard = choose(rng, (0.75, 0.13, 0.12))
    glasses = choose(rng, (0.8, 0.14, 0.06))
    lips = skin * np.array([0.85, 0.6, 0.6]) * rng.uniform(0.85, 1.05)
    return Identity(rng.standard_normal(len(IDENTITY_SHAPE)), np.clip(skin, 0, 255), np.clip(hair, 0, 255), style,
                    float(rng.uniform(-0.6, 0.8)), np.clip(brow, 0, 255), float(rng.uniform(0.7, 1.4)),
                    IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))], np.clip(lips, 0, 255), beard, glasses,
                    rng.uniform(0, 80, 3))


def look_alike(identity: Identity, rng: np.random.Generator, closeness: float = 0.75) -> Identity:
    """A different identity that shares most of ``identity``'s parameters: shape coefficients are mixed as
    closeness·α + √(1−closeness²)·α' (still N(0, 1)); skin and hair keep their hue but shift in shade, and
    hair style, iris, beard and brows are kept with high probability."""
    fresh = sample_identity(rng)
    c = float(np.clip(closeness, 0, 1))
    shape = c * identity.shape + np.sqrt(1 - c * c) * fresh.shape
    return replace(identity, shape=shape, skin=np.clip(identity.skin * rng.uniform(0.85, 1.15) * rng.uniform(0.95, 1.05, 3), 0, 255),
                   hair=np.clip(identity.hair * rng.uniform(0.8, 1.25), 0, 255),
                   hairline=float(np.clip(identity.hairline + rng.normal(0, 0.4), -0.6, 0.8)),
                   hair_style=identity.hair_style if rng.random() < 0.6 else fresh.hair_style,
                   brow_thickness=float(np.clip(identity.brow_thickness + rng.normal(0, 0.2), 0.7, 1.4)),
                   iris=identity.iris if rng.random() < 0.7 else fresh.iris,
                   beard=identity.beard if rng.random() < 0.7 else fresh.beard,
                   glasses=identity.glasses if rng.random() < 0.7 else fresh.glasses)


def sample_expression(rng: np.random.Generator, strength: float = 1.0) -> Expression:
    """A random expression; most faces near neutral, ``strength`` scales all coefficients."""
    open_ = rng.random() ** 3 if rng.random() < 0.5 else 0.0
    smile = rng.random() ** 2 if rng.random() < 0.5 else 0.0
    closure = 1.0 if rng.random() < 0.04 else (rng.random() ** 4 * 0.6)
    brow = rng.random() ** 2 if rng.random() < 0.3 else 0.0
    return Expression(open_ * strength, smile * strength, closure * strength, brow * strength)


def _g(fx, fy, cx, cy, rx, ry):
    return np.exp(-(((fx - cx) / rx) ** 2 + ((fy - cy) / ry) ** 2))


def _relief(fx: np.ndarray, fy: np.ndarray, nose_height: float = 1.0) -> np.ndarray:
    """Depth offsets (toward the camera, > 0) of the facial relief at frontal coordinates (fx, fy)."""
    t = np.clip((fy + 0.6) / 4.9, 0, 1)
    width = 0.55 + 0.75 * t
    ridge = (0.35 + 2.0 * t ** 1.4) * np.clip(1 - (fx / width) ** 2, 0, 1) ** 0.8
    ridge *= np.clip((5.15 - fy) / 0.7, 0, 1) * (fy > -1.6)
    ala = 0.75 * _g(fx, fy, 1.25, 4.55, 0.6, 0.5) + 0.75 * _g(fx, fy, -1.25, 4.55, 0.6, 0.5)
    eyes = -0.55 * (_g(fx, fy, 3.2, 0.1, 1.5, 0.9) + _g(fx, fy, -3.2, 0.1, 1.5, 0.9))
    brow = 0.35 * _g(fx, fy, 0, -2.0, 5.0, 0.8)
    lips = 0.45 * _g(fx, fy, 0, 7.3, 2.2, 0.9)
    cheeks = 0.35 * (_g(fx, fy, 3.9, 3.2, 1.6, 1.6) + _g(fx, fy, -3.9, 3.2, 1.6, 1.6))
    chin = 0.4 * _g(fx, fy, 0, 10.0, 1.6, 1.0)
    return nose_height * (ridge + ala) + eyes + brow + lips + cheeks + chin


class _Fields:
    """The parameter-free parts of SynthFace eq. (1), computed once on the mean mesh's frontal coordinates."""

    def __init__(self, topology: FaceTopology) -> None:
        fx, fy = topology.frontal[:, 0], topology.frontal[:, 1]
        self.fx, self.fy, self.sx = fx, fy, np.sign(fx)
        self.front = np.clip(np.cos(topology.uv[:, 0]) * 3.0, 0, 1)
        self.eye_w = _g(np.abs(fx), fy, 3.2, 0.2, 1.8, 1.1)
        self.in_eye = self.eye_w > 0.05
        self.nose_w = _g(fx, fy, 0, 3.0, 2.2, 3.0)
        self.nose_len = self.nose_w * np.clip((fy + 0.6) / 5, 0, 1.2)
        self.mouth_w = _g(fx, fy, 0, 7.3, 3.0, 1.3)
        self.lips = (fy - 7.2) * _g(fx, fy, 0, 7.3, 2.6, 1.0)
        self.brow = _g(fx, fy, 0, -2.1, 6.0, 0.8)
        self.chin = np.clip((fy - 8.5) / 2.5, 0, 1)
        self.lower = np.clip((fy - 7.19) / 0.06, 0, 1) * np.exp(-((fx / 4.0) ** 4)) * (fy > 6)
        self.corners = _g(np.abs(fx), fy, 2.45, 7.2, 1.1, 0.8)
        lid = 0.25 + 0.4 * np.sin(np.pi * np.clip((np.abs(fx) - 3.2 + 1.4) / 2.8, 0, 1))
        self.upper_lid = ((np.abs(np.abs(fx) - 3.2) < 1.45) & (fy < 0.25) & (fy > -0.5)) * (lid - fy)
        self.brow_raise = _g(fx, fy, 0, -2.1, 6.5, 0.9) * (fy < -0.8)
        self.lower_brow = np.isin(np.arange(len(fx)), topology.landmarks98[[38, 39, 40, 41, 47, 48, 49, 50]])
        self.nose_relief = _relief(fx, fy, 1.0) - _relief(fx, fy, 0.0)
        self.other_relief = _relief(fx, fy, 0.0)
        self.cheeks = _g(fx, fy, 3.9, 3.4, 1.8, 1.8) + _g(fx, fy, -3.9, 3.4, 1.8, 1.8)
        self.shapes: dict[tuple, tuple] = {}  # identity → the expression-free part of eq. (1)


_FIELDS: dict[int, _Fields] = {}
_MAX_SHAPES = 128  # identities whose expression-free part of eq. (1) is kept (per topology)


def _identity_part(f: _Fields, identity: Identity) -> tuple:
    """The expression-free terms of eq. (1) for ``identity``, cached on ``f``: (coefficients, frontal x and y
    after the identity fields, the eye scale, front · relief)."""
    key = (identity.shape.dtype.str, identity.shape.tobytes(), identity.brow_thickness)
    part = f.shapes.get(key)
    if part is None:
        a = dict(zip(IDENTITY_SHAPE, identity.shape.tolist()))
        fx, fy, sx = f.fx, f.fy, f.sx
        # identity fields in frontal coordinates (moves of the face's features)
        dx = 0.45 * a["eye_spacing"] * sx * f.eye_w
        scale_eye = 1 + 0.12 * a["eye_size"] * f.eye_w
        ex = (3.2 + 0.45 * a["eye_spacing"]) * sx
        fx2 = np.where(f.in_eye, ex + (fx + dx - ex) * scale_eye, fx + dx)
        fy2 = np.where(f.in_eye, 0.2 + (fy - 0.2) * scale_eye, fy)
        fx2 += 0.18 * a["nose_width"] * fx * f.nose_w + 0.1 * a["mouth_width"] * fx * f.mouth_w
        fy2 += (0.3 * a["nose_length"] * f.nose_len + 0.15 * a["lip_thickness"] * f.lips - 0.3 * a["brow_height"] * f.brow
                + 0.35 * a["chin"] * f.chin + 0.4 * (identity.brow_thickness - 1) * f.lower_brow)
        # relief and the global shape fields; only the front of the head follows the frontal moves
        relief = (1 + 0.28 * a["nose_height"]) * f.nose_relief + f.other_relief + 0.25 * a["cheeks"] * f.cheeks
        if len(f.shapes) >= _MAX_SHAPES:
            del f.shapes[next(iter(f.shapes))]
        part = f.shapes[key] = (a, fx2, fy2, scale_eye, f.front * relief)
    return part


def face_vertices(identity: Identity, expression: Expression = Expression(), topology: FaceTopology = TOPOLOGY) -> np.ndarray:
    """The face's vertices (SynthFace eq. (1)): (V, 3) float64 in model coordinates."""
    f = _FIELDS.get(id(topology))
    if f is None:
        f = _FIELDS[id(topology)] = _Fields(topology)
    a, fx2, fy2, scale_eye, front_relief = _identity_part(f, identity)
    v = topology.vertices.copy()
    # expression fields
    fy2 = fy2 + (expression.mouth_open * 1.7 * f.lower - expression.smile * 0.55 * f.corners
                 + expression.eye_closure * f.upper_lid * scale_eye - expression.brow_raise * 0.55 * f.brow_raise)
    fx2 = fx2 + expression.smile * 0.3 * f.sx * f.corners
    v[:, 0] += f.front * (fx2 - f.fx)
    v[:, 1] += f.front * (fy2 - f.fy)
    v[:, 2] -= front_relief
    jaw = np.clip((v[:, 1] - 4.0) / 6.0, 0, 1)
    v[:, 0] *= 1 + 0.07 * a["face_width"] + 0.11 * a["jaw"] * jaw
    v[:, 1] *= np.where(v[:, 1] > 0, 1 + 0.05 * a["face_length"], 1 + 0.05 * a["forehead"])
    return v
