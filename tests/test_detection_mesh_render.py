"""The differentiable renderer (chapter "The dense regression branch")."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facelearn.data.synthface import TOPOLOGY, rotation, sample_expression, sample_identity
from facelearn.detection.mesh.decoder import true_mesh
from facelearn.detection.mesh.evaluation import fit_camera, synthface_render_pair
from facelearn.detection.mesh.render import (decode_camera, decode_light, euler_rotation, project, rasterize, render,
                                             vertex_normals)

FACES = torch.from_numpy(TOPOLOGY.triangles).long()


@settings(max_examples=20, deadline=None)
@given(st.floats(-90, 90), st.floats(-90, 90), st.floats(-90, 90))
def test_euler_rotation_is_synthface_rotation(yaw, pitch, roll):
    r = euler_rotation(torch.tensor(np.radians([[yaw, pitch, roll]]), dtype=torch.float64))[0].numpy()
    assert np.abs(r - rotation(yaw, pitch, roll)).max() < 1e-12


def _tiny_mesh():
    """A 5-vertex pyramid (4 triangles) 80 units in front of the camera, triangles front-facing."""
    v = torch.tensor([[-1.0, -1.0, 0.0], [1.0, -1.2, 0.1], [1.1, 0.9, 0.0], [-0.9, 1.0, -0.1], [0.1, 0.05, -0.6]],
                     dtype=torch.float64)
    faces = torch.tensor([[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    return v, faces


def test_gradients_match_finite_differences_on_a_tiny_mesh():
    torch.manual_seed(0)
    v, faces = _tiny_mesh()
    colours = torch.rand(5, 3, dtype=torch.float64)
    camera = torch.tensor([[0.1, -0.05, 0.2, 0.05, -0.1, 80.0, 50.0]], dtype=torch.float64)
    light = torch.tensor([[10.0, -20.0, 0.0, 0.6, 0.5, 0.7, 0.3, 0.35, 0.4]], dtype=torch.float64)
    bg = torch.tensor([[0.2, 0.3, 0.1]], dtype=torch.float64)

    def f(verts, cols, cam, lig):
        out = render(torch.cat([verts, cols], -1)[None], cam, lig, faces, 8, sigma=0.8, gamma=0.05, background=bg)
        return out.image, out.alpha

    inputs = tuple(t.clone().requires_grad_(True) for t in (v, colours, camera, light))
    assert f(*inputs)[1].max() > 0.9 and f(*inputs)[1].min() < 0.1  # the mesh is in view, not filling it
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)


def _cross(u, w):
    return u[0] * w[1] - u[1] * w[0]


def test_sharp_limit_is_the_hard_rasteriser():
    """With a tiny σ the silhouette is the set of pixel centres inside the projected front triangles."""
    v, faces = _tiny_mesh()
    camera = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 80.0, 40.0]], dtype=torch.float64)
    cam, pts = project(v[None], camera, 16)
    out = rasterize(pts, cam[..., 2], torch.ones(1, 5, 3, dtype=torch.float64), faces, 16, sigma=1e-6)
    p = pts[0].numpy()
    inside = np.zeros((16, 16), bool)
    for t in faces.numpy():
        a, b, c = p[t]
        for y in range(16):
            for x in range(16):
                q = np.array([x + 0.5, y + 0.5])
                e = [_cross(b - a, q - a), _cross(c - b, q - b), _cross(a - c, q - c)]
                inside[y, x] |= all(s > 0 for s in e) or all(s < 0 for s in e)
    assert inside.sum() > 20
    assert np.array_equal(out.alpha[0, 0].numpy() > 0.5, inside)


def test_back_faces_are_culled_and_background_shows():
    v, faces = _tiny_mesh()
    camera = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 80.0, 40.0]], dtype=torch.float64)
    cam, pts = project(v[None], camera, 16)
    bg = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64)
    flipped = rasterize(pts, cam[..., 2], torch.ones(1, 5, 3, dtype=torch.float64), faces[:, [0, 2, 1]], 16,
                        background=bg)
    assert flipped.pairs == 0 and flipped.alpha.abs().max() == 0
    assert torch.allclose(flipped.image, bg[:, :, None, None].expand(1, 3, 16, 16))


def test_normals_point_out_of_the_head_and_canonical_camera_centres_the_face():
    v, _ = true_mesh(sample_identity(np.random.default_rng(0)), sample_expression(np.random.default_rng(0)))
    mesh = torch.from_numpy(v).float()[None]
    n = vertex_normals(mesh, FACES)
    assert n[0, TOPOLOGY.landmarks98[54], 2] < -0.5          # nose tip faces the camera (−z)
    assert ((n[0] * (mesh[0] - mesh[0].mean(0))).sum(-1) > 0).float().mean() > 0.95
    _, pts = project(mesh, decode_camera(torch.zeros(1, 7)), 64)
    from facelearn.data.synthface.render import FOREHEAD

    box = pts[0, np.r_[TOPOLOGY.landmarks98, FOREHEAD]]
    centre, height = (box.amax(0) + box.amin(0)) / 2, float(box[:, 1].max() - box[:, 1].min())
    assert (centre - 32).abs().max() < 4 and 64 / 1.25 * 0.9 < height < 64 / 1.25 * 1.2
    assert torch.allclose(decode_light(torch.zeros(1, 9)), torch.tensor([[0.0] * 3 + [0.6] * 3 + [0.4] * 3]))


@pytest.mark.parametrize("seed", [3, 11, 29])
def test_render_of_true_mesh_overlaps_synthface_image(seed):
    pair = synthface_render_pair(seed)
    theirs, ours = pair.image.max(2) > 0, pair.rendered.alpha[0, 0].numpy() > 0.5
    assert pair.iou == pytest.approx((theirs & ours).sum() / (theirs | ours).sum())
    assert pair.iou >= 0.95  # measured 0.97–0.98 (SynthFace also draws ears, which are not mesh triangles)


def test_gradient_descent_through_the_renderer_recovers_a_pose():
    pair = synthface_render_pair(5, size=64, height=40.0)
    light = decode_light(torch.zeros(1, 9))[0]
    target = render(pair.mesh[None], pair.camera[None], light[None], FACES, 64).image[0].detach()
    start = pair.camera.clone()
    start[0] += 0.3  # 17° of yaw off
    camera, losses = fit_camera(target, pair.mesh, start, light, steps=30)
    assert losses[-1] < 0.5 * losses[0]
    assert abs(float(camera[0] - pair.camera[0])) < 0.5 * 0.3


def test_invisible_images_are_their_background_and_cost_no_pair():
    """visible=False leaves an image to its background (alpha 0, no pixel–triangle pair, no gradient) and
    draws the others exactly as without it."""
    v, faces = _tiny_mesh()
    g = torch.Generator().manual_seed(1)
    mesh = torch.cat([v, torch.rand(5, 3, generator=g, dtype=torch.float64)], -1).expand(3, 5, 6).clone()
    mesh.requires_grad_(True)
    camera = torch.tensor([[0.1, -0.05, 0.2, 0.05, -0.1, 80.0, 50.0]], dtype=torch.float64).expand(3, 7)
    light = torch.tensor([[10.0, -20.0, 0.0, 0.6, 0.5, 0.7, 0.3, 0.35, 0.4]], dtype=torch.float64).expand(3, 9)
    bg = torch.rand(3, 3, generator=g, dtype=torch.float64)
    visible = torch.tensor([True, False, True])
    out = render(mesh, camera, light, faces, 8, background=bg, visible=visible)
    alone = render(mesh[[0, 2]], camera[:2], light[:2], faces, 8, background=bg[[0, 2]])
    assert torch.equal(out.image[[0, 2]], alone.image) and torch.equal(out.alpha[[0, 2]], alone.alpha)
    assert out.pairs == alone.pairs > 0
    assert torch.equal(out.image[1], bg[1][:, None, None].expand(3, 8, 8)) and not out.alpha[1].any()
    (grad,) = torch.autograd.grad(out.image.sum(), mesh)
    assert not grad[1].any() and grad[0].any()
