"""The WIDER FACE evaluation on the real validation ground truth (the official .mat files shipped with facelearn)."""

from __future__ import annotations

import numpy as np
import pytest

from facelearn.data.widerface import find_val_ground_truth, read_val_ground_truth
from facelearn.detection.evaluation import evaluate, evaluate_folder
from facelearn.detection.predictions import write_prediction_file


@pytest.fixture(scope="module")
def gt():
    return read_val_ground_truth(find_val_ground_truth())


def _unreachable(gt, setting):
    """Kept faces no prediction can recall: negative size, or identical to an earlier face of the image
    (a prediction's best face is the first of tied faces)."""
    count = 0
    for key, boxes in gt.boxes.items():
        if len(boxes) == 0:
            continue
        _, first, which = np.unique(boxes, axis=0, return_index=True, return_inverse=True)
        later_copy = first[which.ravel()] != np.arange(len(boxes))
        bad = later_copy | (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
        count += int(bad[gt.keep[setting][key]].sum())
    return count


def test_ground_truth_as_predictions(gt):
    rng = np.random.default_rng(0)
    preds = {k: np.c_[b, rng.random(len(b))] for k, b in gt.boxes.items()}
    result = evaluate(preds, gt)
    assert result.missing == () and result.images == 3226
    for setting, faces in {"easy": 7211, "medium": 13319, "hard": 31958}.items():
        curve = result.curves[setting]
        assert curve.faces == faces
        assert curve.recalled[-1] == faces - _unreachable(gt, setting)
        assert result.ap[setting] > 0.999


def test_only_easy_faces_predicted(gt):
    rng = np.random.default_rng(1)
    preds = {k: np.c_[b[gt.keep["easy"][k]], rng.random(len(gt.keep["easy"][k]))] for k, b in gt.boxes.items()}
    ap = evaluate(preds, gt).ap
    assert ap["easy"] > 0.999
    # every prediction is a true positive, so AP is the final recall: the easy faces' share of each setting
    assert ap["medium"] == pytest.approx(7211 / 13319, abs=2e-3)
    assert ap["hard"] == pytest.approx(7211 / 31958, abs=2e-3)


def _noisy(gt, seed):
    rng = np.random.default_rng(seed)
    preds = {}
    for key, b in gt.boxes.items():
        jitter = b.copy()
        jitter[:, :2] += rng.normal(0, 0.1, (len(b), 2)) * b[:, 2:]
        false = np.c_[rng.uniform(0, 1000, (20, 2)), rng.uniform(8, 120, (20, 2))]
        preds[key] = np.r_[np.c_[jitter, rng.uniform(0.3, 1.0, len(b))], np.c_[false, rng.uniform(0.0, 0.7, 20)]]
    return preds


def test_order_and_affine_score_invariance(gt):
    preds = _noisy(gt, 2)
    base = evaluate(preds, gt).ap
    assert 0.3 < base["easy"] < 0.95  # jitter and false positives cost AP
    rng = np.random.default_rng(3)
    shuffled = {k: v[rng.permutation(len(v))] for k, v in preds.items()}
    assert evaluate(shuffled, gt).ap == pytest.approx(base, abs=1e-12)
    rescaled = {k: np.c_[v[:, :4], 10 * v[:, 4] - 3] for k, v in preds.items()}  # min–max normalisation
    assert evaluate(rescaled, gt).ap == pytest.approx(base, abs=1e-9)
    worse = {k: v[: len(gt.boxes[k])] for k, v in preds.items()}  # drop the false positives
    assert all(evaluate(worse, gt).ap[s] > base[s] for s in base)


def test_folder_round_trip_and_missing_files(gt, tmp_path):
    preds = _noisy(gt, 4)
    events = gt.events[:3]  # write three events only: the other images are missing
    for (event, name), rows in preds.items():
        if event in events:
            write_prediction_file(tmp_path / event / f"{name}.txt", f"{name}.jpg", rows[:, :4], rows[:, 4])
    from_files = evaluate_folder(tmp_path, find_val_ground_truth())
    subset = {k: v for k, v in preds.items() if k[0] in events}
    in_memory = evaluate(subset, gt)
    assert from_files.ap == pytest.approx(in_memory.ap, abs=1e-5)  # files hold 6 decimals
    assert len(from_files.missing) == 3226 - sum(len(gt.files[e]) for e in events)
