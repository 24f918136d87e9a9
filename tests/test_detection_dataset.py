"""The detection Dataset (facelearn.detection.dataset) on a tiny WIDER-layout folder written by the test."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facelearn.data.transforms import BGR_MEAN, DetectionAugment
from facelearn.detection.dataset import WiderFaceDetection, collate
from facelearn.engine import make_loader
from facelearn.errors import DataError

# (event/name, width, height, faces as x y w h, landmarks or None)
IMAGES = [
    ("0--A/one.jpg", 160, 120, [(20, 30, 40, 48)], True),
    ("0--A/two.jpg", 200, 100, [(10, 10, 30, 30), (120, 40, 50, 50)], False),
    ("1--B/three.jpg", 90, 150, [(20, 60, 40, 40), (5, 5, 0, 10)], True),  # a zero-width face
    ("1--B/empty.jpg", 64, 64, [], False),
]


def _landmarks(x, y, w, h):
    pts = [(0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8), (0.65, 0.8)]
    return [v for px, py in pts for v in (x + px * w, y + py * h, 0.0)]


def write_folder(root: Path, split: str = "train", images=IMAGES, corrupt: str | None = None) -> Path:
    lines = []
    for name, width, height, faces, with_lm in images:
        image = np.zeros((height, width, 3), np.uint8)
        for x, y, w, h in faces:
            image[y:y + h, x:x + w] = (0, 255, 0)  # faces are green rectangles
        path = root / f"WIDER_{split}" / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == corrupt:
            path.write_bytes(b"not a jpeg")
        else:
            cv2.imwrite(str(path), image)
        lines.append(f"# {name}")
        for face in faces:
            lm = _landmarks(*face) if with_lm else [-1.0] * 15
            lines.append(" ".join(str(v) for v in (*face, *lm, 0.0)))
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / split / "label.txt").write_text("\n".join(lines) + "\n")
    return root


def test_training_items(tmp_path):
    ds = WiderFaceDetection(write_folder(tmp_path), augment=DetectionAugment(size=64), seed=0)
    assert len(ds) == 3 and ds.skipped_empty == 1 and ds.dropped_faces == 1
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32
        assert image.min() >= 0 and image.max() <= 1  # RGB in [0, 1]: the data contract of every task
        assert torch.equal(image * 255, (image * 255).round())  # pixels / 255, nothing else
        boxes, lms, mask = target["boxes"], target["landmarks"], target["landmark_mask"]
        assert boxes.ndim == 2 and len(boxes) >= 1 and lms.shape == (len(boxes), 5, 2) and mask.dtype == torch.bool
        assert (boxes >= 0).all() and (boxes <= 64).all() and (boxes[:, 2:] > boxes[:, :2]).all()  # pixels
        assert (lms[~mask] == -1).all() and (lms[mask] >= 0).all() and (lms[mask] <= 64).all()
        assert mask.all() == (i != 1)  # image "two" has no landmarks
    first = ds[0]
    assert torch.equal(first[0], ds[0][0])  # a fixed seed fixes each index's augmentation


def test_augmentation_changes_between_calls_without_seed(tmp_path):
    ds = WiderFaceDetection(write_folder(tmp_path), augment=DetectionAugment(size=64))
    torch.manual_seed(0)
    runs = [ds[0][1]["boxes"] for _ in range(6)]
    assert any(not torch.allclose(runs[0], r) for r in runs[1:])
    torch.manual_seed(0)
    assert all(torch.allclose(a, ds[0][1]["boxes"]) for a in runs[:1])  # follows torch's seed


def test_boxes_cover_the_face_pixels(tmp_path):
    augment = DetectionAugment(size=96, distort=False, random_interpolation=False)
    ds = WiderFaceDetection(write_folder(tmp_path), augment=augment, seed=3)
    for i in range(len(ds)):
        for _ in range(3):
            image, target = ds[i]
            green = (image[1] > 0.5) & (image[0] < 0.5)  # RGB: green high, red low
            covered = torch.zeros_like(green)
            for x1, y1, x2, y2 in target["boxes"].tolist():
                covered[int(np.ceil(y1)):int(y2), int(np.ceil(x1)):int(x2)] = True
            assert (green & ~covered).sum() <= 0.1 * green.sum() + 8  # face pixels lie in the boxes


def test_eval_items_letterbox(tmp_path):
    ds = WiderFaceDetection(write_folder(tmp_path, "val"), "val", train=False, size=100)
    assert len(ds) == 4 and ds.skipped_empty == 0  # evaluation keeps images without faces
    image, target = ds[1]  # 200 x 100 image: scale 0.5, padded at the bottom
    assert image.shape == (3, 100, 100) and float(target["scale"]) == 0.5 and target["name"] == "0--A/two.jpg"
    original = target["boxes"] / target["scale"]
    assert torch.allclose(original, torch.tensor([[10.0, 10, 40, 40], [120, 40, 170, 90]]), atol=1e-4)
    pad = [round(255 * float(v)) for v in image[:, 90, 50]]  # padding is the mean colour, as RGB
    assert pad == [round(v) for v in BGR_MEAN[::-1]]
    assert len(ds[3][1]["boxes"]) == 0


def test_collate_and_loader(tmp_path):
    ds = WiderFaceDetection(write_folder(tmp_path), augment=DetectionAugment(size=32), seed=1)
    images, targets = next(iter(make_loader(ds, batch_size=3, shuffle=False, collate_fn=collate)))
    assert images.shape == (3, 3, 32, 32) and len(targets) == 3 and [t["name"] for t in targets][0] == "0--A/one.jpg"
    images, targets = collate([ds[0], ds[2]])
    assert images.shape == (2, 3, 32, 32) and targets[1]["boxes"].shape[1] == 4


def test_missing_image_names_the_label_line(tmp_path):
    root = write_folder(tmp_path)
    (root / "WIDER_train" / "images" / "0--A" / "two.jpg").unlink()
    with pytest.raises(DataError, match=r"label\.txt:3: image .*two\.jpg not found"):
        WiderFaceDetection(root)
    ds = WiderFaceDetection(root, missing="skip")
    assert ds.skipped_missing == 1 and len(ds) == 2
    with pytest.raises(ValueError):
        WiderFaceDetection(root, missing="ignore")


def test_unreadable_image_names_the_label_line(tmp_path):
    ds = WiderFaceDetection(write_folder(tmp_path, corrupt="1--B/three.jpg"), augment=DetectionAugment(size=32))
    with pytest.raises(DataError, match=r"label\.txt:6: cannot read image .*three\.jpg"):
        ds[2]


def test_bad_label_file(tmp_path):
    root = write_folder(tmp_path)
    (root / "train" / "label.txt").write_text("# 0--A/one.jpg\n1 2 3\n")
    with pytest.raises(DataError, match=r"label\.txt:2:"):
        WiderFaceDetection(root)
