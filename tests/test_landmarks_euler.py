"""Euler angles from landmarks with solvePnP (chapter "PFLD")."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facelearn.landmarks.crops import flip_landmarks
from facelearn.landmarks.euler import (camera_matrix, euler_from_landmarks, euler_from_rotation, project,
                                       reference_points, rotation_from_euler)

angles = st.tuples(st.floats(-1.2, 1.2), st.floats(-0.6, 0.6), st.floats(-0.8, 0.8))


@settings(max_examples=50, deadline=None)
@given(angles)
def test_rotation_roundtrip_and_orthonormal(a):
    r = rotation_from_euler(*a)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(euler_from_rotation(r), a, atol=1e-9)


def test_sign_conventions_on_screen():
    idx, pts = reference_points()
    cam = camera_matrix(200, 200)
    nose = list(idx).index(54)
    front = project(pts, 0, 0, 0, 500, cam)
    assert project(pts, 0.3, 0, 0, 500, cam)[nose, 0] > front[nose, 0]      # yaw: nose to image-right
    assert project(pts, 0, 0.3, 0, 500, cam)[nose, 1] < front[nose, 1]      # pitch: chin up, nose up
    right_eye = list(idx).index(72)                                          # image-right outer eye corner
    assert project(pts, 0, 0, 0.3, 500, cam)[right_eye, 1] > front[right_eye, 1]   # roll: clockwise


@settings(max_examples=40, deadline=None)
@given(angles, st.floats(400, 1500), st.sampled_from([98, 68]))
def test_solvepnp_recovers_projected_pose(a, distance, n):
    size = 256
    cam = camera_matrix(size, size)
    idx, pts = reference_points(n)
    lm = np.zeros((n, 2))
    lm[idx] = project(pts, *a, distance, cam)
    np.testing.assert_allclose(euler_from_landmarks(lm, size, size), a, atol=1e-4)


def test_mirror_negates_yaw_and_roll():
    size = 112
    cam = camera_matrix(size, size)
    idx, pts = reference_points()
    lm = np.zeros((98, 2))
    lm[idx] = project(pts, 0.4, 0.2, 0.15, 600, cam)
    mirrored = flip_landmarks(lm, size)
    # the reference face is mirror-symmetric; with the pixel-centre convention the flip is about x = 55.5
    # while the camera's centre is 56, so allow a small tolerance
    np.testing.assert_allclose(euler_from_landmarks(mirrored, size, size), [-0.4, 0.2, -0.15], atol=2e-2)


def test_noisy_landmarks_degrade_gracefully():
    rng = np.random.default_rng(0)
    cam = camera_matrix(112, 112)
    idx, pts = reference_points()
    errs = []
    for _ in range(30):
        a = rng.uniform([-0.8, -0.4, -0.4], [0.8, 0.4, 0.4])
        lm = np.zeros((98, 2))
        lm[idx] = project(pts, *a, 600, cam) + rng.normal(0, 0.5, (len(idx), 2))
        errs.append(np.abs(euler_from_landmarks(lm, 112, 112) - a))
    assert np.degrees(np.mean(errs, 0)).max() < 5.0


def test_bad_point_count():
    with pytest.raises(ValueError, match="98 or 68"):
        euler_from_landmarks(np.zeros((5, 2)), 112, 112)
