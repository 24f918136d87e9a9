"""Detection augmentations (facelearn.data.transforms): geometry property tests with hypothesis, and checks
that the pixels move with the coordinates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from facelearn.data.transforms import (
    BGR_MEAN, FIVE_POINT_FLIP, DetectionAugment, Sample, crop, hflip, hflip_points, letterbox, pad_to_square,
    photometric_distort, random_square_crop, resize, to_tensor)


def make_sample(rng: np.random.Generator, width: int, height: int, n: int, with_landmarks: float = 0.7) -> Sample:
    """Random faces; landmarks inside each box with the left eye image-left of the right eye."""
    w = rng.uniform(4, max(5, width / 2), n)
    h = rng.uniform(4, max(5, height / 2), n)
    x1 = rng.uniform(0, width - np.minimum(w, width - 1))
    y1 = rng.uniform(0, height - np.minimum(h, height - 1))
    boxes = np.c_[x1, y1, np.minimum(x1 + w, width), np.minimum(y1 + h, height)].astype(np.float32)
    u = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]], np.float32)
    u = np.clip(u + rng.uniform(-0.05, 0.05, (n, 5, 2)), 0, 1).astype(np.float32)
    size = (boxes[:, 2:] - boxes[:, :2])[:, None, :]
    landmarks = boxes[:, None, :2] + u * size
    mask = rng.random(n) < with_landmarks
    landmarks[~mask] = -1
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Sample(image, boxes, landmarks.astype(np.float32), mask)


samples = st.builds(
    lambda seed, w, h, n: make_sample(np.random.default_rng(seed), w, h, n),
    st.integers(0, 2**32 - 1), st.integers(16, 120), st.integers(16, 120), st.integers(1, 6))


@given(samples)
@settings(max_examples=40, deadline=None)
def test_mirror_twice_is_identity(sample):
    twice = hflip(hflip(sample))
    assert np.array_equal(twice.image, sample.image)
    np.testing.assert_allclose(twice.boxes, sample.boxes, atol=1e-4)
    np.testing.assert_allclose(twice.landmarks, sample.landmarks, atol=1e-4)
    assert np.array_equal(twice.mask, sample.mask)


@given(samples)
@settings(max_examples=40, deadline=None)
def test_mirror_keeps_left_points_left_and_boxes_valid(sample):
    out = hflip(sample)
    m = out.mask
    assert (out.landmarks[m, 0, 0] <= out.landmarks[m, 1, 0]).all()  # left eye image-left of right eye
    assert (out.landmarks[m, 3, 0] <= out.landmarks[m, 4, 0]).all()  # and the mouth corners
    assert (out.landmarks[~m] == -1).all()
    assert (out.boxes[:, 2] >= out.boxes[:, 0]).all()
    width = sample.image.shape[1]
    np.testing.assert_allclose(out.boxes[:, 2] - out.boxes[:, 0], sample.boxes[:, 2] - sample.boxes[:, 0], atol=1e-4)
    np.testing.assert_allclose(out.landmarks[m, 2, 0], width - sample.landmarks[m, 2, 0], atol=1e-4)  # nose


@given(st.integers(1, 98).flatmap(lambda k: st.tuples(st.permutations(list(range(k))), st.integers(0, 10**6))))
@settings(max_examples=30, deadline=None)
def test_hflip_points_generic(args):
    perm, seed = args
    k = len(perm)
    pairs = np.arange(k)  # an involution: swap perm[0]<->perm[1], perm[2]<->perm[3], ... (like a left/right table)
    for i in range(0, k - 1, 2):
        pairs[perm[i]], pairs[perm[i + 1]] = perm[i + 1], perm[i]
    pts = np.random.default_rng(seed).uniform(0, 50, (3, k, 2))
    once = hflip_points(pts, 50.0, pairs)
    np.testing.assert_allclose(hflip_points(once, 50.0, pairs), pts, atol=1e-9)
    np.testing.assert_allclose(once[:, :, 0], 50.0 - pts[:, pairs, 0])
    with pytest.raises(ValueError):
        hflip_points(pts, 50.0, [0] * k if k > 1 else [1])


def test_five_point_flip_order():
    pts = np.array([[[10, 5], [30, 5], [20, 10], [12, 20], [28, 20]]], dtype=np.float32)
    out = hflip_points(pts, 40, FIVE_POINT_FLIP)
    assert out[0, :, 0].tolist() == [10, 30, 20, 12, 28]  # a symmetric face mirrors onto itself


def _inside(points, boxes, tol=1e-3):
    return ((points[..., 0] >= boxes[:, None, 0] - tol) & (points[..., 0] <= boxes[:, None, 2] + tol) &
            (points[..., 1] >= boxes[:, None, 1] - tol) & (points[..., 1] <= boxes[:, None, 3] + tol)).all()


@given(samples, st.integers(0, 2**32 - 1), st.sampled_from([32, 64, 100]))
@settings(max_examples=60, deadline=None)
def test_augment_keeps_landmarks_in_boxes_and_image(sample, seed, size):
    augment = DetectionAugment(size=size)
    out = augment(sample, np.random.default_rng(seed))
    assert out.image.shape == (size, size, 3) and out.image.dtype == np.uint8
    assert len(out.boxes) >= 1  # a crop without faces is never kept; when none is found the image is padded
    assert (out.boxes >= -1e-3).all() and (out.boxes <= size + 1e-3).all()
    assert (out.boxes[:, 2:] > out.boxes[:, :2]).all()
    m = out.mask
    assert _inside(out.landmarks[m], out.boxes[m])
    assert (out.landmarks[~m] == -1).all()
    assert (out.landmarks[m, 0, 0] <= out.landmarks[m, 1, 0] + 1e-3).all()


@given(samples, st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_random_crop_drops_faces_whose_centre_leaves(sample, seed):
    out, roi = random_square_crop(sample, np.random.default_rng(seed))
    if roi is None:
        assert out is sample
        return
    l, t, r, b = roi
    assert r - l == b - t and out.image.shape[:2] == (b - t, r - l)
    centre = (sample.boxes[:, :2] + sample.boxes[:, 2:]) / 2
    inside = (centre[:, 0] > l) & (centre[:, 0] < r) & (centre[:, 1] > t) & (centre[:, 1] < b)
    kept = sample.boxes[inside]
    kept = kept[np.minimum(np.minimum(kept[:, 2], r) - np.maximum(kept[:, 0], l),
                           np.minimum(kept[:, 3], b) - np.maximum(kept[:, 1], t)) > 0]
    assert len(out.boxes) == len(kept) >= 1
    np.testing.assert_allclose(out.boxes[:, :2], np.maximum(kept[:, :2], [l, t]) - [l, t], atol=1e-4)
    assert np.array_equal(out.image, sample.image[t:b, l:r])


def test_crop_rule_by_hand():
    image = np.zeros((100, 100, 3), np.uint8)
    boxes = np.array([[10, 10, 30, 30], [45, 45, 70, 70], [55, 0, 100, 20]], np.float32)  # centres 20, 57.5, (77.5,10)
    lms = np.zeros((3, 5, 2), np.float32) + boxes[:, None, :2] + 1
    out = crop(Sample(image, boxes, lms, np.array([True, True, False])), (15, 15, 65, 65))
    assert out.boxes.tolist() == [[0, 0, 15, 15], [30, 30, 50, 50]]  # third face's centre is outside
    assert out.landmarks[0, 0].tolist() == [0, 0] and out.landmarks[1, 0].tolist() == [31, 31]
    assert out.mask.tolist() == [True, True] and out.image.shape == (50, 50, 3)


def test_crop_never_kept_without_a_whole_face():
    rng = np.random.default_rng(0)
    image = np.zeros((200, 300, 3), np.uint8)
    boxes = np.array([[0, 0, 200, 200]], np.float32)  # only the 1.0 scale at the very left can hold it
    lms = np.full((1, 5, 2), -1, np.float32)
    out, roi = random_square_crop(Sample(image, boxes, lms, np.array([False])), rng, max_tries=500)
    assert roi == (0, 0, 200, 200) and out.boxes.tolist() == [[0, 0, 200, 200]]
    wide = np.array([[0, 0, 300, 200]], np.float32)  # never inside a square crop: input returned unchanged
    out, roi = random_square_crop(Sample(image, wide, lms, np.array([False])), rng)
    assert roi is None and out.boxes is wide


def _blob_centre(image: np.ndarray) -> np.ndarray:
    grey = image[..., 1].astype(np.float64)
    ys, xs = np.nonzero(grey > grey.max() / 2)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


@pytest.mark.parametrize("seed", range(8))
def test_pixels_move_with_the_landmarks(seed):
    """A bright square painted under the nose ends up under the transformed nose."""
    rng = np.random.default_rng(seed)
    image = np.zeros((240, 320, 3), np.uint8)
    boxes = np.array([[100, 60, 220, 200]], np.float32)
    nose = np.array([150.0, 130.0])
    lms = np.tile(nose.astype(np.float32), (1, 5, 1))
    image[125:135, 145:155] = 255  # a 10 px square centred on the nose point (150, 130)
    augment = DetectionAugment(size=160, distort=False, random_interpolation=False, mirror=0.5)
    out = augment(Sample(image, boxes, lms, np.array([True])), rng)
    np.testing.assert_allclose(_blob_centre(out.image), out.landmarks[0, 2], atol=1.0)


def test_photometric_distort_changes_colours_not_shape():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    outs = [photometric_distort(image, rng) for _ in range(20)]
    assert all(o.shape == image.shape and o.dtype == np.uint8 for o in outs)
    assert sum(not np.array_equal(o, image) for o in outs) >= 15


def test_pad_resize_letterbox_and_tensor():
    image = np.full((50, 100, 3), 7, np.uint8)
    padded = pad_to_square(image)
    assert padded.shape == (100, 100, 3) and padded[75, 10].tolist() == list(np.round(BGR_MEAN).astype(int))
    boxes = np.array([[10, 20, 30, 40]], np.float32)
    lms = np.full((1, 5, 2), 20, np.float32)
    out, scale = letterbox(Sample(image, boxes, lms, np.array([True])), 50)
    assert scale == 0.5 and out.boxes.tolist() == [[5, 10, 15, 20]] and out.landmarks[0, 0].tolist() == [10, 10]
    out = resize(Sample(image, boxes, lms, np.array([False])), 200)
    assert out.boxes.tolist() == [[20, 80, 60, 160]] and out.image.shape == (200, 200, 3)
    image[..., 2] = 200  # red, in BGR order
    t = to_tensor(image)  # RGB in [0, 1]
    assert t.shape == (3, 50, 100) and t.dtype == torch.float32
    assert float(t[0, 0, 0]) == np.float32(200) / np.float32(255)
    assert float(t[2, 0, 0]) == np.float32(7) / np.float32(255)


def test_presets():
    assert DetectionAugment.preset("common").size == 640 and DetectionAugment.preset("quick").size == 320
    with pytest.raises(ValueError):
        DetectionAugment.preset("nope")
