"""ONNX Runtime against eager PyTorch for inference (book chapter "A face recognition system", deploying), the
shipped quick models on the CPU, at 1 and 2 threads (``torch.set_num_threads`` and ONNX Runtime's intra-op
threads alike), the two runtimes alternating round by round, the minimum of ``--repeats`` rounds:

- ``facelearn detect`` per image, end to end: read a 640×480 JPEG of a SynthFace group photo, ``detect`` with
  the CLI's defaults (the pyramid the image size chooses, its passes preprocessed, the network, decoding, NMS;
  ``--threshold`` changes the score threshold for both runtimes), write the WIDER prediction file; the two
  runtimes' detections are checked equal (within 1e-4) first;
- the detector's network alone on the same preprocessed pyramid passes, and what lies outside it (the end to
  end time minus the network's: the same code for both runtimes, except that ONNX Runtime resizes and
  preprocesses the enlarged pass itself, which may still take different times, after a different forward pass,
  under a different load);
- the same with the former shared code (kept below as the reference: every anchor softmaxed, the anchors
  computed for every pass, torchvision's NMS, one f-string per written box, NumPy's channel swap on reading,
  every pass resized by PyTorch), whose detections and written file are checked equal to the new code's bit for
  bit first (ONNX Runtime with its enlarging switched off, ``enlarge=False``);
- PFLD on a batch of 32 crops, the recognition network on a batch of 64 aligned crops.

Eager runs under ``torch.inference_mode``. Prints the versions, the CPU, each ratio ONNX Runtime / PyTorch;
not a test.

    python benchmarks/onnx_runtime_speed.py [--repeats 20] [--threads 1 2] [--threshold 0.02] [--only-detect]
                                            [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import nms

from facelearn import pipeline
from facelearn.data.files import read_bgr
from facelearn.data.synthface.people import render_people_scene, sample_people
from facelearn.detection.box_coding import decode_boxes, decode_landmarks
from facelearn.detection.evaluation import write_prediction_file
from facelearn.detection.postprocess import PRE_NMS_TOP_K, Detections, box_vote, detect, to_tensor
from facelearn.detection.test_time import in_band, scales_for
from facelearn.detection.training import read_rgb
from facelearn.onnx_export import OnnxRuntimeModel, example_input, export_onnx, with_runtime

PACKAGE = Path(pipeline.__file__).parent
CHECKPOINTS = {"detection": "detection/checkpoints/retinaface_mnet025_quick.pt",
               "recognition": "recognition/checkpoints/quick-arcface.pt",
               "landmarks": "landmarks/checkpoints/pfld-quick.pt"}
NMS = 0.4  # `facelearn detect`'s default


def cpu_name() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def former_generate_anchors(config, image_size: tuple[int, int], device=None) -> torch.Tensor:
    """The anchors as ``generate_anchors`` computed them before it kept the last sizes' (the reference)."""
    out = []
    for (fh, fw), stride, sizes in zip(config.feature_sizes(image_size), config.strides, config.sizes):
        ys = (torch.arange(fh, dtype=torch.float32, device=device) + 0.5) * stride
        xs = (torch.arange(fw, dtype=torch.float32, device=device) + 0.5) * stride
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        k = len(sizes)
        side = torch.tensor(sizes, dtype=torch.float32, device=device)
        level = torch.stack([cx[..., None].expand(fh, fw, k), cy[..., None].expand(fh, fw, k),
                             side.expand(fh, fw, k), side.expand(fh, fw, k)], dim=-1)
        out.append(level.reshape(-1, 4))
    return torch.cat(out)


def former_candidates(outputs: dict[str, torch.Tensor], anchors: torch.Tensor, *, score_threshold: float = 0.02,
                      pre_nms_top_k: int = PRE_NMS_TOP_K, variances: tuple[float, float] = (0.1, 0.2)
                      ) -> list[Detections]:
    """``candidates`` as it was: the softmax of every anchor, then the threshold (the reference)."""
    scores = F.softmax(outputs["cls"].float(), dim=-1)[..., 1]
    anchors = anchors.to(scores.device, torch.float32)
    results = []
    for b in range(scores.shape[0]):
        s = scores[b]
        keep = (s > score_threshold).nonzero().squeeze(1)
        keep = keep[s[keep].argsort(descending=True)[:pre_nms_top_k]]
        boxes = decode_boxes(outputs["box"][b, keep].float(), anchors[keep], variances)
        if "landmarks" in outputs:
            pts = decode_landmarks(outputs["landmarks"][b, keep].float(), anchors[keep], variances)
        else:
            pts = boxes.new_full((len(keep), 5, 2), -1.0)
        results.append(Detections(boxes, s[keep], pts))
    return results


