"""Time the WIDER FACE evaluator (facelearn.detection.evaluation) on the real val ground truth with
synthetic predictions: every face jittered (10 % of its size) plus 20 random false positives per image.

Prints seconds for reading the ground truth, reading the 3,226 prediction files, and scoring the three
settings; and, as a baseline measured in the same run, a per-prediction / per-threshold loop written the
way evaluation.m reads (on a subset of images, scaled to the whole set).

    .venv/bin/python benchmarks/widerface_eval_speed.py
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from facelearn.data.widerface import find_val_ground_truth, read_val_ground_truth
from facelearn.detection.evaluation import (
    box_overlap, evaluate, normalise_scores)
from facelearn.detection.predictions import read_predictions, write_prediction_file


def synthetic_predictions(gt, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    preds = {}
    for key, b in gt.boxes.items():
        jitter = b + np.c_[rng.normal(0, 0.1, (len(b), 2)) * b[:, 2:], np.zeros((len(b), 2))]
        false = np.c_[rng.uniform(0, 1000, (20, 2)), rng.uniform(8, 120, (20, 2))]
        preds[key] = np.r_[np.c_[jitter, rng.uniform(0.3, 1, len(b))], np.c_[false, rng.uniform(0, 0.7, 20)]]
    return preds


def loop_baseline(preds, gt, setting: str, keys) -> None:
    """evaluation.m's loops, one prediction and one threshold at a time (the shape of the MATLAB code)."""
    for key in keys:
        p, g = preds[key], gt.boxes[key]
        p = p[np.argsort(-p[:, 4], kind="stable")]
        kept = np.zeros(len(g))
        kept[gt.keep[setting][key]] = 1
        gx = np.c_[g[:, :2], g[:, :2] + g[:, 2:]]
        recall, proposal, pred_recall = np.zeros(len(g)), np.ones(len(p)), np.zeros(len(p))
        for h in range(len(p)):
            ov = box_overlap(gx, np.r_[p[h, :2], p[h, :2] + p[h, 2:4]][None])[0]
            i = int(ov.argmax())
            if ov[i] >= 0.5:
                if kept[i] == 0:
                    recall[i], proposal[h] = -1, -1
                elif recall[i] == 0:
                    recall[i] = 1
            pred_recall[h] = (recall == 1).sum()
        for t in range(1000):
            above = np.flatnonzero(p[:, 4] >= 1 - (t + 1) / 1000)
            if len(above):
                (proposal[: above[-1] + 1] == 1).sum(), pred_recall[above[-1]]


def main() -> None:
    import torch

    torch.set_num_threads(1)
    folder = find_val_ground_truth()
    t0 = time.perf_counter()
    gt = read_val_ground_truth(folder)
    t_gt = time.perf_counter() - t0
    preds = synthetic_predictions(gt)
    n = sum(len(v) for v in preds.values())
    with tempfile.TemporaryDirectory() as tmp:
        for (event, name), rows in preds.items():
            write_prediction_file(Path(tmp) / event / f"{name}.txt", f"{name}.jpg", rows[:, :4], rows[:, 4])
        t0 = time.perf_counter()
        read = read_predictions(tmp, gt)
        t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = evaluate(read.boxes, gt)
    t_eval = time.perf_counter() - t0
    keys = list(gt.boxes)[::16]
    norm = normalise_scores(preds)
    t0 = time.perf_counter()
    for setting in ("easy", "medium", "hard"):
        loop_baseline(norm, gt, setting, keys)
    t_loop = (time.perf_counter() - t0) * len(gt.boxes) / len(keys)
    print(f"machine: {platform.processor() or platform.machine()}, torch threads 1 (evaluation is NumPy)")
    print(f"images {result.images}, predictions {n}, AP " +
          ", ".join(f"{s} {a:.4f}" for s, a in result.ap.items()))
    print(f"read ground truth         {t_gt:7.2f} s")
    print(f"read prediction files     {t_read:7.2f} s")
    print(f"evaluate (3 settings)     {t_eval:7.2f} s")
    print(f"total                     {t_gt + t_read + t_eval:7.2f} s")
    print(f"loop baseline (3 settings, {len(keys)} images scaled to {len(gt.boxes)}) {t_loop:7.1f} s "
          f"-> vectorised is {t_loop / t_eval:.0f}x faster")


if __name__ == "__main__":
    main()
