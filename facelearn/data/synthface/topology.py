"""SynthFace's head mesh: vertices of the mean head, triangles, and the semantic landmarks on it
(book chapter "SynthFace: a face world with exact ground truth").

The mesh is fixed once and for all: every identity and expression moves the vertices (see
:mod:`facelearn.data.synthface.model`) but never changes the triangles, so a later chapter can decode a
dense face onto this topology (RetinaFace's mesh-decoder branch). The 98 WFLW landmarks are *vertices*
of the mesh (``TOPOLOGY.landmarks98`` holds their vertex indices), so their ground truth is exact.

Coordinates of the model (centimetre-like units): x to the image's right for a frontal face, y down,
z away from the camera; the nose tip has the most negative z. The head is a closed surface parameterised
by an azimuth θ (0 = facing the camera) and a height y; a finer patch of vertices covers the face.

Landmark orders (image-left first for a frontal face, i.e. the subject's right side first):

* WFLW-98: 0–32 face contour, 33–41 right brow (33–37 upper, outer→inner; 38–41 lower, inner→outer),
  42–50 left brow (42–46 upper inner→outer; 47–50 lower), 51–54 nose bridge (54 = tip), 55–59 nose base,
  60–67 right eye (60 outer corner, 61–63 upper lid, 64 inner corner, 65–67 lower lid), 68–75 left eye
  (68 inner corner, 72 outer corner), 76–87 outer lip (76 and 82 corners), 88–95 inner lip, 96–97 pupils.
* 300-W-68: the usual subset of WFLW-98 (:data:`WFLW98_TO_300W68`): every second contour point, the
  upper brow contours, nose, 6 points per eye, 12 outer and 8 inner lip points.
* 5 points (RetinaFace / ArcFace order): right-eye centre (image left), left-eye centre, nose tip, mouth
  corners — :data:`FIVE_FROM_98` = pupils 96, 97, tip 54, corners 76, 82 (:func:`five_from_68` for 68).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import Delaunay

#: 300-W-68 point k is WFLW-98 point ``WFLW98_TO_300W68[k]``.
WFLW98_TO_300W68 = np.array(
    list(range(0, 33, 2)) + [33, 34, 35, 36, 37, 42, 43, 44, 45, 46] + [51, 52, 53, 54, 55, 56, 57, 58, 59]
    + [60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75] + list(range(76, 96)), dtype=np.int64)
#: The 5 RetinaFace points as WFLW-98 indices: eye centres (pupils), nose tip, mouth corners.
FIVE_FROM_98 = np.array([96, 97, 54, 76, 82], dtype=np.int64)

_HEAD_PROFILE = np.array([  # y, half-width a(y), half-depth b(y) of the head's cross-section
    [-12.6, 0.0, 0.0], [-12.2, 2.6, 3.4], [-11.2, 4.8, 6.3], [-9.5, 6.4, 8.3], [-7.0, 7.2, 9.4],
    [-4.0, 7.45, 9.8], [-1.0, 7.45, 9.7], [1.5, 7.3, 9.4], [4.0, 6.9, 9.1], [6.0, 6.3, 8.8],
    [8.0, 5.4, 8.4], [9.8, 4.2, 7.9], [11.0, 2.9, 7.0], [11.8, 1.4, 5.2], [12.1, 0.0, 3.0]])
_SQUARENESS = 0.8  # superellipse exponent of the cross-section (< 1: flatter face and back of head)


def head_radii(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half-width a(y) and half-depth b(y) of the mean head's cross-section at heights y (any shape)."""
    return np.interp(y, _HEAD_PROFILE[:, 0], _HEAD_PROFILE[:, 1]), np.interp(y, _HEAD_PROFILE[:, 0], _HEAD_PROFILE[:, 2])


