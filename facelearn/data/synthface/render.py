"""SynthFace's renderer: pose, perspective camera, Lambertian shading, painter's-algorithm rasterisation,
facial features, occluders and per-landmark visibility (book chapter "SynthFace").

A face is drawn straight into an image (``canvas``): its mesh is rotated by the pose R(yaw, pitch, roll),
placed in front of a pinhole camera, projected, scaled so that its face box has the requested height,
and its front-facing triangles are filled far-to-near (painter's algorithm) with the Lambertian colour

    c = albedo · (k_a + k_d · max(0, n·l))                                              (SynthFace eq. (2))

for the unit triangle normal n and light direction l. Eyes, brows, lips, nostrils, ears and glasses are
drawn as polygons through the projected landmark vertices, in depth order with the triangles, so the
landmarks are exactly where the features are drawn.

Pose convention (degrees): positive yaw turns the face towards the camera's (image's) right, positive
pitch lifts the chin (face looks up), positive roll turns the face clockwise in the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from facelearn.data.synthface.model import Expression, Identity, face_vertices
from facelearn.data.synthface.raster import SHIFT, paint_polygons
from facelearn.data.synthface.topology import TOPOLOGY

_ONE = 1 << SHIFT
_FRONT = np.clip(np.cos(TOPOLOGY.uv[:, 0]) * 3, 0, 1)
#: vertices on the forehead that, with the 98 landmarks, define the face box
FOREHEAD = np.flatnonzero((np.abs(TOPOLOGY.vertices[:, 1] + 5.0) < 0.9) & (np.abs(TOPOLOGY.uv[:, 0]) < 0.5))
_BOX_VERTS = np.concatenate([np.arange(98), FOREHEAD])
_FX, _FY = TOPOLOGY.frontal[:, 0], TOPOLOGY.frontal[:, 1]
_BEARD_ZONE = ((_FY > 5.6) & ~((np.abs(_FX) < 2.9) & (_FY > 6.2) & (_FY < 8.4))) & (np.abs(TOPOLOGY.uv[:, 0]) < 1.35)


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R = R_roll · R_pitch · R_yaw for angles in degrees (conventions in the module docstring): (3, 3)."""
    y, p, r = np.radians([yaw, pitch, roll])
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    rp = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
    rr = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rr @ rp @ ry


def hair_mask(identity: Identity) -> np.ndarray:
    """(V,) bool: the vertices the identity's hair style covers."""
    th, y = np.abs(TOPOLOGY.uv[:, 0]), TOPOLOGY.uv[:, 1]
    if identity.hair_style == 0:
        return (th > 1.7) & (y < 2.0) & (y > -6)  # a fringe of hair round the back
    front = -5.0 + 0.6 * identity.hairline
    side = -1.0 if identity.hair_style != 3 else 5.0
    back = 4.0 if identity.hair_style != 3 else 10.5
    limit = np.interp(th, [0, 0.9, 1.35, 1.75, np.pi], [front, front + 0.5, side, back, back])
    if identity.hair_style == 2:
        limit = limit + 1.6 * np.exp(-(th / 0.45) ** 2)
    return y < limit


@dataclass(frozen=True)
class _Look:
    """What a face's rendering takes from its identity alone, computed once per identity: the hair mask
    (V,), the hair's outward growth (V,) and the vertex colours (V, 3) RGB."""

    hair: np.ndarray
    grow: np.ndarray
    albedo: np.ndarray
    triangle_albedo: dict  # triangles' id → (T, 3) the mean of each triangle's three vertex colours


_LOOKS: dict[tuple, _Look] = {}
_MAX_LOOKS = 128  # identities kept (≈ 90 KB each with their vertex terms)


def _look(identity: Identity) -> _Look:
    """The identity's :class:`_Look`, from a cache keyed by the parameters it depends on."""
    key = (identity.hair_style, identity.hairline, identity.beard, *((a.dtype.str, a.tobytes()) for a in
                                                                     (identity.skin, identity.hair)))
    look = _LOOKS.get(key)
    if look is None:
        hair = hair_mask(identity)
        grow = np.where(hair, 0.35 + 0.25 * (identity.hair_style >= 2), 0.0)
        albedo = np.broadcast_to(identity.skin, (len(TOPOLOGY.vertices), 3)).copy()
        albedo[hair] = identity.hair
        if identity.beard:
            mix = 0.45 if identity.beard == 1 else 0.9
            albedo[_BEARD_ZONE & ~hair] = (1 - mix) * identity.skin + mix * identity.hair * 0.8
        if len(_LOOKS) >= _MAX_LOOKS:
            del _LOOKS[next(iter(_LOOKS))]
        look = _LOOKS[key] = _Look(hair, grow, albedo, {})
    return look


