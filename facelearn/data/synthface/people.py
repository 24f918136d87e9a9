"""Scenes of known people: a gallery of identities, and group photos in which every face is one of them
(book chapter "A face recognition system").

:func:`render_scene` draws strangers; a recognition system is tested on scenes whose faces carry identity
labels. :func:`render_people_scene` places a few faces of given identities on a cluttered background, each
under its own pose, light, expression, occlusion and blur, and returns their true boxes and 5 points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facelearn.data.synthface.model import Identity, sample_expression, sample_identity
from facelearn.data.synthface.scenes import (background, finish, render_face_with_attributes, sample_light,
                                             sample_pose)
from facelearn.data.synthface.topology import FIVE_FROM_98


@dataclass(frozen=True)
class PersonInScene:
    """One face of a people scene: ``person`` indexes the identities given to :func:`render_people_scene`;
    box (4,) x1 y1 x2 y2 and points (5, 2) x y in pixels; pose (yaw, pitch, roll) degrees; occluded, blurred."""

    person: int
    box: np.ndarray
    points: np.ndarray
    pose: tuple[float, float, float]
    occluded: bool
    blurred: bool


def sample_people(rng: np.random.Generator, n: int) -> list[Identity]:
    """``n`` independent identities (a gallery of unrelated people)."""
    return [sample_identity(rng) for _ in range(n)]


def render_people_scene(rng: np.random.Generator, identities: list[Identity], people: list[int], *,
                        width: int = 480, height: int = 320, face_height: tuple[float, float] = (56.0, 120.0),
                        occlusion: float = 0.15, blur: float = 0.15) -> tuple[np.ndarray, list[PersonInScene]]:
    """A group photo of ``identities[i]`` for each ``i`` in ``people``, one face per cell of a near-square grid.

    → (image (height, width, 3) uint8 BGR, faces in ``people``'s order). Face heights are drawn uniformly in
    ``face_height`` (capped by the cell); poses, expressions and lights as in the detection scenes; a fraction
    ``occlusion`` of faces gets a light occluder, a fraction ``blur`` a Gaussian blur.
    """
    if not people:
        raise ValueError("a people scene needs at least one face")
    if not all(0 <= p < len(identities) for p in people):
        raise ValueError(f"people must index the {len(identities)} identities, got {people}")
    cols = int(np.ceil(np.sqrt(len(people) * width / height)))
    rows = int(np.ceil(len(people) / cols))
    cell_w, cell_h = width / cols, height / rows
    img = background(rng, height, width, clutter=int(8 + 20 * width * height / 640 ** 2))
    light = sample_light(rng, extreme=0.0)
    faces = []
    for k, person in enumerate(people):
        r, c = divmod(k, cols)
        h = min(rng.uniform(*face_height), 0.8 * cell_h, 0.9 * cell_w)
        cx = (c + 0.5) * cell_w + rng.uniform(-0.1, 0.1) * max(cell_w - 0.85 * h, 0)
        cy = (r + 0.5) * cell_h + rng.uniform(-0.1, 0.1) * max(cell_h - h, 0)
        occluded, blurred = bool(rng.random() < occlusion), bool(rng.random() < blur)
        sigma = rng.uniform(0.03, 0.06) * h if blurred else 0.0
        pose = sample_pose(rng, profile=0.03, spread=0.8)
        fr, _ = render_face_with_attributes(img, rng, identities[person], sample_expression(rng, strength=0.6), pose,
                                            (cx, cy), h, light, occlusion_p=(0.0, 1.0, 0.0) if occluded else
                                            (1.0, 0.0, 0.0), blur_sigma=sigma, visibility="none")
        faces.append(PersonInScene(person, fr.box.copy(), fr.landmarks98[list(FIVE_FROM_98)].copy(), pose,
                                   occluded, blurred))
    return finish(img, rng, noise=3.0 * rng.random(), gain=light.gain), faces
