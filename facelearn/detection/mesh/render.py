"""A differentiable renderer in pure PyTorch: camera, Lambertian light and soft rasterisation (book chapter
"The dense regression branch").

RetinaFace's pixel loss compares a *rendered* face with the image, so the renderer must pass gradients from
pixels back to vertices, colours, camera and light. Three stages:

1. **Projection** with 7 camera parameters (Deng et al. 2020): Euler angles (yaw, pitch, roll; SynthFace's
   convention, :func:`euler_rotation`), translation t and focal length f,

       X_c = R X + t,    u = S/2 · (1 + f X_c/Z_c),   v = S/2 · (1 + f Y_c/Z_c)                (render eq. (1))

   for an S × S image (x right, y down, z away from the camera).
2. **Lambertian shading** with 9 light parameters: a point light's position p, its colour c_l and the
   ambient colour c_a, per vertex with the area-weighted vertex normal n:

       c = albedo ⊙ (c_a + c_l · max(0, n · (p − X_c)/‖p − X_c‖))                           (render eq. (2))

3. **Soft rasterisation** (Liu et al. 2019, "Soft Rasterizer"). A hard rasteriser's pixel colour is a step
   function of the vertex positions: its gradient is zero almost everywhere. SoftRas makes each triangle j's
   coverage of pixel p a smooth probability of the signed squared distance d_j(p) to its edges,

       D_j(p) = sigmoid(δ_j(p) · d_j(p)² / σ),   δ = +1 inside, −1 outside                      (render eq. (3))

   and replaces the z-buffer by a softmax over depth z̃_j ∈ [0, 1] (1 = nearest) with a background term,

       I(p) = Σ_j w_j C_j(p) + w_b C_b,  w_j = D_j e^{z̃_j/γ} / (Σ_k D_k e^{z̃_k/γ} + e^{ε/γ})     (render eq. (4))

   with C_j(p), z̃_j(p) interpolated with the barycentric coordinates of p (clipped to the triangle), and
   the silhouette A(p) = 1 − Π_j (1 − D_j(p)). As σ, γ → 0 this becomes the hard rasteriser.

Why this and not a dense pixel × triangle product: 1,192 triangles × 112² pixels is 15 M pairs per face. A
pixel only feels triangles within a few √σ of it (D ≈ 10⁻⁴ at 3√σ), so each front-facing triangle (back
faces of the closed head are culled) is paired only with the pixels of its bounding box grown by that
margin — about 7·10⁴ pairs per face at 112 × 112 instead of 1.5·10⁷ (``benchmarks/render_speed.py``) — and
the per-pixel softmax is a scatter over those pairs. The pair list is built without gradients (a discrete
choice, like SoftRas's own distance cut-off); everything computed on the pairs is differentiable.
Interpolation is screen-space linear (not perspective-corrected): at face distances (Z ≈ 80, depth range
≈ 10) the difference is below a percent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def _canonical_framing(distance: float, margin: float) -> tuple[float, float]:
    """(t_y, f) that put the average SynthFace face's box (98 landmarks + forehead), frontal at ``distance``,
    centred in the image and 1/``margin`` of its height, perspective included."""
    from dataclasses import replace

    from facelearn.data.synthface import face_vertices, sample_identity
    from facelearn.data.synthface.render import FOREHEAD, TOPOLOGY

    mean = replace(sample_identity(np.random.default_rng(0)), shape=np.zeros(14), brow_thickness=1.0)
    v = face_vertices(mean)[np.r_[TOPOLOGY.landmarks98, FOREHEAD]]
    t_y = 0.0
    for _ in range(20):  # fixed point: shift until the projected box is centred
        proj = (v[:, 1] + t_y) / (v[:, 2] + distance)
        t_y -= (proj.max() + proj.min()) / 2 * distance
    proj = (v[:, 1] + t_y) / (v[:, 2] + distance)
    return float(t_y), float(2.0 / (margin * (proj.max() - proj.min())))


#: SynthFace's camera distance; the crop around a face box is CROP_MARGIN times its height; CANONICAL_SHIFT
#: (t_y) and CANONICAL_FOCAL frame the average face's box centred at 1/CROP_MARGIN of the image: raw head
#: outputs of 0 (:func:`decode_camera`) give a frontal average face that fills its crop like the box does.
CANONICAL_DISTANCE = 80.0
CROP_MARGIN = 1.25
CANONICAL_SHIFT, CANONICAL_FOCAL = _canonical_framing(CANONICAL_DISTANCE, CROP_MARGIN)


def euler_rotation(angles: torch.Tensor) -> torch.Tensor:
    """R = R_roll R_pitch R_yaw (SynthFace's ``rotation``) for angles (B, 3) yaw, pitch, roll in radians → (B, 3, 3)."""
    y, p, r = angles.unbind(-1)
    one, zero = torch.ones_like(y), torch.zeros_like(y)
    ry = torch.stack([torch.cos(y), zero, -torch.sin(y), zero, one, zero, torch.sin(y), zero, torch.cos(y)], -1)
    rp = torch.stack([one, zero, zero, zero, torch.cos(p), torch.sin(p), zero, -torch.sin(p), torch.cos(p)], -1)
    rr = torch.stack([torch.cos(r), -torch.sin(r), zero, torch.sin(r), torch.cos(r), zero, zero, zero, one], -1)
    shape = angles.shape[:-1] + (3, 3)
    return rr.view(shape) @ rp.view(shape) @ ry.view(shape)


def decode_camera(raw: torch.Tensor) -> torch.Tensor:
    """Head outputs (B, 7) → camera (B, 7): angles = raw[0:3] rad, t = (10 raw[3], 10 raw[4] + CANONICAL_SHIFT,
    80 + 10 raw[5]), f = CANONICAL_FOCAL · exp(raw[6]) (zeros: a frontal face box centred in its crop)."""
    t = 10.0 * raw[:, 3:6] + raw.new_tensor([0.0, CANONICAL_SHIFT, CANONICAL_DISTANCE])
    return torch.cat([raw[:, :3], t, CANONICAL_FOCAL * torch.exp(raw[:, 6:7].clamp(-3, 3))], 1)


def decode_light(raw: torch.Tensor) -> torch.Tensor:
    """Head outputs (B, 9) → light (B, 9): position 100 raw[0:3] (0: at the camera), colour 0.6 + raw[3:6],
    ambient 0.4 + raw[6:9]."""
    return torch.cat([100.0 * raw[:, :3], 0.6 + raw[:, 3:6], 0.4 + raw[:, 6:9]], 1)


def project(vertices: torch.Tensor, camera: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Render eq. (1). vertices (B, V, 3) model units; camera (B, 7) yaw pitch roll (rad), t (3), f.
    Returns (camera-space vertices (B, V, 3), pixel coordinates (B, V, 2) with pixel centres at i + 0.5)."""
    cam = vertices @ euler_rotation(camera[:, :3]).transpose(1, 2) + camera[:, None, 3:6]
    z = cam[..., 2:3].clamp(min=1e-3)
    pts = size / 2 * (1 + camera[:, None, 6:7] * cam[..., :2] / z)
    return cam, pts


def vertex_normals(cam: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Outward unit vertex normals (B, V, 3): sum of the adjacent triangles' area-weighted normals.
    SynthFace's triangles are counter-clockwise on screen seen from outside, so n = (c − a) × (b − a)."""
    a, b, c = cam[:, faces[:, 0]], cam[:, faces[:, 1]], cam[:, faces[:, 2]]
    n = torch.cross(c - a, b - a, dim=-1)
    acc = torch.zeros_like(cam)
    for k in range(3):
        acc = acc.index_add(1, faces[:, k], n)
    return F.normalize(acc, dim=-1, eps=1e-12)


def shade(albedo: torch.Tensor, cam: torch.Tensor, normals: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """Render eq. (2). albedo (B, V, 3) in [0, 1]; light (B, 9) position, colour, ambient → (B, V, 3)."""
    direction = F.normalize(light[:, None, 0:3] - cam, dim=-1, eps=1e-12)
    lambert = (normals * direction).sum(-1, keepdim=True).clamp(min=0)
    return albedo * (light[:, None, 6:9] + light[:, None, 3:6] * lambert)


def _pairs(tri: torch.Tensor, keep: torch.Tensor, size: int, margin: float):
    """Without gradients: (triangle index into B·T, pixel x, pixel y) for every pixel centre within ``margin``
    of a kept triangle's bounding box."""
    with torch.no_grad():
        lo = torch.ceil(tri.amin(2) - margin - 0.5).clamp(0, size - 1).long()   # (B, T, 2)
        hi = torch.floor(tri.amax(2) + margin - 0.5).clamp(0, size - 1).long()
        wh = (hi - lo + 1).clamp(min=0)
        count = (wh[..., 0] * wh[..., 1] * keep).flatten()
        ids = torch.repeat_interleave(torch.arange(count.numel(), device=tri.device), count)
        start = torch.cumsum(count, 0) - count
        offset = torch.arange(ids.numel(), device=tri.device) - start[ids]
        w = wh.flatten(0, 1)[ids, 0]
        lo = lo.flatten(0, 1)[ids]
        return ids, lo[:, 0] + offset % w, lo[:, 1] + offset // w


def _edge(a: torch.Tensor, b: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return (b[:, 0] - a[:, 0]) * (q[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (q[:, 0] - a[:, 0])


def _segment_d2(a: torch.Tensor, b: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    ab, aq = b - a, q - a
    t = ((aq * ab).sum(-1) / (ab * ab).sum(-1).clamp(min=1e-12)).clamp(0, 1)
    return ((aq - t[:, None] * ab) ** 2).sum(-1)


@dataclass
class Rendered:
    """image (B, 3, S, S) in [0, 1]-ish RGB; alpha (B, 1, S, S) soft silhouette; pairs: pixel–triangle pairs."""

    image: torch.Tensor
    alpha: torch.Tensor
    pairs: int


def rasterize(pts: torch.Tensor, depth: torch.Tensor, colours: torch.Tensor, faces: torch.Tensor, size: int, *,
              sigma: float = 0.5, gamma: float = 0.01, eps: float = 1e-3,
              background: torch.Tensor | None = None, visible: torch.Tensor | None = None) -> Rendered:
    """Render eqs. (3), (4). pts (B, V, 2) pixels; depth (B, V) camera Z; colours (B, V, 3); faces (T, 3);
    sigma: softness in pixels²; gamma: depth softness; background (B, 3) colour (default black); visible (B,)
    bool: the images to draw (default all), the others keep no triangle, so they are their background and
    cost no pixel–triangle pair."""
    bsz, n_pix = pts.shape[0], size * size
    tri, tz, tc = pts[:, faces], depth[:, faces], colours[:, faces]       # (B, T, 3, 2|·|3)
    with torch.no_grad():
        e1, e2 = tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]
        front = (e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]) > 0  # counter-clockwise on screen
        keep = front & (tz > 1e-3).all(-1)
        if visible is not None:
            keep = keep & visible[:, None]
    znear, zfar = depth.amin(1), depth.amax(1)  # z̃'s range: per image, differentiable like the rest
    ids, px, py = _pairs(tri, keep, size, 3.0 * sigma ** 0.5)
    b = torch.div(ids, faces.shape[0], rounding_mode="floor")
    q = torch.stack([px, py], -1).to(pts.dtype) + 0.5
    v = tri.flatten(0, 1)[ids]                                            # (P, 3, 2)
    a_, b_, c_ = v[:, 0], v[:, 1], v[:, 2]
    area = _edge(a_, b_, c_)
    lam = torch.stack([_edge(b_, c_, q), _edge(c_, a_, q), _edge(a_, b_, q)], -1) / area[:, None]
    inside = (lam >= 0).all(-1)
    d2 = torch.minimum(torch.minimum(_segment_d2(a_, b_, q), _segment_d2(b_, c_, q)), _segment_d2(c_, a_, q))
    s = torch.where(inside, d2, -d2) / sigma
    lam = lam.clamp(min=0)
    lam = lam / lam.sum(-1, keepdim=True).clamp(min=1e-12)
    z = (lam * tz.flatten(0, 1)[ids]).sum(-1)
    zt = (zfar[b] - z) / (zfar[b] - znear[b]).clamp(min=1e-6)
    colour = (lam[..., None] * tc.flatten(0, 1)[ids]).sum(1)             # (P, 3)
    pid = b * n_pix + py * size + px
    logit = F.logsigmoid(s) + zt / gamma
    bg_logit = torch.full((bsz * n_pix,), eps / gamma, dtype=pts.dtype, device=pts.device)
    m = bg_logit.scatter_reduce(0, pid, logit.detach(), "amax", include_self=True)
    e = torch.exp(logit - m[pid])
    e_bg = torch.exp(bg_logit - m)
    denom = e_bg.index_add(0, pid, e)
    bg = background if background is not None else pts.new_zeros(bsz, 3)
    num = (e_bg[:, None] * bg.repeat_interleave(n_pix, 0)).index_add(0, pid, e[:, None] * colour)
    image = (num / denom[:, None]).view(bsz, size, size, 3).permute(0, 3, 1, 2)
    log_empty = pts.new_zeros(bsz * n_pix).index_add(0, pid, F.logsigmoid(-s))
    alpha = (1 - torch.exp(log_empty)).view(bsz, 1, size, size)
    return Rendered(image, alpha, int(ids.numel()))


def render(mesh: torch.Tensor, camera: torch.Tensor, light: torch.Tensor, faces: torch.Tensor, size: int = 64, *,
           sigma: float = 0.5, gamma: float = 0.01, background: torch.Tensor | None = None,
           visible: torch.Tensor | None = None) -> Rendered:
    """R(mesh, P_cam, P_ill): mesh (B, V, 6) xyz + rgb; camera (B, 7) and light (B, 9) physical parameters
    (see :func:`decode_camera`, :func:`decode_light`); faces (T, 3) long; visible (B,) bool, see
    :func:`rasterize` → :class:`Rendered` S × S image."""
    faces = faces.to(mesh.device)
    cam, pts = project(mesh[..., :3], camera, size)
    colours = shade(mesh[..., 3:], cam, vertex_normals(cam, faces), light)
    return rasterize(pts, cam[..., 2], colours, faces, size, sigma=sigma, gamma=gamma, background=background,
                     visible=visible)
