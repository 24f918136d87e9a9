"""Measuring the dense branch (book chapter "The dense regression branch"): SynthFace scenes with their true
meshes, the 3-D error of a decoded mesh after similarity alignment, and the per-face landmark and 3-D errors
of a RetinaFace's heads read at the best anchor of each ground-truth face.

The 3-D error aligns the predicted mesh to the true one with the least-squares similarity transform
(Umeyama 1991: rotation, scale, translation — a 2-D image cannot fix the absolute scale and distance), then
averages the vertex distances over the face region (the front of the head) and divides by the true
inter-ocular (pupil-to-pupil) distance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from facelearn.detection.mesh.decoder import PUPILS, true_mesh


def face_region() -> np.ndarray:
    """Vertex indices of the face (front of the head, azimuth within ±60°)."""
    from facelearn.data.synthface import TOPOLOGY

    return np.flatnonzero(np.abs(TOPOLOGY.uv[:, 0]) < np.radians(60))


def similarity_align(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """source (N, 3) mapped by the similarity s R x + t minimising Σ‖s R x_i + t − y_i‖² (Umeyama 1991)."""
    mu_x, mu_y = source.mean(0), target.mean(0)
    x, y = source - mu_x, target - mu_y
    u, d, vt = np.linalg.svd(y.T @ x / len(x))
    sign = np.ones(3)
    sign[2] = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag(sign) @ vt
    scale = (d * sign).sum() / (x ** 2).sum(1).mean()
    return scale * x @ rot.T + mu_y


def mesh_error(pred: np.ndarray, true: np.ndarray, vertices: np.ndarray | None = None) -> float:
    """Mean distance of aligned ``pred`` (V, 3) to ``true`` (V, 3) over ``vertices`` (default: the face
    region), divided by the true inter-ocular distance."""
    idx = face_region() if vertices is None else vertices
    aligned = similarity_align(pred[idx], true[idx])
    return float(np.linalg.norm(aligned - true[idx], axis=1).mean() / np.linalg.norm(true[PUPILS[0]] - true[PUPILS[1]]))


@dataclass
class DenseScene:
    """image (H, W, 3) uint8 RGB; boxes (N, 4) x1 y1 x2 y2; landmarks (N, 5, 2); meshes (N, V, 6) true."""

    image: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    meshes: np.ndarray


def dense_scenes(n: int, size: int = 256, seed: int = 0, faces: tuple[int, int] = (1, 3)) -> list[DenseScene]:
    """n SynthFace detection scenes (``render_scene``) of size × size with their faces' true meshes."""
    from facelearn.data.synthface import five_from_98, render_scene

    rng = np.random.default_rng([seed, 13])
    out = []
    for _ in range(n):
        bgr, sf = render_scene(rng, size, size, n_faces=int(rng.integers(faces[0], faces[1] + 1)))
        meshes = np.stack([np.concatenate(true_mesh(f.identity, f.expression), 1) for f in sf])
        out.append(DenseScene(bgr[..., ::-1].copy(), np.stack([f.render.box for f in sf]),
                              np.stack([five_from_98(f.render.landmarks98) for f in sf]), meshes))
    return out


@dataclass
class HeadErrors:
    """Per evaluated face: ``nme`` 5-point landmark error / inter-ocular distance; ``mesh`` 3-D error (NaN
    without a dense head); ``mean_face`` the 3-D error of the average face (the branch's starting point);
    ``examples``: (crop, render) pairs of the first faces, (3, S, S) tensors."""

    nme: np.ndarray
    mesh: np.ndarray
    mean_face: np.ndarray
    examples: list = field(default_factory=list)


@torch.no_grad()
def evaluate_heads(model: torch.nn.Module, scenes: list[DenseScene], branch=None, min_face: float = 24.0,
                   examples: int = 6) -> HeadErrors:
    """Read ``model``'s heads at each ground-truth face's best anchor (faces ≥ ``min_face`` px tall)."""
    from torchvision.ops import box_iou

    from facelearn.detection.box_coding import cxcywh_to_xyxy, decode_landmarks
    from facelearn.detection.mesh.branch import face_crops

    model.eval()
    dev = next(model.parameters()).device
    nme, mesh, mean_face, shown = [], [], [], []
    mean_mesh = None
    for scene in scenes:
        keep = (scene.boxes[:, 3] - scene.boxes[:, 1]) >= min_face
        if not keep.any():
            continue
        image = torch.from_numpy(scene.image).permute(2, 0, 1)[None].float().div(255).to(dev)
        out = model(model.preprocess(image))
        anchors = model.anchors(image.shape[-2:], device=dev)
        boxes = torch.tensor(scene.boxes[keep], dtype=torch.float32, device=dev)
        best = box_iou(boxes, cxcywh_to_xyxy(anchors)).argmax(1)  # each face's best-overlapping anchor
        pts = decode_landmarks(out["landmarks"][0, best].float(), anchors[best]).view(-1, 5, 2).cpu().numpy()
        true_pts = scene.landmarks[keep]
        iod = np.linalg.norm(true_pts[:, 0] - true_pts[:, 1], axis=1)
        nme.extend((np.linalg.norm(pts - true_pts, axis=2).mean(1) / iod).tolist())
        true_meshes = scene.meshes[keep]
        if branch is not None and "dense" in out:
            raw = out["dense"][0, best].float()
            pred = branch.decode(raw)[0].cpu().numpy()
            if mean_mesh is None:
                mean_mesh = branch.decode(torch.zeros(1, raw.shape[1], device=dev))[0][0].cpu().numpy()
            for p, t in zip(pred, true_meshes):
                mesh.append(mesh_error(p[:, :3], t[:, :3]))
                mean_face.append(mesh_error(mean_mesh[:, :3], t[:, :3]))
            if len(shown) < examples:
                crops = face_crops(image, boxes, torch.zeros(len(boxes), dtype=torch.long, device=dev), branch.size)
                renders = branch.render(raw, crops.mean((2, 3))).image
                shown.extend(zip(crops.cpu(), renders.clamp(0, 1).cpu()))
        else:
            mesh.extend([np.nan] * len(true_meshes))
            mean_face.extend([np.nan] * len(true_meshes))
    return HeadErrors(np.array(nme), np.array(mesh), np.array(mean_face), shown[:examples])


