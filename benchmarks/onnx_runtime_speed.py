"""ONNX Runtime against PyTorch for inference (book chapter "A face recognition system", deploying): ``detect``
end to end on one 640×480 image (network, decoding, NMS), PFLD on a batch of 32 crops and the recognition
network on a batch of 64 aligned crops — the shipped quick models, one thread, the two runtimes interleaved
round by round, the median of ``--repeats`` rounds. Prints each ratio ONNX Runtime / PyTorch; not a test.

    python benchmarks/onnx_runtime_speed.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from facelearn import pipeline
from facelearn.detection.postprocess import detect
from facelearn.onnx_export import with_runtime

PACKAGE = Path(pipeline.__file__).parent
CHECKPOINTS = {"detection": "detection/checkpoints/retinaface_mnet025_quick.pt",
               "recognition": "recognition/checkpoints/quick-arcface.pt",
               "landmarks": "landmarks/checkpoints/pfld-quick.pt"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import onnxruntime

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, 1 thread, CPU, median of {args.repeats}")
    for task, path in CHECKPOINTS.items():
        model, size = pipeline.load_model(task, PACKAGE / path)
        runtimes = {"torch": model, "onnxruntime": with_runtime(model, task, size, "onnxruntime")}
        if task == "detection":
            work = {k: (lambda m=m: detect(m, image, score_threshold=0.5)) for k, m in runtimes.items()}
            what = "detect() on 640×480"
        else:
            x = torch.rand(64 if task == "recognition" else 32, 3, size, size)
            work = {k: (lambda m=m: m(x)) for k, m in runtimes.items()}
            what = f"{model.__class__.__name__} forward, batch {len(x)} × {size}²"
        times: dict[str, list[float]] = {k: [] for k in work}
        with torch.no_grad():
            for k in work:
                work[k]()  # warm-up
            for _ in range(args.repeats):
                for k, fn in work.items():
                    t = time.perf_counter()
                    fn()
                    times[k].append(time.perf_counter() - t)
        t_torch, t_ort = (statistics.median(times[k]) * 1e3 for k in ("torch", "onnxruntime"))
        print(f"{task:12s} {what:40s} torch {t_torch:8.2f} ms  onnxruntime {t_ort:8.2f} ms  ratio {t_ort / t_torch:.2f}")


if __name__ == "__main__":
    main()