@torch.no_grad()
def former_detect(model: torch.nn.Module, image, *, score_threshold: float = 0.5, nms_iou: float = 0.4,
                  scale=None, flip: bool = False, vote_iou: float | None = None, max_size: int | None = None,
                  max_detections: int = 750) -> Detections:
    """``detect`` as it was (the reference): every anchor softmaxed, the anchors computed for every pass."""
    x = to_tensor(image)
    h, w = x.shape[-2:]
    scales = scales_for(h, w, scale)
    device = next(model.parameters()).device
    config = getattr(model, "eager", model).anchor_config
    was_training = model.training
    model.eval()
    pool = []
    for factor in scales:
        if max_size is not None and max(h, w) * factor > max_size:
            factor = max_size / max(h, w)
        xs = x
        if factor != 1.0:
            xs = F.interpolate(x[None], size=(max(1, round(h * factor)), max(1, round(w * factor))), mode="bilinear",
                               align_corners=False, antialias=factor < 1)[0]
        anchors = former_generate_anchors(config, tuple(xs.shape[-2:]), device=device)
        for mirror in (False, True) if flip else (False,):
            out = model(model.preprocess((xs.flip(-1) if mirror else xs)[None].to(device)))
            found = former_candidates(out, anchors, score_threshold=score_threshold)[0]
            if scale is None:
                found = found.take(in_band(found.boxes).nonzero().squeeze(1))
            found = found.scaled(w / xs.shape[-1], h / xs.shape[-2])
            pool.append(found.mirrored(w) if mirror else found)
    model.train(was_training)
    pool = Detections.cat(pool)
    pool = pool.take(pool.scores.argsort(descending=True)[:PRE_NMS_TOP_K])
    det = pool.take(nms(pool.boxes, pool.scores, nms_iou)[:max_detections])
    if vote_iou is not None:
        det = box_vote(det, pool, vote_iou)
    det.boxes[:, 0::2] = det.boxes[:, 0::2].clamp(0, w)
    det.boxes[:, 1::2] = det.boxes[:, 1::2].clamp(0, h)
    return Detections(det.boxes.cpu(), det.scores.cpu(), det.landmarks.cpu())


def former_read_rgb(path: Path) -> np.ndarray:
    """``read_rgb`` as it was (the reference): the channel axis reversed by NumPy's strided copy."""
    return np.ascontiguousarray(read_bgr(path)[:, :, ::-1])


def former_write_prediction_file(path: Path, image_name: str, boxes: np.ndarray, scores: np.ndarray) -> None:
    """``write_prediction_file`` as it was (the reference): one f-string per box."""
    boxes, scores = np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores, dtype=np.float64).ravel()
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{x:.3f} {y:.3f} {w:.3f} {h:.3f} {s:.6f}\n" for (x, y, w, h), s in zip(boxes, scores))
    path.write_text(f"{image_name}\n{len(boxes)}\n{body}", encoding="utf-8")


def detect_image(model: torch.nn.Module, path: Path, out: Path, threshold: float, former: bool = False) -> np.ndarray:
    """What ``facelearn detect --threshold T`` does for one image → the written rows, x y w h score; with
    ``former``, the shared code as it was before (the reference)."""
    det = (former_detect if former else detect)(model, (former_read_rgb if former else read_rgb)(path),
                                                score_threshold=threshold, nms_iou=NMS)
    b = det.boxes.numpy()
    xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)
    (former_write_prediction_file if former else write_prediction_file)(out / f"{path.stem}.txt", path.stem, xywh,
                                                                        det.scores.numpy())
    return np.concatenate([xywh, det.scores.numpy()[:, None]], axis=1)


def pyramid_inputs(model: torch.nn.Module, path: Path, out: Path, threshold: float) -> list[torch.Tensor]:
    """The preprocessed inputs ``detect`` gives the network for the image at ``path``, one per pass (recorded
    while :func:`detect_image` writes to ``out``)."""
    passes: list[torch.Tensor] = []
    hook = model.register_forward_pre_hook(lambda _, args: passes.append(args[0].clone()))
    with torch.inference_mode():
        detect_image(model, path, out, threshold)
    hook.remove()
    return passes


#: The clock the rounds are timed with: wall time, or (``--clock cpu``, 1 thread only) the calling thread's CPU
#: time, which a loaded machine's other processes disturb less (both runtimes compute on the calling thread then).
CLOCK = {"wall": time.perf_counter, "cpu": time.thread_time}


