"""The quick models on real photographs: the table of ``facelearn eval real-photos`` for each test-time
protocol, Haar's figures beside them, the same photos resized so their faces are tiny or fill the frame, and
SynthFace val AP under each protocol (chapter 12's 100 validation scenes).

    OMP_NUM_THREADS=1 python benchmarks/real_photos.py [--shared ../shared/data]

A benchmark of accuracy, measured once (nothing random): the baselines, measured in the same run, are Haar's
cascade for the photos' AP and the single-pass protocol for the seconds (``× single``: a protocol's seconds
over its; Haar's seconds leave SynthFace val out). Prints the checkpoint, the device and the thread count.

The labelled photos and small_lfw.bin are read from ``--shared`` (the project's fixtures); without them only
the no-face photos and SynthFace val are measured.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from facelearn.detection.real_photos import (LabelledPhoto, evaluate_detector, haar_detector, no_face_photos,
                                             retinaface_detector)
from facelearn.detection.test_time import PROTOCOLS
from facelearn.detection.training import (PAGE_SCENES, PAGE_VAL_SCENES, evaluate_model, find_checkpoint,
                                          load_detector, synthface_root, train_config)
from facelearn.real_photos import RealPhotoReport, five_point_errors, load_photos, verification_on_pairs


def resized(photo: LabelledPhoto, image: np.ndarray, roi: tuple[float, float, float, float], width: int):
    """The region ``roi`` (x1 y1 x2 y2) of a labelled photo resized to ``width`` pixels, labels moved alike."""
    x1, y1, x2, y2 = (int(round(v)) for v in roi)
    f = width / (x2 - x1)
    crop = cv2.resize(image[y1:y2, x1:x2], (width, int(round((y2 - y1) * f))),
                      interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    shift = np.array([x1, y1, x1, y1], dtype=np.float64)
    return (LabelledPhoto(f"{photo.name}@{width}px", (photo.boxes - shift) * f, (photo.points - shift[:2]) * f,
                          (crop.shape[1], crop.shape[0])), crop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    shared = Path(args.shared)
    labels, images = shared / "real_photos" / "labels.json", shared / "reference_models" / "biubug6_mobilenet025" / "images"
    photos = load_photos(labels, images) if labels.is_file() else []
    if not photos:
        print(f"{labels} is absent: no labelled photos, only the no-face photos and SynthFace val")
    by_name = {p.name: (p, im) for p, im in photos}
    variants = []
    if "t1.jpg" in by_name:  # the group photo at 1/8 of its width: faces of 14-18 px
        variants.append(resized(*by_name["t1.jpg"], (0, 0, 1280, 886), 160))
    if "astronaut.jpg" in by_name:  # her face filling a 600 px frame
        variants.append(resized(*by_name["astronaut.jpg"], (160, 40, 290, 200), 600))
    no_face = no_face_photos()
    checkpoint = find_checkpoint("retinaface_mnet025_quick.pt")
    model = load_detector(checkpoint)
    root = synthface_root(train_config("quick", synth_train=PAGE_SCENES, synth_val=PAGE_VAL_SCENES), progress=False)

    print(f"model {checkpoint.name} ({model.config.backbone}), device {next(model.parameters()).device}, "
          f"{torch.get_num_threads()} thread(s); {len(photos)} labelled photos, {len(no_face)} without a face")
    print(f"{'detector':<24}{'AP@0.4':>8}{'confident FPs':>15}{'AP resized':>12}{'SynthFace val easy/medium/hard':>34}"
          f"{'seconds':>9}{'× single':>9}")
    report, single = RealPhotoReport(), None
    for name in ("single", "synthface", "real"):
        start = time.perf_counter()
        detector = retinaface_detector(model, **PROTOCOLS[name].keywords)
        r = report.detection[f"retinaface ({name})"] = evaluate_detector(detector, photos, no_face)
        small = evaluate_detector(detector, variants, {}).ap if variants else float("nan")
        ap = evaluate_model(model, root, progress=False, **PROTOCOLS[name].keywords).ap
        seconds = time.perf_counter() - start
        single = single or seconds
        print(f"{'retinaface ' + name:<24}{r.ap:>8.3f}{r.total_false_positives:>15}{small:>12.3f}"
              f"{'  '.join(f'{v:.3f}' for v in ap.values()):>34}{seconds:>9.1f}{seconds / single:>9.2f}", flush=True)
    start = time.perf_counter()
    haar = report.detection["haar cascade"] = evaluate_detector(haar_detector(), photos, no_face)
    small = evaluate_detector(haar_detector(), variants, {}).ap if variants else float("nan")
    seconds = time.perf_counter() - start
    print(f"{'haar cascade':<24}{haar.ap:>8.3f}{haar.total_false_positives:>15}{small:>12.3f}{'-':>34}"
          f"{seconds:>9.1f}{'-':>9}")
    print("confident false positives per photo:")
    for name, r in report.detection.items():
        print(f"  {name:<24}" + ", ".join(f"{k} {v}" for k, v in r.false_positives.items()))
    if variants:
        print("resized photos: " + ", ".join(f"{p.name} (faces {np.round(p.boxes[:, 3] - p.boxes[:, 1]).astype(int).tolist()} px)"
                                             for p, _ in variants))
    pairs = shared / "real_photos" / "small_lfw.bin"
    if pairs.is_file():
        from facelearn.data.identities import read_bin
        from facelearn.recognition.training import load_model, shipped_checkpoint

        recogniser, rec, _ = load_model(shipped_checkpoint("arcface"))
        report.verification = verification_on_pairs(recogniser, read_bin(pairs, size=rec.input_size)[0])
    if photos:
        from facelearn.landmarks import recipe

        report.landmarks = five_point_errors(recipe.load(recipe.shipped_checkpoint("pfld-quick")), photos)
    for line in report.lines()[len(report.detection):]:
        print(line)


if __name__ == "__main__":
    main()
