"""The official WIDER FACE protocol (facelearn.detection.evaluation): hand-computed APs on a tiny ground
truth written in the official .mat structure, an independent literal re-implementation of the MATLAB
loops, score-order invariance (and why the unsorted Python port is wrong), bad files, and the CLI."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from facelearn.cli import main
from facelearn.data.widerface import read_val_ground_truth
from facelearn.detection.evaluation import (
    box_overlap, evaluate, evaluate_folder, image_evaluation, voc_ap)
from facelearn.detection.predictions import read_prediction_file, write_prediction_file
from facelearn.errors import DataError


# -- a tiny ground truth in the official .mat structure (cell arrays as object arrays) ------------------
def _cells(items):
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def write_gt(folder: Path, images: dict[str, dict[str, list]], keep: dict[str, dict[str, list[int]]]) -> Path:
    """images[event][name] = list of x y w h; keep[setting][f"{event}/{name}"] = 0-based kept faces
    (default: all faces). Writes the four official .mat files with 1-based ``gt_list``."""
    folder.mkdir(parents=True, exist_ok=True)
    events = list(images)
    event_list = _cells([np.array([e]) for e in events])
    file_list = _cells([_cells([np.array([n]) for n in images[e]]) for e in events])
    boxes = _cells([_cells([np.array(b, dtype=np.float64).reshape(-1, 4) for b in images[e].values()])
                    for e in events])
    common = {"event_list": event_list, "file_list": file_list, "face_bbx_list": boxes}
    scipy.io.savemat(folder / "wider_face_val.mat", common)
    for setting in ("easy", "medium", "hard"):
        gt_list = _cells([_cells([
            (np.array(keep.get(setting, {}).get(f"{e}/{n}", range(len(b))), dtype=np.float64) + 1).reshape(-1, 1)
            for n, b in images[e].items()]) for e in events])
        scipy.io.savemat(folder / f"wider_{setting}_val.mat", {**common, "gt_list": gt_list})
    return folder


def write_preds(folder: Path, preds: dict[str, list], rng: np.random.Generator | None = None) -> Path:
    """preds["event/name"] = rows x y w h score, written in the given order (or shuffled by ``rng``)."""
    for key, rows in preds.items():
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
        if rng is not None:
            rows = rows[rng.permutation(len(rows))]
        write_prediction_file(folder / f"{key}.txt", key.split("/")[1] + ".jpg", rows[:, :4], rows[:, 4])
    return folder


# the hand-made case: event 0--A, images a, b (faces) and c (no faces)
IMAGES = {"0--A": {"a": [[10, 10, 20, 20], [100, 100, 30, 30]],
                   "b": [[50, 50, 40, 40], [200, 10, 20, 20]],
                   "c": []}}
KEEP = {"easy": {"0--A/a": [0]}, "medium": {"0--A/a": [0]}}  # a's face 1 is ignored by easy and medium
PREDS = {"0--A/a": [[10, 10, 20, 20, 0.9],      # TP (a0)
                    [300, 300, 10, 10, 0.8],    # FP
                    [100, 100, 30, 30, 0.6]],   # a1: ignored by easy/medium, TP for hard
         "0--A/b": [[51, 51, 40, 40, 0.7],      # TP (b0, IoU 1600/1762)
                    [50, 50, 40, 40, 0.5],      # duplicate of b0: FP
                    [200, 10, 20, 20, 0.4]],    # TP (b1)
         "0--A/c": [[0, 0, 50, 50, 0.95]]}      # an image without faces: skipped, as evaluation.m does


def ap_by_hand(ranked: list[str], faces: int) -> Fraction:
    """VOC all-point AP of a ranked list of 'tp'/'fp' (exact fractions)."""
    points, tp = [], 0
    for k, kind in enumerate(ranked, start=1):
        tp += kind == "tp"
        points.append((Fraction(tp, faces), Fraction(tp, k)))
    ap, previous = Fraction(0), Fraction(0)
    for recall, _ in points:
        if recall > previous:
            ap += (recall - previous) * max(p for r, p in points if r >= recall)
            previous = recall
    return ap


@pytest.fixture
def tiny(tmp_path):
    return write_gt(tmp_path / "gt", IMAGES, KEEP), tmp_path


def test_hand_computed_ap(tiny):
    gt_dir, tmp = tiny
    result = evaluate_folder(write_preds(tmp / "pred", PREDS), gt_dir)
    easy = ap_by_hand(["tp", "fp", "tp", "fp", "tp"], 3)  # the ignored a1 is no proposal
    hard = ap_by_hand(["tp", "fp", "tp", "tp", "fp", "tp"], 4)
    assert easy == Fraction(34, 45) and hard == Fraction(19, 24)  # worked out on paper
    assert result.ap["easy"] == pytest.approx(float(easy), abs=1e-12)
    assert result.ap["medium"] == pytest.approx(float(easy), abs=1e-12)
    assert result.ap["hard"] == pytest.approx(float(hard), abs=1e-12)
    assert result.curves["hard"].faces == 4 and result.curves["easy"].faces == 3
    assert result.predictions == 7 and result.missing == ()
    # at the lowest threshold: 5 (easy) / 6 (hard) proposals, c's prediction never counted
    assert result.curves["easy"].proposals[-1] == 5 and result.curves["hard"].proposals[-1] == 6


def test_shuffled_files_score_the_same(tiny):
    gt_dir, tmp = tiny
    ordered = evaluate_folder(write_preds(tmp / "sorted", PREDS), gt_dir)
    for seed in range(5):
        shuffled = evaluate_folder(write_preds(tmp / f"shuffled{seed}", PREDS, np.random.default_rng(seed)), gt_dir)
        assert shuffled.ap == pytest.approx(ordered.ap, abs=1e-12)


def _port_ap(preds: dict[str, np.ndarray], gt, setting: str, sort: bool) -> float:
    """A literal loop-by-loop re-implementation of evaluation.m; ``sort=False`` is what the popular Python
    port does (it reads files in file order, never sorting them)."""
    scores = np.concatenate([p[:, 4] for p in preds.values() if len(p)])
    lo, hi = scores.min(), scores.max()
    curve = np.zeros((1000, 2))
    faces = 0
    for event in gt.events:
        for name in gt.files[event]:
            g = gt.boxes[event, name]
            keep = gt.keep[setting][event, name]
            faces += len(keep)
            p = preds.get(f"{event}/{name}", np.zeros((0, 5))).copy()
            if len(g) == 0 or len(p) == 0:
                continue
            p[:, 4] = (p[:, 4] - lo) / (hi - lo)
            if sort:
                p = p[np.argsort(-p[:, 4], kind="stable")]
            ignore = np.zeros(len(g))
            ignore[keep] = 1
            gx = np.c_[g[:, :2], g[:, :2] + g[:, 2:]]
            recall_list, proposal, pred_recall = np.zeros(len(g)), np.ones(len(p)), np.zeros(len(p))
            for h in range(len(p)):
                b = [p[h, 0], p[h, 1], p[h, 0] + p[h, 2], p[h, 1] + p[h, 3]]
                ov = []
                for x1, y1, x2, y2 in gx:
                    w = min(x2, b[2]) - max(x1, b[0]) + 1
                    hh = min(y2, b[3]) - max(y1, b[1]) + 1
                    inter = w * hh
                    union = (x2 - x1 + 1) * (y2 - y1 + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
                    ov.append(0.0 if w <= 0 or hh <= 0 else inter / union)
                idx = int(np.argmax(ov))
                if ov[idx] >= 0.5:
                    if ignore[idx] == 0:
                        recall_list[idx], proposal[h] = -1, -1
                    elif recall_list[idx] == 0:
                        recall_list[idx] = 1
                pred_recall[h] = (recall_list == 1).sum()
            for t in range(1000):
                above = np.flatnonzero(p[:, 4] >= 1 - (t + 1) / 1000)
                if len(above):
                    r = above[-1]
                    curve[t] += [(proposal[:r + 1] == 1).sum(), pred_recall[r]]
    with np.errstate(invalid="ignore", divide="ignore"):
        return voc_ap(curve[:, 1] / faces, curve[:, 1] / curve[:, 0])


def test_unsorted_port_differs_and_sorting_fixes_it(tiny):
    gt_dir, _ = tiny
    gt = read_val_ground_truth(gt_dir)
    reverse = {k: np.asarray(v, dtype=float)[::-1] for k, v in PREDS.items()}  # lowest score first
    ours = evaluate({tuple(k.split("/")): v for k, v in reverse.items()}, gt).ap
    for setting in ("easy", "hard"):
        assert _port_ap(reverse, gt, setting, sort=True) == pytest.approx(ours[setting], abs=1e-12)
        assert abs(_port_ap(reverse, gt, setting, sort=False) - ours[setting]) > 0.05


def _random_case(rng: np.random.Generator, n_images: int = 12):
    images, keep, preds = {"0--R": {}}, {"easy": {}, "medium": {}, "hard": {}}, {}
    for i in range(n_images):
        n = int(rng.integers(0, 6))
        g = np.c_[rng.integers(0, 200, (n, 2)), rng.integers(2, 60, (n, 2))].astype(float)
        if n >= 2 and rng.random() < 0.3:
            g[1] = g[0]  # identical faces: the first wins ties
        images["0--R"][f"i{i}"] = g.tolist()
        hard = rng.permutation(n)[: int(rng.integers(0, n + 1))]
        keep["hard"][f"0--R/i{i}"] = sorted(hard.tolist())
        keep["medium"][f"0--R/i{i}"] = sorted(hard[: len(hard) // 2 + 1].tolist()) if len(hard) else []
        keep["easy"][f"0--R/i{i}"] = sorted(hard[:1].tolist())
        rows = [np.r_[b + rng.normal(0, 1, 4), rng.random()] for b in g for _ in range(int(rng.integers(0, 3)))]
        rows += [np.r_[rng.integers(0, 200, 2), rng.integers(2, 60, 2), rng.random()]
                 for _ in range(int(rng.integers(0, 4)))]
        if rows:
            preds[f"0--R/i{i}"] = np.array(rows)
    return images, keep, preds


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_equals_literal_loops(tmp_path, seed):
    rng = np.random.default_rng(seed)
    images, keep, preds = _random_case(rng)
    gt = read_val_ground_truth(write_gt(tmp_path, images, keep))
    ours = evaluate({tuple(k.split("/")): v for k, v in preds.items()}, gt).ap
    for setting in ("easy", "medium", "hard"):
        if sum(len(v) for v in gt.keep[setting].values()) == 0:
            assert np.isnan(ours[setting])
            continue
        assert ours[setting] == pytest.approx(_port_ap(preds, gt, setting, sort=True), abs=1e-12)


def test_image_evaluation_matches_greedy_definition():
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [40, 40, 10, 10]], dtype=float)
    pred = np.array([[0, 0, 10, 10, 0.2], [40, 40, 10, 10, 0.9], [1, 1, 10, 10, 0.5], [80, 80, 5, 5, 0.7]])
    order, pred_recall, proposal = image_evaluation(pred, gt, keep=np.array([0]))
    assert order.tolist() == [1, 3, 2, 0]
    # sorted: face 2 (ignored), FP, face 0 (kept, first of the tied identical faces), duplicate of face 0
    assert proposal.tolist() == [False, True, True, True]
    assert pred_recall.tolist() == [0, 0, 1, 1]


def test_box_overlap_plus_one_convention():
    a = np.array([[0, 0, 9, 9]], dtype=float)  # 10 x 10 pixels with the +1 convention
    b = np.array([[5, 0, 14, 9], [20, 20, 30, 30], [10, 0, 19, 9]], dtype=float)
    iou = box_overlap(a, b)[:, 0]
    assert iou[0] == pytest.approx(50 / 150) and iou[1] == 0 and iou[2] == 0


def test_voc_ap_by_hand_and_nan_precision():
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == pytest.approx(0.75)
    # NaN precision (nothing proposed yet at high thresholds) is skipped, as MATLAB's max does
    assert voc_ap(np.array([0.0, 0.5, 1.0]), np.array([np.nan, 1.0, 0.5])) == pytest.approx(0.75)


def test_missing_prediction_file_is_counted(tiny):
    gt_dir, tmp = tiny
    partial = {k: v for k, v in PREDS.items() if k != "0--A/b"}
    result = evaluate_folder(write_preds(tmp / "pred", partial), gt_dir)
    assert result.missing == ("0--A/b",)
    assert result.ap["easy"] == pytest.approx(float(ap_by_hand(["tp", "fp"], 3)))
    extra = write_preds(tmp / "pred", {"0--A/zzz": [[0, 0, 1, 1, 0.5]]})
    assert evaluate_folder(extra, gt_dir).unexpected == ("0--A/zzz.txt",)


def test_constant_scores_become_one(tiny):
    gt_dir, tmp = tiny
    perfect = {f"0--A/{n}": [[*b, 1.0] for b in boxes] for n, boxes in IMAGES["0--A"].items() if boxes}
    result = evaluate_folder(write_preds(tmp / "pred", perfect), gt_dir)
    assert result.ap == pytest.approx({"easy": 1.0, "medium": 1.0, "hard": 1.0})


@pytest.mark.parametrize("text, line, words", [
    ("", 1, "empty"),
    ("a.jpg\n", 2, "count"),
    ("a.jpg\ntwo\n1 2 3 4 0.5\n", 2, "box count"),
    ("a.jpg\n-1\n", 2, "whole number"),
    ("a.jpg\n2\n1 2 3 4 0.5\n", 2, "says 2 boxes but 1"),
    ("a.jpg\n1\n1 2 3 4 0.5\n5 6 7 8 0.1\n", 4, "says 1 boxes but 2"),
    ("a.jpg\n2\n1 2 3 4 0.5\n1 2 3 x 0.5\n", 4, "expected numbers"),
    ("a.jpg\n2\n1 2 3 4 0.5\n1 2 3 4\n", 4, "expected 5 numbers"),
    ("a.jpg\n1\n1 2 nan 4 0.5\n", 3, "non-finite"),
])
def test_bad_prediction_files(tmp_path, text, line, words):
    path = tmp_path / "x.txt"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        read_prediction_file(path)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: ") and words in message and "\n" not in message


def test_prediction_file_tolerates_extra_columns_and_blank_lines(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("a.jpg\n\n2\n1 2 3 4 0.5 9 9\n\n5 6 7 8 0.25\n")
    assert read_prediction_file(path).tolist() == [[1, 2, 3, 4, 0.5], [5, 6, 7, 8, 0.25]]


def test_cli_json_and_errors(tiny, capsys):
    gt_dir, tmp = tiny
    pred = write_preds(tmp / "pred", PREDS)
    assert main(["eval", "widerface", "--pred", str(pred), "--gt", str(gt_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ap"]["hard"] == pytest.approx(19 / 24)
    assert len(out["curves"]["easy"]["precision"]) == 1000 and out["curves"]["easy"]["precision"][0] is None
    assert main(["eval", "widerface", "--pred", str(pred), "--gt", str(gt_dir)]) == 0
    assert "hard    AP 0.7917" in capsys.readouterr().out
    for args in (["--pred", str(tmp / "nowhere"), "--gt", str(gt_dir)], ["--pred", str(pred), "--gt", str(tmp / "no")]):
        assert main(["eval", "widerface", *args, "--json"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("facelearn eval") and ": error: " in err and "\n" not in err and "no" in err
    (pred / "0--A" / "a.txt").write_text("a.jpg\n3\n1 2 3 4 0.5\n")
    assert main(["eval", "widerface", "--pred", str(pred), "--gt", str(gt_dir)]) == 2
    assert f"{pred / '0--A' / 'a.txt'}:2:" in capsys.readouterr().err
