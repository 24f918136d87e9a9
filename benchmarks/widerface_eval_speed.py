"""Time the WIDER FACE evaluator (facelearn.detection.evaluation) on the real val ground truth with
synthetic predictions: every face jittered (10 % of its size) plus 20 random false positives per image.

Prints seconds for reading the ground truth, reading the 3,226 prediction files and scoring the three
settings (one run each); and the evaluator against a baseline measured in the same run, a per-prediction /
per-threshold loop written the way evaluation.m reads (:func:`loop_baseline`), on every ``--every``-th image:
both give the same PR counts and AP (checked first), then they alternate for ``--rounds`` rounds and the
fastest round of each gives the ratio. Evaluation is NumPy (one thread; torch's threads set to 1 as well).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/widerface_eval_speed.py [--every 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from facelearn.data.widerface import ValGroundTruth, find_val_ground_truth, read_val_ground_truth
from facelearn.detection.evaluation import box_overlap, evaluate, normalise_scores, voc_ap
from facelearn.detection.predictions import read_predictions, write_prediction_file


def synthetic_predictions(gt: ValGroundTruth, seed: int = 0) -> dict:
    """(event, name) → (N, 5) x y w h score: each face moved by 10 % of its size (sizes of at least one pixel,
    as the prediction files require), then 20 random boxes."""
    rng = np.random.default_rng(seed)
    preds = {}
    for key, b in gt.boxes.items():
        size = np.maximum(b[:, 2:], 1)
        jitter = np.c_[b[:, :2] + rng.normal(0, 0.1, (len(b), 2)) * size, size]
        false = np.c_[rng.uniform(0, 1000, (20, 2)), rng.uniform(8, 120, (20, 2))]
        preds[key] = np.r_[np.c_[jitter, rng.uniform(0.3, 1, len(b))], np.c_[false, rng.uniform(0, 0.7, 20)]]
    return preds


def subset(gt: ValGroundTruth, keys: list) -> ValGroundTruth:
    """The ground truth of ``keys`` (event, name) alone."""
    wanted = set(keys)
    files = {e: [f for f in gt.files[e] if (e, f) in wanted] for e in gt.events}
    events = [e for e in gt.events if files[e]]
    return ValGroundTruth(events, {e: files[e] for e in events}, {k: gt.boxes[k] for k in keys},
                          {s: {k: v[k] for k in keys} for s, v in gt.keep.items()})


def loop_baseline(preds: dict, gt: ValGroundTruth, setting: str, thresholds: int = 1000) -> dict:
    """evaluation.m's loops, one prediction and one threshold at a time (the shape of the MATLAB code), on raw
    scores → {"proposals": (T,), "recalled": (T,) sums over images, "ap": AP}."""
    norm = normalise_scores(preds)
    pr, faces = np.zeros((thresholds, 2), dtype=np.int64), 0
    for key in gt.boxes:
        g, kept = gt.boxes[key], np.zeros(len(gt.boxes[key]))
        kept[gt.keep[setting][key]] = 1
        faces += int(kept.sum())
        p = norm.get(key, np.zeros((0, 5)))
        if len(g) == 0 or len(p) == 0:
            continue
        p = p[np.argsort(-p[:, 4], kind="stable")]
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
        for t in range(thresholds):
            above = np.flatnonzero(p[:, 4] >= 1 - (t + 1) / thresholds)
            if len(above):
                pr[t] += (proposal[: above[-1] + 1] == 1).sum(), int(pred_recall[above[-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        precision, recall = pr[:, 1] / pr[:, 0], pr[:, 1] / faces
    return {"proposals": pr[:, 0], "recalled": pr[:, 1], "ap": voc_ap(recall, precision)}


def check_same(preds: dict, gt: ValGroundTruth) -> dict[str, float]:
    """The evaluator's and the loop's PR counts and AP per setting, which must be equal → the AP."""
    result = evaluate(preds, gt)
    for setting, curve in result.curves.items():
        loop = loop_baseline(preds, gt, setting)
        if not (np.array_equal(loop["proposals"], curve.proposals) and np.array_equal(loop["recalled"], curve.recalled)
                and loop["ap"] == result.ap[setting]):
            raise AssertionError(f"{setting}: the loop baseline (AP {loop['ap']!r}) and the evaluator "
                                 f"(AP {result.ap[setting]!r}) differ")
    return result.ap


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=16, help="the loop baseline scores every N-th image")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
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
    print(f"machine: {platform.processor() or platform.machine()}, device cpu, 1 thread (evaluation is NumPy)")
    print(f"images {result.images}, predictions {n}, AP " +
          ", ".join(f"{s} {a:.4f}" for s, a in result.ap.items()))
    print(f"read ground truth         {t_gt:7.2f} s")
    print(f"read prediction files     {t_read:7.2f} s")
    print(f"evaluate (3 settings)     {t_eval:7.2f} s")
    print(f"total                     {t_gt + t_read + t_eval:7.2f} s")

    small = subset(gt, list(gt.boxes)[:: args.every])
    small_preds = {k: preds[k] for k in small.boxes}
    ap = check_same(small_preds, small)
    fns = {"loop": lambda: [loop_baseline(small_preds, small, s) for s in ("easy", "medium", "hard")],
           "evaluator": lambda: evaluate(small_preds, small)}
    best = dict.fromkeys(fns, float("inf"))
    for r in range(args.rounds):
        for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            t0 = time.perf_counter()
            fns[name]()
            best[name] = min(best[name], time.perf_counter() - t0)
    print(f"every {args.every}th image ({len(small.boxes)} images, 3 settings), the same PR counts and AP "
          f"({', '.join(f'{s} {a:.4f}' for s, a in ap.items())}); fastest of {args.rounds} alternating rounds:")
    print(f"  loop baseline (evaluation.m's shape) {best['loop']:8.3f} s")
    print(f"  evaluator (library)                  {best['evaluator']:8.3f} s   "
          f"{best['evaluator'] / best['loop']:.4f}× the baseline")


if __name__ == "__main__":
    main()