def surface_point(theta: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Points of the mean head's base surface (before facial relief): θ, y arrays → (..., 3) x, y, z."""
    a, b = head_radii(y)
    s, c = np.sin(theta), np.cos(theta)
    x = a * np.sign(s) * np.abs(s) ** _SQUARENESS
    z = -b * np.sign(c) * np.abs(c) ** _SQUARENESS
    return np.stack([x, np.asarray(y, dtype=np.float64) * np.ones_like(x), z], -1)


def theta_of_x(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The azimuth θ of the front surface point with frontal coordinates (x, y) (inverse of the x map)."""
    a, _ = head_radii(y)
    u = np.clip(np.asarray(x) / np.maximum(a, 1e-6), -0.999, 0.999)
    return np.sign(u) * np.arcsin(np.abs(u) ** (1 / _SQUARENESS))


def _arc(x0, x1, y0, y1, n, bulge):
    t = np.linspace(0, 1, n)
    return np.stack([x0 + (x1 - x0) * t, y0 + (y1 - y0) * t + bulge * np.sin(np.pi * t)], 1)


def mean_landmarks_2d() -> np.ndarray:
    """The mean face's 98 WFLW landmarks in frontal coordinates (x, y): (98, 2)."""
    pts = np.zeros((98, 2))
    phi = np.linspace(-np.pi / 2, np.pi / 2, 33)  # contour: right temple → chin → left temple
    pts[0:33] = np.stack([7.0 * np.sin(phi), 0.4 + 10.9 * np.cos(phi) ** 1.15], 1)
    for side, start in ((-1, 33), (1, 42)):
        outer, inner = 5.9 * side, 1.15 * side
        upper = _arc(outer, inner, -2.2, -2.45, 5, -0.55) if side < 0 else _arc(inner, outer, -2.45, -2.2, 5, -0.55)
        lower = _arc(inner, outer, -1.85, -1.75, 6, -0.4)[1:5] if side < 0 else _arc(outer, inner, -1.75, -1.85, 6, -0.4)[1:5]
        pts[start:start + 5], pts[start + 5:start + 9] = upper, lower
    pts[51:55] = np.stack([np.zeros(4), np.linspace(-0.6, 4.3, 4)], 1)
    pts[55:60] = np.stack([[-1.45, -0.75, 0.0, 0.75, 1.45], [4.85, 5.1, 5.25, 5.1, 4.85]], 1)
    for side, start, pupil in ((-1, 60, 96), (1, 68, 97)):
        cx, cy, hw, hh = 3.2 * side, 0.25, 1.4, 0.62
        left, right = cx - hw, cx + hw
        t = np.array([0.25, 0.5, 0.75])
        upper = np.stack([left + 2 * hw * t, cy - hh * np.sin(np.pi * t)], 1)
        lower = np.stack([right - 2 * hw * t, cy + 0.7 * hh * np.sin(np.pi * t)], 1)
        pts[start], pts[start + 1:start + 4], pts[start + 4], pts[start + 5:start + 8] = [left, cy], upper, [right, cy], lower
        pts[pupil] = [cx, cy + 0.02]
    mx, my, hw = 0.0, 7.2, 2.45
    pts[76], pts[82] = [mx - hw, my], [mx + hw, my]
    pts[77:82] = np.stack([[-1.6, -0.75, 0.0, 0.75, 1.6], [6.75, 6.5, 6.6, 6.5, 6.75]], 1)
    pts[83:88] = np.stack([[1.6, 0.8, 0.0, -0.8, -1.6], [7.8, 8.1, 8.2, 8.1, 7.8]], 1)
    pts[88], pts[92] = [mx - 2.05, my], [mx + 2.05, my]
    pts[89:92] = np.stack([[-0.9, 0.0, 0.9], [7.12, 7.15, 7.12]], 1)
    pts[93:96] = np.stack([[0.9, 0.0, -0.9], [7.22, 7.25, 7.22]], 1)
    return pts


@dataclass(frozen=True)
class FaceTopology:
    """The fixed head mesh.

    vertices: (V, 3) float64 mean-head positions (x right, y down, z away from the camera), before the
      facial relief of :func:`facelearn.data.synthface.model.mean_shape` is added;
    uv: (V, 2) the (θ, y) parameters of each vertex; frontal: (V, 2) the frontal (x, y) of each vertex;
    triangles: (T, 3) int64 vertex indices, wound counter-clockwise in the image for front-facing ones;
    coarse_triangles: (T', 3) a lower-detail triangulation of a vertex subset, for faces of a few pixels;
    landmarks98: (98,) vertex indices of the WFLW-98 landmarks; landmarks68 and five likewise.
    """

    vertices: np.ndarray
    uv: np.ndarray
    frontal: np.ndarray
    triangles: np.ndarray
    coarse_triangles: np.ndarray
    landmarks98: np.ndarray

    @property
    def landmarks68(self) -> np.ndarray:
        """(68,) vertex indices of the 300-W landmarks."""
        return self.landmarks98[WFLW98_TO_300W68]

    @property
    def five(self) -> np.ndarray:
        """(5,) vertex indices of the RetinaFace points (pupils, nose tip, mouth corners)."""
        return self.landmarks98[FIVE_FROM_98]

    @property
    def n_vertices(self) -> int:
        return len(self.vertices)


def _triangulate(uv: np.ndarray, keep: np.ndarray) -> np.ndarray:
    idx = np.flatnonzero(keep)
    plane = np.stack([uv[idx, 0] * 7.3, uv[idx, 1]], 1)
    tri = idx[Delaunay(plane).simplices]
    # orient each triangle counter-clockwise in (x, y-down) image terms for the front-facing surface
    p = plane[np.searchsorted(idx, tri)]
    cross = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 1, 1] - p[:, 0, 1]) * (p[:, 2, 0] - p[:, 0, 0])
    tri[cross < 0] = tri[cross < 0][:, [0, 2, 1]]
    return tri.astype(np.int64)


