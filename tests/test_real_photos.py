"""The real-photo evaluation: AP at IoU 0.4, confident false positives, Haar baseline, pairs across identities,
5-point error — the metric code on constructed cases, then the report on the labelled photos of ../shared
(skipped when absent)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facelearn.cli import main
from facelearn.detection.real_photos import (CONFIDENT, LabelledPhoto, average_precision, confident_detections,
                                             evaluate_detector, haar_detector, no_face_photos, read_labels)
from facelearn.errors import DataError
from facelearn.recognition.verification import pairs_across_identities, roc_auc_all_pairs

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LABELS = SHARED / "real_photos" / "labels.json"
IMAGES = SHARED / "reference_models" / "biubug6_mobilenet025" / "images"
PAIRS = SHARED / "real_photos" / "small_lfw.bin"
needs_shared = pytest.mark.skipif(not (LABELS.is_file() and IMAGES.is_dir() and PAIRS.is_file()),
                                  reason="../shared/data/real_photos is absent (project fixtures)")

TRUTH = [np.array([[10.0, 10, 50, 60], [100, 20, 140, 70]]), np.array([[30.0, 40, 90, 120]])]


def _with_scores(boxes, scores):
    return np.c_[boxes, scores]


def test_exact_labels_score_ap_one_and_shifted_boxes_less():
    exact = [_with_scores(t, np.linspace(0.9, 0.8, len(t))) for t in TRUTH]
    assert average_precision(exact, TRUTH) == pytest.approx(1.0)
    shifted = [d + np.array([8.0, 8, 8, 8, 0]) for d in exact]          # IoU of a 40x50 box moved by 8 px: ~0.53
    far = [d + np.array([25.0, 25, 25, 25, 0]) for d in exact]           # IoU ~0.15: no face found
    ap_shifted, ap_far = average_precision(shifted, TRUTH), average_precision(far, TRUTH)
    assert ap_shifted == pytest.approx(1.0) and average_precision(shifted, TRUTH, iou_threshold=0.6) < 1.0
    assert ap_far == 0.0


def test_ap_ranks_by_score_and_counts_duplicates_as_false_positives():
    # one face, a false positive ranked above it: precision 1/2 at recall 1 → AP 0.5
    truth = [np.array([[0.0, 0, 10, 10]])]
    assert average_precision([np.array([[50.0, 50, 60, 60, 0.9], [0, 0, 10, 10, 0.8]])], truth) == pytest.approx(0.5)
    # ranked below it, the false positive costs nothing (VOC's precision envelope)
    assert average_precision([np.array([[50.0, 50, 60, 60, 0.7], [0, 0, 10, 10, 0.8]])], truth) == pytest.approx(1.0)
    # a duplicate of a found face is a false positive; a face never found caps recall
    two = [np.array([[0.0, 0, 10, 10], [20, 0, 30, 10]])]
    dup = [np.array([[0.0, 0, 10, 10, 0.9], [0.5, 0, 10, 10, 0.8]])]
    assert average_precision(dup, two) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no labelled face"):
        average_precision([np.zeros((0, 5))], [np.zeros((0, 4))])


def test_confident_detections_and_the_report_on_constructed_photos():
    assert confident_detections(np.array([[0, 0, 1, 1, 0.49], [0, 0, 1, 1, CONFIDENT], [0, 0, 1, 1, 0.9]])) == 2
    assert confident_detections(np.zeros((0, 5))) == 0
    photos = [(LabelledPhoto(f"p{i}", t, np.zeros((len(t), 5, 2)), (160, 160)), np.full((160, 160, 3), i, np.uint8))
              for i, t in enumerate(TRUTH)]
    blank, noisy = np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8)

    def oracle(image):  # the labels of the photo it is shown, and three confident boxes on the white photo
        if image.shape == (160, 160, 3):
            t = TRUTH[int(image[0, 0, 0])]
            return _with_scores(t, np.full(len(t), 0.95))
        n = 3 if image.max() == 255 else 0
        return _with_scores(np.tile([0.0, 0, 8, 8], (n, 1)), np.array([0.9, 0.6, 0.2])[:n])

    r = evaluate_detector(oracle, photos, {"blank": blank, "white": noisy})
    assert r.ap == pytest.approx(1.0) and r.recall == 1.0 and r.faces == 3
    assert r.false_positives == {"blank": 0, "white": 2} and r.total_false_positives == 2


def test_read_labels_reads_the_format_and_names_bad_input(tmp_path):
    good = {"images": {"a.jpg": {"size_wh": [100, 80], "boxes_x1y1x2y2": [[1, 2, 30, 40]],
                                 "points_5x2": [[[5, 6], [20, 6], [12, 15], [6, 25], [19, 25]]]}}}
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(good))
    (photo,) = read_labels(path)
    assert photo.name == "a.jpg" and photo.size == (100, 80) and photo.boxes.shape == (1, 4)
    assert photo.points.shape == (1, 5, 2)
    with pytest.raises(DataError, match="no such labels file"):
        read_labels(tmp_path / "missing.json")
    path.write_text("{not json")
    with pytest.raises(DataError, match="labels.json: not a labels file"):
        read_labels(path)
    good["images"]["a.jpg"]["boxes_x1y1x2y2"] = [[30, 2, 1, 40]]
    path.write_text(json.dumps(good))
    with pytest.raises(DataError, match="image 'a.jpg'"):
        read_labels(path)


def test_haar_baseline_finds_the_astronaut_and_no_face_photos_are_offline():
    from skimage import data

    found = haar_detector()(data.astronaut())
    assert found.shape[1] == 5 and (found[:, 4] >= CONFIDENT).all()
    face = torch.tensor([[181.8, 63.5, 267.0, 174.1]])  # her face, brows to chin
    from torchvision.ops import box_iou
    assert float(box_iou(torch.as_tensor(found[:, :4]), face.double()).max()) >= 0.4
    photos = no_face_photos(("coffee", "horse"))
    assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 for p in photos.values())


def test_pairs_across_identities_balance_the_folds_and_separate_people():
    index, issame = pairs_across_identities(10)
    assert index.shape == (40,) and issame.tolist() == [True, False] * 10
    person = index // 2
    assert (person[0::2][issame] == person[1::2][issame]).all()
    assert (person[0::2][~issame] != person[1::2][~issame]).all()
    with pytest.raises(ValueError):
        pairs_across_identities(1)
    # one direction per person plus noise: against a brute-force count of ordered (matched, other) pairs
    rng = np.random.default_rng(0)
    e = np.repeat(rng.normal(size=(6, 8)), 2, axis=0) + rng.normal(scale=1.5, size=(12, 8))
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    same = [u[2 * i] @ u[2 * i + 1] for i in range(6)]
    other = [u[a] @ u[b] for a in range(12) for b in range(a + 1, 12) if a // 2 != b // 2]
    brute = np.mean([(s > o) + 0.5 * (s == o) for s in same for o in other])
    assert roc_auc_all_pairs(e) == pytest.approx(brute)
    assert roc_auc_all_pairs(np.repeat(np.eye(6), 2, axis=0)) == 1.0


def test_the_command_names_a_bad_labels_file(tmp_path, capsys):
    bad = tmp_path / "labels.json"
    bad.write_text("[]")
    assert main(["eval", "real-photos", "--labels", str(bad), "--images", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "labels.json" in err


@needs_shared
def test_report_on_the_labelled_photos():
    from facelearn.detection.real_photos import retinaface_detector
    from facelearn.detection.training import find_checkpoint, load_detector
    from facelearn.landmarks import recipe
    from facelearn.real_photos import five_point_errors, load_photos, verification_on_pairs
    from facelearn.data.identities import read_bin
    from facelearn.recognition.training import load_model, shipped_checkpoint

    photos = load_photos(LABELS, IMAGES)
    assert sum(len(p.boxes) for p, _ in photos) == 8
    model = load_detector(find_checkpoint("retinaface_mnet025_quick.pt"))
    quick = evaluate_detector(retinaface_detector(model, scale=1.0), photos, {})
    haar = evaluate_detector(haar_detector(), photos, {})
    assert quick.ap > haar.ap > 0.5  # the quick detector beats the baseline on real faces (0.94 vs 0.73)
    recogniser, rec, _ = load_model(shipped_checkpoint("arcface"))
    images, _ = read_bin(PAIRS, size=rec.input_size)
    v = verification_on_pairs(recogniser, images)
    assert v["pairs"] == 20 and 0 <= v["accuracy"] <= 1 and 0 <= v["roc_auc"] <= 1
    errors = five_point_errors(recipe.load(recipe.shipped_checkpoint("pfld-quick")), photos)
    assert errors.shape == (8,) and np.isfinite(errors).all() and (errors > 0).all()
