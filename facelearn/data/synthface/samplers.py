"""The three SynthFace samplers: detection scenes, landmark photos and aligned identity crops
(book chapter "SynthFace"). Each takes a ``numpy.random.Generator`` and is deterministic for its state.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facelearn.data.synthface.model import Expression, Identity, choose, sample_expression, sample_identity
from facelearn.data.synthface.render import FaceRender, draw_face
from facelearn.data.synthface.scenes import (Light, SceneFace, background, clamp, covered_fraction, finish,
                                             inside, render_face_with_attributes, sample_light, sample_pose,
                                             sample_scene_layout)
from facelearn.data.synthface.topology import FIVE_FROM_98, TOPOLOGY

_BLUR_BY_SIZE = ((12, (0.05, 0.2, 0.75)), (30, (0.1, 0.3, 0.6)), (80, (0.3, 0.42, 0.28)), (1e9, (0.5, 0.35, 0.15)))


def _occlusion_level(fraction: float) -> int:
    return 0 if fraction < 0.08 else (1 if fraction < 0.35 else 2)


def render_scene(rng: np.random.Generator, width: int, height: int, n_faces: int | None = None,
                 reference_width: float = 1024.0) -> tuple[np.ndarray, list[SceneFace]]:
    """A detection scene: a cluttered background with faces following WIDER FACE's statistics.

    → (image (height, width, 3) uint8 BGR, faces). Face sizes are those of a ``reference_width``-wide
    WIDER image scaled to ``width``. Faces are drawn smallest (farthest) first, so later faces occlude them.
    """
    img = background(rng, height, width, clutter=int(8 + 30 * width * height / 640 ** 2))
    light = sample_light(rng)
    s = width / reference_width
    faces: list[SceneFace] = []
    occluders: list[list[np.ndarray]] = []
    for cx, cy, h in sample_scene_layout(rng, width, height, n_faces, reference_width):
        identity = sample_identity(rng)
        expression = sample_expression(rng, strength=0.7)
        pose = sample_pose(rng)
        h_ref = h / s
        probs = next(p for limit, p in _BLUR_BY_SIZE if h_ref < limit)
        blur = choose(rng, probs)
        sigma = [0.0, max(0.5, 0.025 * h), max(0.8, 0.06 * h)][blur] * rng.uniform(0.8, 1.2)
        face_light = Light(light.direction + rng.normal(0, 0.15, 3), clamp(light.ambient + rng.normal(0, 0.05), 0.05, 0.8),
                           light.gain, light.extreme)
        fr, polys = render_face_with_attributes(img, rng, identity, expression, pose, (cx, cy), h, face_light,
                                                occlusion_p=(0.7, 0.15, 0.15), blur_sigma=sigma,
                                                visibility="five" if h >= 10 else "none")
        faces.append(SceneFace(fr, identity, expression, pose, blur, 0, int(light.extreme), 0))
        occluders.append(polys)
    for i, face in enumerate(faces):  # faces drawn later cover earlier ones
        box = face.render.box
        cover = list(occluders[i])
        for later in faces[i + 1:]:
            b = later.render.box
            if b[0] < box[2] and b[2] > box[0] and b[1] < box[3] and b[3] > box[1]:
                cover.append(_later_face_outline(later.render))
        frac = covered_fraction(box, cover)
        inside_img = _inside_fraction(box, width, height)
        face.occluded_fraction = float(min(1.0, frac + (1 - inside_img)))
        face.occlusion = _occlusion_level(face.occluded_fraction)
        if len(cover) > len(occluders[i]):
            face.render.visible98 &= ~inside(face.render.landmarks98, cover[len(occluders[i]):])
        face.invalid = int(face.occluded_fraction > 0.75 or (box[3] - box[1]) < 2.5)
    img = finish(img, rng, noise=4.0 * rng.random(), gain=light.gain)
    return img, faces


def _later_face_outline(fr: FaceRender) -> np.ndarray:
    """A polygon around a face's head: its box widened a little and extended up to cover the hair."""
    x1, y1, x2, y2 = fr.box
    w, h = x2 - x1, y2 - y1
    return np.array([[x1 - 0.05 * w, y1 - 0.25 * h], [x2 + 0.05 * w, y1 - 0.25 * h], [x2 + 0.05 * w, y2], [x1 - 0.05 * w, y2]])


def _inside_fraction(box: np.ndarray, width: int, height: int) -> float:
    x1, y1, x2, y2 = box
    area = max((x2 - x1) * (y2 - y1), 1e-9)
    iw = max(0.0, min(x2, width) - max(x1, 0))
    ih = max(0.0, min(y2, height) - max(y1, 0))
    return iw * ih / area


@dataclass
class LandmarkSample:
    """A WFLW-like photo: image (S, S, 3) BGR, its face's render (98 landmarks, box), true pose and the six
    WFLW attribute flags (pose, expression, illumination, make-up, occlusion, blur)."""

    image: np.ndarray
    render: FaceRender
    pose: tuple[float, float, float]
    attributes: tuple[int, int, int, int, int, int]
    identity: Identity
    expression: Expression


