"""Greedy NMS (book chapter "Training and evaluating RetinaFace"): ``greedy_nms``, compiled with its grid, against
``torchvision.ops.nms`` (the baseline, measured in the same run) on the pools ``detect`` suppresses at the WIDER
protocol's score threshold 0.02: a SynthFace group photo and scikit-image's astronaut (a real photograph), the
shipped quick detector's candidates of every pyramid pass. The kept indices are checked equal first; the two
alternate round by round, the minimum of ``--repeats`` rounds. Prints the CPU thread count, the pool sizes and
the ratio greedy_nms / torchvision; not a test.

    OMP_NUM_THREADS=1 python benchmarks/suppression_speed.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import nms

from facelearn import pipeline
from facelearn.data.synthface.people import render_people_scene, sample_people
from facelearn.detection import postprocess
from facelearn.detection.suppression import GRID, _compiled, greedy_nms

DETECTOR = Path(postprocess.__file__).parent / "checkpoints" / "retinaface_mnet025_quick.pt"
THRESHOLD = 0.02


def pools() -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """name → (boxes, scores, IoU threshold) that ``detect`` hands to NMS for that photo."""
    from skimage import data

    model, _ = pipeline.load_model("detection", DETECTOR)
    rng = np.random.default_rng(0)
    scene, _ = render_people_scene(rng, sample_people(rng, 6), list(range(6)), width=640, height=480)
    photos = {"SynthFace group photo 640×480": np.ascontiguousarray(scene[:, :, ::-1]),
              "astronaut (scikit-image) 512×512": data.astronaut()}
    out, seen = {}, []
    real = postprocess.greedy_nms
    postprocess.greedy_nms = lambda b, s, t: seen.append((b, s, t)) or real(b, s, t)
    try:
        for name, image in photos.items():
            postprocess.detect(model, image, score_threshold=THRESHOLD)
            out[name] = seen.pop()
    finally:
        postprocess.greedy_nms = real
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    if _compiled() is None:
        raise SystemExit("numba is not installed: greedy_nms is torchvision's nms itself (pip install numba)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), grid {GRID}×{GRID}, min of "
          f"{args.repeats} alternating rounds; pools of the quick detector at threshold {THRESHOLD}")
    for name, (boxes, scores, iou) in pools().items():
        kept = nms(boxes, scores, iou)
        assert torch.equal(greedy_nms(boxes, scores, iou), kept), name
        times = {"greedy_nms": [], "torchvision": []}
        for _ in range(args.repeats):
            for key, fn in (("greedy_nms", greedy_nms), ("torchvision", nms)):
                t = time.perf_counter()
                fn(boxes, scores, iou)
                times[key].append(time.perf_counter() - t)
        ours, theirs = min(times["greedy_nms"]), min(times["torchvision"])
        print(f"{name:34s} {len(boxes):5d} candidates, {len(kept):4d} kept: greedy_nms {ours * 1e3:6.2f} ms, "
              f"torchvision {theirs * 1e3:6.2f} ms, ratio {ours / theirs:.3f}")


if __name__ == "__main__":
    main()