def _triangle_albedo(look: _Look, tri: np.ndarray) -> np.ndarray:
    """(T, 3): each triangle's mean vertex colour, summed in np.mean's order."""
    mean = look.triangle_albedo.get(id(tri))
    if mean is None:
        a = look.albedo
        mean = look.triangle_albedo[id(tri)] = (a[tri[:, 0]] + a[tri[:, 1]] + a[tri[:, 2]]) / 3
    return mean


@dataclass
class FaceRender:
    """What :func:`draw_face` drew: landmarks98 (98, 2) pixels; visible98 (98,) bool (not self-occluded,
    not under an occluder); box (4,) x1 y1 x2 y2; points (V, 2) every projected vertex; depth (V,)."""

    landmarks98: np.ndarray
    visible98: np.ndarray
    box: np.ndarray
    points: np.ndarray
    depth: np.ndarray


def project(identity: Identity, expression: Expression, pose: tuple[float, float, float], centre, height: float,
            distance: float = 80.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pose, perspective-project and place a face so its box (landmarks + forehead) has ``height`` pixels
    and is centred at ``centre``. → (points (V, 2) px, camera-space vertices (V, 3), box (4,))."""
    return _project(identity, expression, pose, centre, height, distance, _look(identity).grow)


def _project(identity: Identity, expression: Expression, pose, centre, height: float, distance: float,
             grow: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`project` with the identity's hair growth (:class:`_Look`) already computed."""
    v = face_vertices(identity, expression)
    back = v[:, 2] + 0.5
    r = np.hypot(v[:, 0], back) + 1e-6
    v[:, 0] += grow * v[:, 0] / r
    v[:, 2] += grow * back / r
    v[:, 1] -= grow * 0.6 * (v[:, 1] < -9)
    cam = v @ rotation(*pose).T
    z = cam[:, 2]
    z += distance
    # x and y one coordinate at a time: 1-D operations, without broadcasting over a length-2 axis
    x, y = cam[:, 0] / z, cam[:, 1] / z
    bx, by = x.take(_BOX_VERTS), y.take(_BOX_VERTS)  # x[_BOX_VERTS]: take is the same gather, quicker
    x_lo, x_hi, y_lo, y_hi = bx.min(), bx.max(), by.min(), by.max()
    scale = height / max(y_hi - y_lo, 1e-9)
    cx, cy = np.asarray(centre, dtype=np.float64)
    px, py = (x - (x_lo + x_hi) / 2) * scale + cx, (y - (y_lo + y_hi) / 2) * scale + cy
    bx, by = px.take(_BOX_VERTS), py.take(_BOX_VERTS)  # from the contiguous coordinates: take copies a strided view
    return np.stack([px, py], axis=1), cam, np.array([bx.min(), by.min(), bx.max(), by.max()])


def _shade(cam: np.ndarray, tri: np.ndarray, light: np.ndarray, ambient: float) -> tuple[np.ndarray, np.ndarray]:
    """SynthFace eq. (2)'s k_a + k_d · max(0, n·l) for each triangle (T,) and its mean depth (T,).

    cam: (V, 3) camera-space vertices; tri: (T, 3) vertex indices; light: (3,) unit direction. The corners
    are gathered coordinate by coordinate ((3, 3, T): contiguous rows), so the cross product and the
    normalisation are 1-D operations; the unit normals are stacked to (T, 3) for the product with l, and turned
    towards the camera after it: a sign flips a product's terms and its sum exactly."""
    (ax, bx, cx), (ay, by, cy), (az, bz, cz) = cam.T.take(tri.T, axis=1)
    u0, u1, u2 = bx - ax, by - ay, bz - az  # u = b - a
    v0, v1, v2 = cx - ax, cy - ay, cz - az  # v = c - a
    n0, n1, n2 = u1 * v2 - u2 * v1, u2 * v0 - u0 * v2, u0 * v1 - u1 * v0  # u × v
    norm = np.sqrt(n0 * n0 + n1 * n1 + n2 * n2) + 1e-12
    n0 /= norm
    n1 /= norm
    n2 /= norm
    outward = -np.sign(n2 + 1e-12)  # towards the camera for visible triangles
    n_dot_l = (np.stack([n0, n1, n2], axis=1) @ light) * outward
    return ambient + (1 - ambient) * np.clip(n_dot_l, 0, 1), (az + bz + cz) / 3


def _poly(p: np.ndarray) -> np.ndarray:
    return np.rint(p * _ONE).astype(np.int32)  # np.round(·) with 0 decimals is np.rint


def _point(p: np.ndarray) -> tuple[int, int]:
    """tuple(_poly(p)) for one point (2,), in Python ints: round() rounds halves to even as np.rint does."""
    x, y = p.tolist()
    return round(x * _ONE), round(y * _ONE)


def _fixed(corners) -> np.ndarray:
    """_poly(np.array(corners)) for (x, y) pairs of Python floats: (K, 2) int32, rounded as :func:`_point`."""
    return np.array([(round(x * _ONE), round(y * _ONE)) for x, y in corners], np.int32)


def _norm(v: np.ndarray) -> float:
    """np.linalg.norm of a 1-D vector, computed as it computes it (√(v·v)) without its argument handling."""
    return math.sqrt(v.dot(v))


def _signed_area(p: np.ndarray) -> float:
    """Shoelace area, > 0 for polygons counter-clockwise on screen (x right, y down: clockwise-looking)."""
    x, y = p[:, 0], p[:, 1]
    (x0, y0), (xn, yn) = p[0].tolist(), p[-1].tolist()  # Python floats: the same products, without NumPy scalars
    # the two sums by ndarray.dot: for vectors it is the function @ calls (the same BLAS dot), without the ufunc
    return 0.5 * (float(x[:-1].dot(y[1:])) - float(y[:-1].dot(x[1:])) + xn * y0 - yn * x0)


def _colour(rgb, k: float = 1.0) -> tuple:
    r, g, b = rgb.tolist() if isinstance(rgb, np.ndarray) else rgb  # Python floats: quicker than NumPy scalars
    b, g, r = int(float(b) * k), int(float(g) * k), int(float(r) * k)
    return (min(255, max(0, b)), min(255, max(0, g)), min(255, max(0, r)))  # canvas is BGR


_NOSTRILS = np.array([55, 59, 57])  # nose landmarks whose triangle's orientation decides whether nostrils show
_LOWER_LID = np.array([4, 5, 6, 7, 0])  # an eye's lower lid among its 8 outline points, corner 4 round to corner 0


def _features(canvas, identity: Identity, pts, cam, k: float, unit: float):
    """(depth, draw) pairs for the facial features, drawn as polygons through the landmark vertices.

    unit: pixels per model unit (≈ face box height / 16.3); the features' line widths scale with it."""
    L = pts[:98]
    z = cam[:98, 2]
    items = []
    down = (L[76] + L[82]) / 2 - (L[96] + L[97]) / 2
    down = down / (_norm(down) + 1e-9)
    skin = _colour(identity.skin, k)
    line = max(1, int(round(0.12 * unit)))

    def eye(i0, pupil):
        c = L[i0:i0 + 8]
        if _signed_area(c) <= 0.02 * unit * unit:
            return
        w = _norm(c[0] - c[4])
        opening = _norm(c[2] - c[6])
        lid = -down * 0.3 * w

        def draw():
            q = _poly(c)  # the eye's outline in fixed point; the lids below are its rows 0…4 and 4…7, 0
            cv2.fillConvexPoly(canvas, q, _colour([235, 232, 225], k), cv2.LINE_8, SHIFT)
            if opening > 0.15 * w:
                centre, r = _point(L[pupil]), 0.22 * w
                cv2.circle(canvas, centre, int(r * _ONE), _colour(identity.iris, k), -1, cv2.LINE_8, SHIFT)
                cv2.circle(canvas, centre, int(0.45 * r * _ONE), (15, 15, 15), -1, cv2.LINE_8, SHIFT)
                # repaint the lids over the iris' overflow: each lid, then itself backwards moved by the lid
                upper = np.concatenate([q[:5], _poly(c[4::-1] + lid)])
                lower = np.concatenate([q.take(_LOWER_LID, axis=0), _poly(c.take(_LOWER_LID[::-1], axis=0) - lid)])
                cv2.fillPoly(canvas, [upper], skin, cv2.LINE_8, SHIFT)
                cv2.fillPoly(canvas, [lower], skin, cv2.LINE_8, SHIFT)
            cv2.polylines(canvas, [q[:5]], False, (30, 25, 25), line, cv2.LINE_8, SHIFT)
        items.append((z[i0:i0 + 8].min() - 0.3, draw))

    def brow(i0):
        c = L[i0:i0 + 9]
        if _signed_area(c) > 0:
            items.append((z[i0:i0 + 9].min() - 0.3,
                           lambda: cv2.fillPoly(canvas, [_poly(c)], _colour(identity.brow_colour, k), cv2.LINE_8, SHIFT)))

    def mouth():
        q = _poly(L[76:96])  # the outer lip (rows 0…11) and the inner (12…19) in fixed point
        cv2.fillPoly(canvas, [q[:12]], _colour(identity.lips, k), cv2.LINE_8, SHIFT)
        inner = L[88:96]
        if _signed_area(inner) > 0.9 * unit * unit:
            cv2.fillPoly(canvas, [q[12:]], _colour([70, 25, 25], k), cv2.LINE_8, SHIFT)
            teeth = np.concatenate([q[12:17], _poly(inner[4::-1] + down * 0.45 * unit)])
            cv2.fillPoly(canvas, [teeth], _colour([230, 225, 210], k), cv2.LINE_8, SHIFT)
        cv2.polylines(canvas, [q[12:17]], False, _colour(identity.lips, 0.55 * k), line, cv2.LINE_8, SHIFT)

    def nostrils():
        for a, b in ((55, 56), (59, 58)):
            c = 0.4 * (L[a] + L[b]) + 0.2 * L[54]
            ax = max(0.28 * unit, 0.3)
            cv2.ellipse(canvas, _point(c), (int(ax * _ONE), int(0.6 * ax * _ONE)), 0, 0, 360,
                        _colour(identity.skin, 0.35 * k), -1, cv2.LINE_8, SHIFT)

    def glasses():
        across = L[97] - L[96]
        ang = float(np.degrees(np.arctan2(across[1], across[0])))
        for eye_i, side in ((96, 1), (97, -1)):
            if _signed_area(L[(60 if eye_i == 96 else 68):(68 if eye_i == 96 else 76)]) <= 0:
                continue
            axes = (int(2.0 * unit * _ONE * min(1.0, _norm(across) / (6.4 * unit) + 0.2)), int(1.45 * unit * _ONE))
            if identity.glasses == 2:
                cv2.ellipse(canvas, _point(L[eye_i]), axes, ang, 0, 360, (20, 20, 25), -1, cv2.LINE_8, SHIFT)
            cv2.ellipse(canvas, _point(L[eye_i]), axes, ang, 0, 360, _colour(identity.glasses_colour), line,
                        cv2.LINE_8, SHIFT)
        cv2.line(canvas, _point(L[96] + 0.3 * across), _point(L[97] - 0.3 * across),
                 _colour(identity.glasses_colour), line, cv2.LINE_8, SHIFT)

    eye(60, 96)
    eye(68, 97)
    brow(33)
    brow(42)
    if _signed_area(L[76:88]) > 0:
        items.append((z[76:88].min() - 0.3, mouth))
    if _signed_area(L.take(_NOSTRILS, axis=0)) <= 0 and unit > 1.0:
        items.append((z[55:60].min() - 0.2, nostrils))
    if identity.glasses:
        items.append((z[51] - 1.5, glasses))
    return items


def _occluded(pts: np.ndarray, cam: np.ndarray, tri: np.ndarray, front: np.ndarray, query: np.ndarray) -> np.ndarray:
    """(len(query),) bool: the query vertices hidden behind a front-facing triangle (self-occlusion)."""
    t = tri.take(np.flatnonzero(front), axis=0)  # tri[front]; take, as below, is the quicker gather
    a, b, c = pts.take(t[:, 0], axis=0), pts.take(t[:, 1], axis=0), pts.take(t[:, 2], axis=0)
    q = pts.take(query, axis=0)[:, None, :]
    v0, v1, v2 = b - a, c - a, q - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    den = np.where(np.abs(den) < 1e-9, np.inf, den)
    u = (v2[..., 0] * v1[:, 1] - v1[:, 0] * v2[..., 1]) / den
    w = (v0[:, 0] * v2[..., 1] - v2[..., 0] * v0[:, 1]) / den
    inside = (u >= 0) & (w >= 0) & (u + w <= 1)
    zt = cam[t[:, 0], 2] + u * (cam[t[:, 1], 2] - cam[t[:, 0], 2]) + w * (cam[t[:, 2], 2] - cam[t[:, 0], 2])
    own = (t[None, :, :] == query[:, None, None]).any(-1)
    return (inside & ~own & (zt < cam[query, 2][:, None] - 0.25)).any(1)


def _far_to_near(depth: np.ndarray) -> np.ndarray:
    """np.argsort(-depth, kind="stable") for depth (N,): the indices from the largest depth to the smallest,
    ties in index order. NumPy's default sort is ~4x quicker than its stable one; where no two keys are equal
    (and none is NaN) the sorted order is unique, so both give it, and only keys with ties are sorted again."""
    key = -depth
    order = key.argsort()
    ranked = key.take(order)
    if len(ranked) and (math.isnan(ranked[-1]) or (ranked[1:] == ranked[:-1]).any()):  # NaN sorts last
        return key.argsort(kind="stable")
    return order


def draw_face(canvas: np.ndarray, identity: Identity, expression: Expression, pose: tuple[float, float, float],
              centre, height: float, *, light: np.ndarray | None = None, ambient: float = 0.45,
              clothes: np.ndarray | None = None, visibility: str = "all") -> FaceRender:
    """Render one face into ``canvas`` ((H, W, 3) uint8 BGR, modified in place) and return its ground truth.

    pose: (yaw, pitch, roll) degrees; centre: (x, y) of the face box in pixels; height: its height in pixels.
    Faces under 48 px use the coarse triangulation. ``visibility``: "all" tests the 98 landmarks for
    self-occlusion, "five" only the 5 RetinaFace points (the rest are reported visible), "none" none.
    """
    look = _look(identity)
    pts, cam, box = _project(identity, expression, pose, centre, height, 80.0, look.grow)
    tri = TOPOLOGY.triangles if height >= 48 else TOPOLOGY.coarse_triangles
    light = np.array([0.3, -0.4, -1.0]) if light is None else np.asarray(light, dtype=np.float64)
    light = light / _norm(light)
    if clothes is not None:
        _draw_body(canvas, pts, cam, pose, height, identity, clothes)
    p = pts.take(tri, axis=0)  # pts[tri]; take, as below, is the same gather ~5x quicker
    front = ((p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 1, 1] - p[:, 0, 1]) * (p[:, 2, 0] - p[:, 0, 0])) > 0
    shown_at = np.flatnonzero(front)
    shown = tri.take(shown_at, axis=0)  # only the front-facing triangles are shaded and drawn
    intensity, depth = _shade(cam, shown, light, ambient)
    tri_col = _triangle_albedo(look, tri).take(shown_at, axis=0) * intensity[:, None]
    k = float(ambient + (1 - ambient) * max(0.0, -light[2]) * 0.9)
    items = _features(canvas, identity, pts, cam, k, height / 16.3)
    ear_colour, face_centre = _colour(identity.skin * 0.85, k), pts[:98].sum(0) / 98  # np.mean, quicker
    items += [_ear(canvas, cam, pts, side, ear_colour, face_centre) for side in (-1, 1)]
    order = _far_to_near(np.concatenate([depth, [d for d, _ in items]]))
    n_tri = len(shown)
    is_tri = order < n_tri
    tri_order = order[is_tri]
    bgr = np.clip(tri_col.take(tri_order, axis=0)[:, ::-1], 0, 255).astype(np.uint8)
    # the features go between runs of triangles: the r-th is drawn after the triangles painted before it
    cuts = np.flatnonzero(~is_tri) - np.arange(len(items))
    paint_polygons(canvas, p.take(shown_at[tri_order], axis=0), bgr, cuts.tolist(),
                   [items[i - n_tri][1] for i in order[~is_tri].tolist()])
    lm = pts[:98].copy()
    vis = np.ones(98, bool)
    if visibility != "none":
        query = np.arange(98) if visibility == "all" else TOPOLOGY.five
        vis[query] = ~_occluded(pts, cam, tri, front, query)
    return FaceRender(lm, vis, box, pts, cam[:, 2])