def render_landmark_photo(rng: np.random.Generator, size: int | None = None) -> LandmarkSample:
    """One WFLW-like photo: a face filling ~45–65 % of a ``size``×``size`` image (160–256 px if None) with the
    WFLW attribute frequencies roughly matched (13 % large pose, 12 % expression, 28 % illumination, 8 %
    make-up, 29 % occlusion, 31 % blur)."""
    size = int(size or rng.integers(160, 257))
    img = background(rng, size, size, clutter=12)
    identity = sample_identity(rng)
    makeup = rng.random() < 0.08
    if makeup:
        identity = Identity(**{**identity.__dict__, "lips": np.array([200.0, 40, 60]) * rng.uniform(0.7, 1.0)})
    big_pose = rng.random() < 0.13
    pose = sample_pose(rng, profile=1.0 if big_pose else 0.0, spread=0.8)
    if big_pose and abs(pose[0]) > 75:
        pose = (float(np.sign(pose[0]) * rng.uniform(45, 75)), pose[1], pose[2])
    expressive = rng.random() < 0.12
    expression = (Expression(float(rng.uniform(0.6, 1.0)), float(rng.random()), 0.0, float(rng.random()))
                  if expressive else sample_expression(rng, strength=0.4))
    light = sample_light(rng, extreme=0.28)
    h = size * rng.uniform(0.45, 0.65)
    centre = (size / 2 + rng.uniform(-0.08, 0.08) * size, size / 2 + rng.uniform(-0.06, 0.1) * size)
    occl = rng.random() < 0.29
    blur = rng.random() < 0.31
    sigma = rng.uniform(1.2, 3.0) * size / 200 if blur else 0.0
    fr, polys = render_face_with_attributes(img, rng, identity, expression, pose, centre, h, light,
                                            occlusion_p=(0.0, 0.6, 0.4) if occl else (1.0, 0.0, 0.0), blur_sigma=sigma)
    occluded = bool(polys) or identity.glasses == 2
    img = finish(img, rng, noise=3.0, gain=light.gain)
    pose_flag = int(abs(pose[0]) >= 40 or abs(pose[1]) >= 25 or abs(pose[2]) >= 30)
    attrs = (pose_flag, int(expressive), int(light.extreme), int(makeup), int(occluded), int(blur))
    return LandmarkSample(img, fr, pose, attrs, identity, expression)


def render_identity_crop(rng: np.random.Generator, identity: Identity, size: int = 112,
                         nuisance: float = 1.0) -> tuple[np.ndarray, dict]:
    """One aligned ``size``×``size`` photo of ``identity`` under random pose, light, expression, occlusion,
    blur and noise (scaled by ``nuisance``), warped onto insightface's ArcFace template by its 5 points
    (:func:`facelearn.data.alignment.align_face`). → (crop (size, size, 3) uint8 BGR, parameters)."""
    from facelearn.data.alignment import align_face

    scale = max(size, 48) / 112.0  # render at about the output's resolution, then align
    canvas_size = int(round(160 * scale))
    img = background(rng, canvas_size, canvas_size, clutter=6)
    pose = (clamp(rng.normal(0, 13 * nuisance), -70, 70), clamp(rng.normal(0, 7 * nuisance), -30, 30),
            clamp(rng.normal(0, 8 * nuisance), -40, 40))
    expression = sample_expression(rng, strength=0.7 * nuisance)
    light = sample_light(rng, extreme=0.03 * nuisance)
    if identity.glasses and rng.random() < 0.2 * nuisance:
        identity = Identity(**{**identity.__dict__, "glasses": 0})
    occl = rng.random() < 0.06 * nuisance
    sigma = rng.uniform(0.5, 2.0) * scale if rng.random() < 0.1 * nuisance else 0.0
    fr, polys = render_face_with_attributes(img, rng, identity, expression, pose, (80 * scale, 82 * scale), 96.0 * scale,
                                            light, occlusion_p=(0.0, 1.0, 0.0) if occl else (1.0, 0.0, 0.0),
                                            blur_sigma=sigma, visibility="none")
    img = finish(img, rng, noise=5.0 * nuisance, gain=light.gain)
    crop = align_face(img, fr.landmarks98.take(FIVE_FROM_98, axis=0), max(size, 48))  # the 5 points, gathered
    if size < 48:  # shrink with area averaging rather than sampling a warp
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return crop, {"pose": [round(p, 2) for p in pose], "expression": expression.to_json(), "occluded": bool(polys),
                  "blur_sigma": round(float(sigma), 3)}


__all__ = ["render_scene", "render_landmark_photo", "render_identity_crop", "LandmarkSample", "TOPOLOGY",
           "draw_face"]
