import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facelearn.data.alignment import ARCFACE_TEMPLATE, align_face, similarity_transform


@settings(max_examples=60, deadline=None)
@given(st.floats(0.3, 3.0), st.floats(-np.pi, np.pi), st.floats(-50, 50), st.floats(-50, 50))
def test_recovers_a_known_similarity(scale, angle, tx, ty):
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = ARCFACE_TEMPLATE @ rot.T + [tx, ty]
    m = similarity_transform(ARCFACE_TEMPLATE, dst)
    assert np.allclose(m[:, :2], rot, atol=1e-8) and np.allclose(m[:, 2], [tx, ty], atol=1e-6)


def test_agrees_with_opencv_on_exact_points():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, size=(5, 2))
    m_true = np.array([[0.8, -0.3, 12.0], [0.3, 0.8, -4.0]])
    dst = src @ m_true[:, :2].T + m_true[:, 2]
    cv, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32), method=cv2.LMEDS)
    assert np.allclose(similarity_transform(src, dst), cv, atol=1e-3)


def test_least_squares_is_optimal_under_noise():
    rng = np.random.default_rng(1)
    src = ARCFACE_TEMPLATE + rng.normal(0, 3, (5, 2))
    m = similarity_transform(src, ARCFACE_TEMPLATE)
    residual = lambda mat: ((src @ mat[:, :2].T + mat[:, 2] - ARCFACE_TEMPLATE) ** 2).sum()
    for _ in range(200):  # no nearby similarity does better
        d = rng.normal(0, 1e-3, 4)
        a, b = m[0, 0] + d[0], m[1, 0] + d[1]
        other = np.array([[a, -b, m[0, 2] + d[2]], [b, a, m[1, 2] + d[3]]])
        assert residual(other) >= residual(m) - 1e-9


def test_align_face_puts_points_on_the_template():
    image = np.zeros((300, 400, 3), np.uint8)
    points = ARCFACE_TEMPLATE * 2.0 + [100, 60]
    for x, y in points:
        cv2.circle(image, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
    crop = align_face(image, points)
    assert crop.shape == (112, 112, 3)
    for x, y in ARCFACE_TEMPLATE:
        assert crop[int(round(y)), int(round(x))].max() > 150


def test_bad_points():
    with pytest.raises(ValueError, match="expected 5 landmark points"):
        align_face(np.zeros((10, 10, 3), np.uint8), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((5, 2)), ARCFACE_TEMPLATE)


def test_recognition_alignment_is_the_data_packages_geometry():
    import facelearn.recognition.alignment as recognition

    assert recognition.align_face is align_face and recognition.similarity_transform is similarity_transform
    assert recognition.ARCFACE_TEMPLATE is ARCFACE_TEMPLATE