_COS9, _SIN9 = np.cos(np.linspace(0, 2 * np.pi, 10)[:-1]), np.sin(np.linspace(0, 2 * np.pi, 10)[:-1])
_OVAL = tuple(zip(_COS9.tolist(), _SIN9.tolist()))  # the oval's 9 (cos, sin) pairs as Python floats
_EAR = {side: np.flatnonzero((np.abs(TOPOLOGY.uv[:, 0] - side * np.pi / 2) < 0.25) & (np.abs(TOPOLOGY.uv[:, 1] - 1.5) < 2.0))
        for side in (-1, 1)}
#: each ear's lowest and highest vertex on the head (its long axis)
_EAR_ENDS = {side: (int(idx[np.argmax(TOPOLOGY.uv[idx, 1])]), int(idx[np.argmin(TOPOLOGY.uv[idx, 1])]))
             for side, idx in _EAR.items()}


def _ear(canvas, cam, pts, side: int, colour, face_centre):
    """(depth, draw) for the ear on ``side`` (-1: the image-left side of a frontal face): an oval that sticks
    out sideways from the head's side vertices; face_centre: the mean of the 98 landmarks (2,).

    The oval's 9 corners, centre + 0.12 h·o + cos θ·(0.22 h·o) + sin θ·(0.45 h·a) for the outward and along
    directions o and a, are summed in Python floats in that order."""
    idx = _EAR[side]
    centre = pts.take(idx, axis=0).sum(0) / len(idx)  # np.mean's sum and division, as below
    low, high = _EAR_ENDS[side]
    axis = pts[low] - pts[high]
    h = max(_norm(axis), 1.0)
    along = axis / h
    outward = centre - face_centre
    outward -= along * outward.dot(along)  # outward @ along, as in _signed_area
    outward /= _norm(outward) + 1e-9
    (cx, cy), (ox, oy), (ax, ay) = centre.tolist(), outward.tolist(), along.tolist()
    bx, by = cx + ox * 0.12 * h, cy + oy * 0.12 * h
    ox, oy, ax, ay = ox * 0.22 * h, oy * 0.22 * h, ax * 0.45 * h, ay * 0.45 * h
    oval = _fixed([(bx + c * ox + s * ax, by + c * oy + s * ay) for c, s in _OVAL])
    depth = cam[:, 2].take(idx).sum() / len(idx) + 0.8
    return depth, lambda: cv2.fillConvexPoly(canvas, oval, colour, cv2.LINE_8, SHIFT)