def alternate(work: dict[str, Callable[[], object]], repeats: int,
              clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Each callable once to warm up, then ``repeats`` rounds of all in turn → the minimum seconds of each."""
    times: dict[str, list[float]] = {k: [] for k in work}
    with torch.inference_mode():
        for fn in work.values():
            fn()
        for _ in range(repeats):
            for k, fn in work.items():
                t = clock()
                fn()
                times[k].append(clock() - t)
    return {k: min(v) for k, v in times.items()}


def line(threads: int, what: str, t: dict[str, float]) -> str:
    return (f"{threads} thread{'s' if threads > 1 else ' '} {what:52s} torch {t['torch'] * 1e3:8.2f} ms  "
            f"onnxruntime {t['onnxruntime'] * 1e3:8.2f} ms  ratio {t['onnxruntime'] / t['torch']:.3f}")


def bench_detector(threads: int, repeats: int, image: Path, folder: Path, threshold: float,
                   clock: Callable[[], float] = time.perf_counter) -> None:
    model, _ = pipeline.load_model("detection", PACKAGE / CHECKPOINTS["detection"])
    path = export_onnx(model, "detection", model.preprocess(example_input(None)), folder / "detector.onnx")
    runtimes = {"torch": model, "onnxruntime": OnnxRuntimeModel(model, path, threads)}  # as with_runtime makes it
    # the former code resized every pass in PyTorch: the same graph without its own enlarging
    formers = {"torch": model, "onnxruntime": OnnxRuntimeModel(model, path, threads, enlarge=False)}
    with torch.inference_mode():
        rows = {k: detect_image(m, image, folder / k, threshold) for k, m in runtimes.items()}
        for k, m in formers.items():  # the shared code computes what it computed, bit for bit, and writes it so
            now = detect_image(m, image, folder / k, threshold)
            text = (folder / k / f"{image.stem}.txt").read_bytes()
            assert np.array_equal(now, detect_image(m, image, folder / k, threshold, former=True)), k
            assert text == (folder / k / f"{image.stem}.txt").read_bytes(), k
    assert rows["torch"].shape == rows["onnxruntime"].shape and len(rows["torch"]) > 0
    assert np.abs(rows["torch"] - rows["onnxruntime"]).max() < 1e-4, "the runtimes' detections differ"
    passes = pyramid_inputs(model, image, folder / "torch", threshold)
    work = {}
    for k, m in runtimes.items():
        work[k] = lambda m=m, k=k: detect_image(m, image, folder / k, threshold)
        work[f"former {k}"] = lambda m=formers[k], k=k: detect_image(m, image, folder / k, threshold, former=True)
        work[f"net {k}"] = lambda m=m: [m(x) for x in passes]
    t = alternate(work, repeats, clock)
    end_to_end = {k: t[k] for k in runtimes}
    former = {k: t[f"former {k}"] for k in runtimes}
    net = {k: t[f"net {k}"] for k in runtimes}
    largest = f"{passes[0].shape[-1]}×{passes[0].shape[-2]}"
    print(line(threads, f"facelearn detect per image ({len(rows['torch'])} detections)", end_to_end))
    print(line(threads, f"  network alone ({len(passes)} passes, largest {largest})", net))
    print(line(threads, "  outside the network (shared code)", {k: end_to_end[k] - net[k] for k in runtimes}))
    print(line(threads, "former shared code: detect per image", former))
    print(line(threads, "  former shared code: outside the network", {k: former[k] - net[k] for k in runtimes}))
    for k in runtimes:
        shared, before = end_to_end[k] - net[k], former[k] - net[k]
        print(f"{threads} thread{'s' if threads > 1 else ' '} {k:12s} shared code {shared * 1e3:6.2f} ms against "
              f"{before * 1e3:6.2f} ms before (ratio {shared / before:.3f}); threshold {threshold}")


def bench_crops(task: str, threads: int, repeats: int, clock: Callable[[], float] = time.perf_counter) -> None:
    model, size = pipeline.load_model(task, PACKAGE / CHECKPOINTS[task])
    runtimes = {"torch": model, "onnxruntime": with_runtime(model, task, size, "onnxruntime", threads)}
    x = torch.rand(64 if task == "recognition" else 32, 3, size, size, generator=torch.Generator().manual_seed(0))
    t = alternate({k: (lambda m=m: m(x)) for k, m in runtimes.items()}, repeats, clock)
    print(line(threads, f"{model.__class__.__name__} forward, batch {len(x)} × {size}²", t))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threshold", type=float, default=0.02, help="detect's score threshold (the CLI's default)")
    parser.add_argument("--only-detect", action="store_true", help="skip PFLD and the recognition network")
    parser.add_argument("--clock", choices=tuple(CLOCK), default="wall",
                        help="wall time, or the calling thread's CPU time (1 thread only)")
    args = parser.parse_args()
    if args.clock == "cpu" and args.threads != [1]:
        parser.error("--clock cpu times the calling thread alone: use it with --threads 1")
    import onnxruntime

    rng = np.random.default_rng(0)
    scene, _ = render_people_scene(rng, sample_people(rng, 6), list(range(6)), width=640, height=480)
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "group.jpg"
        cv2.imwrite(str(image), scene)
        print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, CPU ({cpu_name()}), "
              f"min of {args.repeats} alternating rounds ({args.clock} clock); detector: retinaface-mobilenet0.25 "
              f"({CHECKPOINTS['detection']}) on a 640×480 JPEG, threshold {args.threshold}, NMS {NMS}")
        for threads in args.threads:
            torch.set_num_threads(threads)
            bench_detector(threads, args.repeats, image, Path(tmp), args.threshold, CLOCK[args.clock])
            if not args.only_detect:
                for task in ("landmarks", "recognition"):
                    bench_crops(task, threads, args.repeats, CLOCK[args.clock])


if __name__ == "__main__":
    main()
