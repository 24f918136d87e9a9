"""WFLW / 300-W readers, mirror permutations and PFLD's training crops (chapter "PFLD")."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facelearn.data.wflw import (FLIP_68, WFLW_FLIP, LandmarkRecord, flip_permutation, format_wflw_line,
                                 parse_wflw_line, read_pts, read_wflw, wflw_files, write_wflw)
from facelearn.errors import DataError
from facelearn.landmarks.crops import (CropConfig, LandmarkCrops, apply_affine, crop_matrix, flip_landmarks,
                                       invert_affine, to_image_coordinates)


def symmetric_face(n: int = 98, seed: int = 0, centre: float = 0.0) -> np.ndarray:
    """(n, 2) points symmetric under the mirror x → 2·centre − x with the landmark permutation; image-left
    members of each pair (lower index of the pair for the left side) have x < centre."""
    rng = np.random.default_rng(seed)
    perm = flip_permutation(n)
    pts = np.zeros((n, 2))
    for i in range(n):
        j = perm[i]
        if j == i:
            pts[i] = [centre, rng.uniform(-40, 40)]
        elif i < j:
            pts[i] = [centre - rng.uniform(5, 40), rng.uniform(-40, 40)]
            pts[j] = [2 * centre - pts[i, 0], pts[i, 1]]
    return pts


def face_image(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A grey image with a distinct coloured dot at each landmark (colour encodes the index)."""
    img = np.full((size[1], size[0], 3), 40, np.uint8)
    for k, (x, y) in enumerate(points):
        colour = (int(60 + (k * 37) % 190), int(60 + (k * 91) % 190), int(60 + (k * 53) % 190))
        cv2.circle(img, (int(round(x)), int(round(y))), 2, colour, -1)
    return img


def make_wflw(root: Path, n_train: int = 8, n_test: int = 4, size: int = 160, seed: int = 0) -> Path:
    """A tiny WFLW-layout folder: random poses of a symmetric dotted face, attributes cycling."""
    rng = np.random.default_rng(seed)
    base = symmetric_face(seed=seed)
    for split, n in (("train", n_train), ("test", n_test)):
        records = []
        for k in range(n):
            a = rng.uniform(-0.4, 0.4)
            s = rng.uniform(0.8, 1.1)
            rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * s
            pts = base @ rot.T + size / 2 + rng.uniform(-8, 8, 2)
            name = f"0--Event/{split}_{k}.jpg"
            path = root / "WFLW_images" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), face_image(pts, (size, size)))
            attrs = np.zeros(6, np.int64)
            attrs[k % 6] = 1 if k % 7 else 0
            box = np.r_[pts.min(0), pts.max(0)].astype(np.float32)
            records.append(LandmarkRecord(pts.astype(np.float32), box, attrs, name))
        write_wflw(records, root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
                   / f"list_98pt_rect_attr_{split}.txt")
    return root


# -- annotation lines ---------------------------------------------------------------------------------------
def test_wflw_roundtrip(tmp_path):
    root = make_wflw(tmp_path)
    files = wflw_files(root)
    recs = read_wflw(files["train"])
    assert len(recs) == 8 and recs[0].landmarks.shape == (98, 2) and recs[0].attributes.shape == (6,)
    again = parse_wflw_line(format_wflw_line(recs[3]))
    np.testing.assert_allclose(again.landmarks, recs[3].landmarks, atol=1e-5)
    assert again.image == recs[3].image and list(again.attributes) == list(recs[3].attributes)


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t[:-2], "expected 207 tokens"),
    (lambda t: t[:5] + ["abc"] + t[6:], "not a number: 'abc'"),
    (lambda t: t[:200] + ["2"] + t[201:], "attribute flags must be 0 or 1"),
    (lambda t: ["nan"] + t[1:], "finite"),
])
def test_wflw_bad_lines_name_file_and_line(tmp_path, mutate, message):
    root = make_wflw(tmp_path)
    path = wflw_files(root)["test"]
    lines = path.read_text().splitlines()
    lines[2] = " ".join(mutate(lines[2].split()))
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"list_98pt_rect_attr_test.txt:3: .*{message}"):
        read_wflw(path)


def test_wflw_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="no such WFLW annotation file"):
        read_wflw(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match="no annotations"):
        read_wflw(tmp_path / "empty.txt")
    with pytest.raises(DataError, match="WFLW images not found"):
        wflw_files(tmp_path)


def test_read_pts(tmp_path):
    pts = np.arange(136, dtype=np.float64).reshape(68, 2) / 3
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in pts)
    (tmp_path / "a.pts").write_text(f"version: 1\nn_points:  68\n{{\n{body}\n}}\n")
    np.testing.assert_allclose(read_pts(tmp_path / "a.pts"), pts, atol=1e-3)
    (tmp_path / "b.pts").write_text(f"version: 1\nn_points: 68\n{{\n{body}\n1.0\n}}\n")
    with pytest.raises(DataError, match=r"b.pts:72: expected two numbers"):
        read_pts(tmp_path / "b.pts")
    (tmp_path / "c.pts").write_text(f"version: 1\nn_points: 69\n{{\n{body}\n}}\n")
    with pytest.raises(DataError, match="header says 69 points, found 68"):
        read_pts(tmp_path / "c.pts")