@dataclass
class RenderPair:
    """SynthFace's drawing of a face (``image`` (S, S, 3) uint8 RGB on black) and our render of its true mesh
    with its true pose (``rendered``); ``mesh`` (V, 6), ``camera`` (7,) and the masks' ``iou``."""

    image: np.ndarray
    rendered: object
    mesh: torch.Tensor
    camera: torch.Tensor
    iou: float


def synthface_render_pair(seed: int, size: int = 112, height: float = 70.0) -> RenderPair:
    """Draw a random SynthFace face (random pose within ±40° yaw, ±20° pitch and roll) and render its true
    mesh with the same camera: SynthFace's pixels are scale · (X/Z, Y/Z) + offset, which is render eq. (1)
    with f = scale / (S/2) once the drawing is centred at S/2 + the offset."""
    from facelearn.data.synthface import TOPOLOGY, draw_face, sample_expression, sample_identity
    from facelearn.data.synthface.render import project as synthface_project
    from facelearn.detection.mesh.render import decode_light, render

    rng = np.random.default_rng(seed)
    identity, expression = sample_identity(rng), sample_expression(rng)
    pose = (float(rng.uniform(-40, 40)), float(rng.uniform(-20, 20)), float(rng.uniform(-20, 20)))
    pts0, cam, _ = synthface_project(identity, expression, pose, (0.0, 0.0), height)
    proj = cam[:, :2] / cam[:, 2:3]
    scale = (pts0[0, 1] - pts0[1, 1]) / (proj[0, 1] - proj[1, 1])
    canvas = np.zeros((size, size, 3), np.uint8)
    draw_face(canvas, identity, expression, pose, size / 2 + (proj * scale - pts0)[0], height, visibility="none")
    mesh = torch.from_numpy(np.concatenate(true_mesh(identity, expression), 1)).float()
    camera = torch.tensor([*np.radians(pose), 0.0, 0.0, 80.0, scale / (size / 2)], dtype=torch.float32)
    out = render(mesh[None], camera[None], decode_light(torch.zeros(1, 9)), torch.from_numpy(TOPOLOGY.triangles).long(),
                 size)
    theirs, ours = canvas.max(2) > 0, out.alpha[0, 0].numpy() > 0.5
    return RenderPair(canvas[..., ::-1].copy(), out, mesh, camera, float((theirs & ours).sum() / (theirs | ours).sum()))


def fit_camera(target: torch.Tensor, mesh: torch.Tensor, camera: torch.Tensor, light: torch.Tensor, *,
               steps: int = 40, lr: float = 0.03, size: int = 64) -> tuple[torch.Tensor, list[float]]:
    """Recover a camera by gradient descent through the renderer: minimise the mean L1 between the render of
    ``mesh`` (V, 6) and ``target`` (3, S, S) over the 7 camera parameters (starting from ``camera`` (7,)),
    with Adam on the angles and a log-focal. Returns (camera (7,), losses)."""
    from facelearn.data.synthface import TOPOLOGY
    from facelearn.detection.mesh.render import render

    faces = torch.from_numpy(TOPOLOGY.triangles).long()
    angles = camera[:3].clone().requires_grad_(True)
    shift = camera[3:6].clone().requires_grad_(True)
    log_f = camera[6:].log().clone().requires_grad_(True)
    opt = torch.optim.Adam([{"params": [angles, log_f]}, {"params": [shift], "lr": lr * 10}], lr=lr)
    losses = []
    for _ in range(steps):
        cam = torch.cat([angles, shift, log_f.exp()])[None]
        loss = (render(mesh[None], cam, light[None], faces, size).image[0] - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return torch.cat([angles, shift, log_f.exp()]).detach(), losses