def _draw_body(canvas, pts, cam, pose, height, identity, clothes):
    """Neck and shoulders behind the head, following its roll and a little of its yaw.

    The corners are sums of 2-vectors written out in Python floats: the same operations, in the same order,
    as NumPy's elementwise arithmetic, without its per-call overhead."""
    cx, cy = pts[16].tolist()  # the chin
    up = pts[16] - pts[53]
    norm = _norm(up) + 1e-9
    ux, uy = up.tolist()
    ux, uy = ux / norm, uy / norm
    sx, sy = -uy, ux  # side: up turned by 90°
    u = height / 16.0
    neck = [(cx + sx * 3.0 * u - ux * 4 * u, cy + sy * 3.0 * u - uy * 4 * u),
            (cx - sx * 3.0 * u - ux * 4 * u, cy - sy * 3.0 * u - uy * 4 * u),
            (cx - sx * 3.2 * u + ux * 6 * u, cy - sy * 3.2 * u + uy * 6 * u),
            (cx + sx * 3.2 * u + ux * 6 * u, cy + sy * 3.2 * u + uy * 6 * u)]
    neck, skin = _fixed(neck), _colour(identity.skin * 0.75)
    cv2.fillConvexPoly(canvas, neck, skin, cv2.LINE_8, SHIFT)
    hx, hy = cx + ux * 4.5 * u, cy + uy * 4.5 * u  # the shoulders' centre
    body = [(hx + sx * 4 * u, hy + sy * 4 * u), (hx - sx * 4 * u, hy - sy * 4 * u),
            (hx - sx * 11 * u + ux * 5 * u, hy - sy * 11 * u + uy * 5 * u),
            (hx - sx * 12 * u + ux * 30 * u, hy - sy * 12 * u + uy * 30 * u),
            (hx + sx * 12 * u + ux * 30 * u, hy + sy * 12 * u + uy * 30 * u),
            (hx + sx * 11 * u + ux * 5 * u, hy + sy * 11 * u + uy * 5 * u)]
    cv2.fillPoly(canvas, [_fixed(body)], _colour(clothes), cv2.LINE_8, SHIFT)
    cv2.fillConvexPoly(canvas, neck, skin, cv2.LINE_8, SHIFT)