def build_topology(rows: int = 19, cols: int = 30, patch_step: float = 0.95) -> FaceTopology:
    """Build the head mesh: a (θ, y) grid over the head, a finer frontal patch over the face, and the 98
    landmarks as vertices, triangulated by Delaunay in the (θ, y) plane (the back seam is duplicated)."""
    lm = mean_landmarks_2d()
    lm_uv = np.stack([theta_of_x(lm[:, 0], lm[:, 1]), lm[:, 1]], 1)
    t = np.linspace(-1, 1, cols)
    thetas = np.sign(t) * np.pi * np.abs(t) ** 1.35
    ys = np.interp(np.linspace(0, 1, rows), [0, 0.3, 0.8, 1], [-12.6, -5.0, 9.5, 12.1])
    grid = np.array([(th, y) for y in ys for th in thetas])
    gx = surface_point(grid[:, 0], grid[:, 1])[:, 0]
    in_face = (np.abs(gx) < 6.0) & (grid[:, 1] > -4.2) & (grid[:, 1] < 11.0) & (np.abs(grid[:, 0]) < np.pi / 2)
    grid = grid[~in_face]
    px, py = np.meshgrid(np.arange(-5.7, 5.8, patch_step), np.arange(-3.8, 10.9, patch_step))
    patch = np.stack([px.ravel(), py.ravel()], 1)
    contour_y = np.interp(np.abs(patch[:, 0]), np.abs(lm[16:33, 0]), lm[16:33, 1])
    patch = patch[patch[:, 1] < contour_y + 0.6]
    near = np.min(np.linalg.norm(patch[:, None] - lm[None], axis=2), 1) < 0.45
    patch = patch[~near]
    patch_uv = np.stack([theta_of_x(patch[:, 0], patch[:, 1]), patch[:, 1]], 1)
    uv = np.concatenate([lm_uv, patch_uv, grid])
    verts = surface_point(uv[:, 0], uv[:, 1])
    frontal = verts[:, :2].copy()
    frontal[:98] = lm
    is_grid = np.zeros(len(uv), bool)
    is_grid[98 + len(patch):] = True
    coarse = np.zeros(len(uv), bool)
    coarse[:98] = True
    g_row, g_col = np.divmod(np.arange(rows * cols)[~in_face], cols)
    coarse[is_grid] = (g_row % 2 == 0) | (g_row == rows - 1)
    coarse[is_grid] &= (g_col % 2 == 0) | (g_col == cols - 1)
    # a coarse patch subset: every other patch row and column
    coarse[98:98 + len(patch)] = (np.round((patch[:, 0] + 5.7) / patch_step) % 2 == 0) & (np.round((patch[:, 1] + 3.8) / patch_step) % 2 == 0)
    return FaceTopology(verts, uv, frontal, _triangulate(uv, np.ones(len(uv), bool)), _triangulate(uv, coarse),
                        np.arange(98, dtype=np.int64))


#: The one mesh every SynthFace face uses (built on import; a few milliseconds).
TOPOLOGY = build_topology()


def five_from_98(points98: np.ndarray) -> np.ndarray:
    """The 5 RetinaFace points from WFLW-98 points: (..., 98, D) → (..., 5, D)."""
    return np.asarray(points98)[..., FIVE_FROM_98, :]


def five_from_68(points68: np.ndarray) -> np.ndarray:
    """The 5 RetinaFace points from 300-W-68 points: eye centres are the means of the 6 eye-contour points,
    nose tip 30, mouth corners 48 and 54. (..., 68, D) → (..., 5, D)."""
    p = np.asarray(points68, dtype=np.float64)
    return np.stack([p[..., 36:42, :].mean(-2), p[..., 42:48, :].mean(-2), p[..., 30, :], p[..., 48, :], p[..., 54, :]], -2)
