"""The detection Dataset and the WIDER evaluation on a SynthFace ``widerface`` export (same code path as
the real data set)."""

from __future__ import annotations

import numpy as np
import pytest

synthface = pytest.importorskip("facelearn.data.synthface")

from facelearn.detection.dataset import WiderFaceDetection, collate  # noqa: E402
from facelearn.detection.evaluation import evaluate_folder  # noqa: E402
from facelearn.detection.predictions import write_prediction_file  # noqa: E402
from facelearn.data.transforms import DetectionAugment  # noqa: E402
from facelearn.data.widerface import read_labels, read_val_ground_truth  # noqa: E402


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthface")
    synthface.export_widerface(out, n_train=5, n_val=8, image_size=128, seed=0, progress=False)
    return out


def test_dataset_reads_the_export(export):
    ds = WiderFaceDetection(export, "train", augment=DetectionAugment(size=96), seed=0)
    assert len(ds) + ds.skipped_empty == len(read_labels(export / "train" / "label.txt"))
    images, targets = collate([ds[i] for i in range(len(ds))])
    assert images.shape == (len(ds), 3, 96, 96) and torch_finite(images)
    assert sum(len(t["boxes"]) for t in targets) > 0
    for t in targets:
        assert (t["boxes"] >= 0).all() and (t["boxes"] <= 96).all()  # pixels of the 96 × 96 crop
    val = WiderFaceDetection(export, "val", train=False, size=96)
    masks = [val[i][1]["landmark_mask"] for i in range(len(val))]
    assert any(m.any() for m in masks)  # faces of 10 px or more carry landmarks


def torch_finite(x) -> bool:
    return bool(x.isfinite().all())


def test_val_labels_agree_with_the_official_ground_truth(export):
    gt = read_val_ground_truth(export / "wider_face_split")
    labels = read_labels(export / "val" / "label.txt")
    assert sorted(f"{e}/{f}.jpg" for e in gt.events for f in gt.files[e]) == sorted(x.name for x in labels)
    for x in labels:
        event, name = x.name[:-4].split("/")
        np.testing.assert_allclose(gt.boxes[event, name], x.boxes, atol=1.0)  # the .mat holds whole pixels


def test_ground_truth_through_the_eval_dataset_scores_ap_one(export, tmp_path):
    """Val boxes → Dataset (letterbox) → back to the original pixels → prediction files → AP 1.0."""
    ds = WiderFaceDetection(export, "val", train=False, size=96)
    rng = np.random.default_rng(0)
    for i in range(len(ds)):
        _, target = ds[i]
        pixels = (target["boxes"] / target["scale"]).numpy()
        xywh = np.c_[pixels[:, :2], pixels[:, 2:] - pixels[:, :2]]
        event, name = target["name"][:-4].split("/")
        write_prediction_file(tmp_path / event / f"{name}.txt", target["name"], xywh, rng.random(len(xywh)))
    result = evaluate_folder(tmp_path, export / "wider_face_split")
    assert result.missing == () and result.predictions > 0
    assert result.ap == pytest.approx({"easy": 1.0, "medium": 1.0, "hard": 1.0}, abs=1e-12)