# -- mirror permutations ------------------------------------------------------------------------------------
@pytest.mark.parametrize("perm", [WFLW_FLIP, FLIP_68])
def test_flip_permutation_is_an_involution(perm):
    assert sorted(perm) == list(range(len(perm)))
    np.testing.assert_array_equal(perm[perm], np.arange(len(perm)))


def test_flip_pairs_known_points():
    assert WFLW_FLIP[60] == 72 and WFLW_FLIP[64] == 68 and WFLW_FLIP[96] == 97 and WFLW_FLIP[54] == 54
    assert WFLW_FLIP[0] == 32 and WFLW_FLIP[16] == 16 and WFLW_FLIP[76] == 82 and WFLW_FLIP[79] == 79
    assert FLIP_68[36] == 45 and FLIP_68[48] == 54 and FLIP_68[30] == 30 and FLIP_68[8] == 8


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 1000), st.sampled_from([98, 68]))
def test_flip_of_symmetric_face_is_itself(seed, n):
    width = 200
    face = symmetric_face(n, seed, centre=(width - 1) / 2)
    np.testing.assert_allclose(flip_landmarks(face, width), face, atol=1e-9)
    other = face + np.random.default_rng(seed).normal(size=face.shape)
    np.testing.assert_allclose(flip_landmarks(flip_landmarks(other, width), width), other, atol=1e-9)


# -- crops --------------------------------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.floats(-40, 40), st.floats(0.7, 1.3), st.floats(-10, 10), st.floats(-10, 10))
def test_crop_matrix_inverse_roundtrip(angle, zoom, dx, dy):
    m = crop_matrix(np.array([30.0, 40.0, 90.0, 120.0]), 112, 0.15, angle, zoom, (dx, dy))
    pts = np.random.default_rng(0).uniform(0, 150, (20, 2))
    np.testing.assert_allclose(apply_affine(invert_affine(m), apply_affine(m, pts)), pts, atol=1e-8)


def test_crop_centres_box():
    m = crop_matrix(np.array([10.0, 20.0, 50.0, 80.0]), 112, 0.0)
    np.testing.assert_allclose(apply_affine(m, np.array([[30.0, 50.0]])), [[56.0, 56.0]])
    np.testing.assert_allclose(np.linalg.norm(m[:, 0]), 112 / 60)


def _dot_position(crop: np.ndarray, colour: np.ndarray) -> np.ndarray:
    dist = np.abs(crop.astype(int) - colour[None, None]).sum(2)
    ys, xs = np.nonzero(dist <= 150)
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_augmented_crop_landmarks_follow_the_pixels(tmp_path, seed):
    import torch

    root = make_wflw(tmp_path, n_train=2, n_test=1)
    files = wflw_files(root)
    recs = read_wflw(files["train"])
    probes = {60: (255, 0, 0), 72: (0, 255, 0), 54: (0, 0, 255), 96: (255, 255, 0), 97: (0, 255, 255),
              16: (255, 0, 255)}
    img = np.zeros((160, 160, 3), np.uint8)
    for k, colour in probes.items():
        x, y = recs[0].landmarks[k]
        cv2.circle(img, (int(round(x)), int(round(y))), 3, colour[::-1], -1)
    cv2.imwrite(str(files["images"] / recs[0].image), img)
    cfg = CropConfig(occlusion=0.0, flip=0.5)
    data = LandmarkCrops(recs, files["images"], augment=True, config=cfg)
    torch.manual_seed(seed)
    item = data[0]
    crop = (item["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    pts = item["landmarks"].numpy().reshape(98, 2) * 112
    flipped = bool(np.linalg.det(item["matrix"][:, :2].numpy()) < 0)
    checked = 0
    for k in probes:
        colour = np.array(probes[WFLW_FLIP[k] if flipped else k])
        if 4 <= pts[k, 0] <= 107 and 4 <= pts[k, 1] <= 107:
            np.testing.assert_allclose(_dot_position(crop, colour), pts[k], atol=1.6)
            checked += 1
    assert checked >= 3
    # the mirror keeps the image-left eye corner (60) on the left of the image-right one (72)
    assert pts[60, 0] < pts[72, 0] or abs(item["angles"][2]) > 0.6
    back = to_image_coordinates(item["landmarks"][None], item["matrix"][None])[0]
    expected = recs[0].landmarks[WFLW_FLIP] if flipped else recs[0].landmarks
    np.testing.assert_allclose(back, expected, atol=1e-3)


def test_occlusion_and_attributes(tmp_path):
    import torch

    root = make_wflw(tmp_path, n_train=3, n_test=1)
    files = wflw_files(root)
    recs = read_wflw(files["train"])
    data = LandmarkCrops(recs, files["images"], augment=True, config=CropConfig(occlusion=1.0, flip=0.0))
    torch.manual_seed(0)
    item = data[1]
    grey = (item["image"] * 255).round() == 128
    assert grey.all(0).sum() >= int((0.15 * 112) ** 2) - 1
    assert item["attributes"].tolist() == recs[1].attributes.astype(float).tolist()
    assert item["image"].shape == (3, 112, 112) and item["angles"].shape == (3,)


def test_missing_image_names_the_file(tmp_path):
    root = make_wflw(tmp_path, n_train=2, n_test=1)
    files = wflw_files(root)
    recs = read_wflw(files["train"])
    (files["images"] / recs[1].image).unlink()
    with pytest.raises(DataError, match="train_1.jpg: missing or unreadable image"):
        LandmarkCrops(recs, files["images"])[1]
