"""``facelearn embed`` and ``facelearn landmarks``: the recognition and landmark networks on a reader's own
images — aligned crops, or whole photographs with ``--detect`` (book chapter "A face recognition system")."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facelearn import cli_types
from facelearn.cli import common, subparser
from facelearn.errors import DataError

_EXAMPLES = {
    "embed": "facelearn embed photos/ --detect facelearn/detection/checkpoints/retinaface_mnet025_quick.pt "
             "--checkpoint facelearn/recognition/checkpoints/quick-arcface.pt --out E.npy",
    "landmarks": "facelearn landmarks photos/ --detect facelearn/detection/checkpoints/retinaface_mnet025_quick.pt "
                 "--checkpoint facelearn/landmarks/checkpoints/pfld-quick.pt --out L.json",
}


def _load(task: str, path: str, runtime: str):  # noqa: ANN202
    """(network, crop size) of a checkpoint, run by PyTorch or by ONNX Runtime from its exported graph."""
    from facelearn.onnx_export import with_runtime
    from facelearn.pipeline import load_model

    model, size = load_model(task, path)
    return with_runtime(model, task, size, runtime), size


def _images(targets: list[str]) -> list[Path]:
    from facelearn.detection.commands import _images as images_of

    return [p for t in targets for p in images_of(Path(t))]


def _photo_faces(args: argparse.Namespace):
    """(path, image, detections) per input image when ``--detect`` is given, else the image as one face."""
    from tqdm.auto import tqdm

    from facelearn.detection.training import read_rgb
    from facelearn.pipeline import find_faces

    detector = _load("detection", args.detect, args.runtime)[0] if args.detect else None
    for path in tqdm(_images(args.targets), desc=args.command, disable=args.quiet):
        image = read_rgb(path)
        yield path, image, (find_faces(detector, image, score_threshold=args.threshold) if detector else None)


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1))


def _cmd_embed(args: argparse.Namespace) -> int:
    import cv2

    from facelearn.pipeline import align_all, embed_crops

    model, size = _load("recognition", args.checkpoint, args.runtime)
    rows, sources = [], []
    for path, image, det in _photo_faces(args):
        if det is None:
            crops = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)[None]
            sources.append({"row": len(sources), "source": str(path)})
        else:
            crops = align_all(image, det.landmarks, size)
            for k in range(len(det)):
                sources.append({"row": len(sources), "source": str(path), "face": k,
                                "box": [round(v, 2) for v in det.boxes[k].tolist()],
                                "score": round(float(det.scores[k]), 4),
                                "landmarks": np.round(det.landmarks[k].numpy(), 2).tolist()})
        if len(crops):
            rows.append(embed_crops(model, crops).numpy())
    if not rows:
        raise DataError(f"no faces found in {len(_images(args.targets))} images (threshold {args.threshold})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    embeddings = np.concatenate(rows).astype(np.float32)
    np.save(out, embeddings)
    _write_json(out.with_suffix(".json"), sources)
    print(f"wrote {out} ({embeddings.shape[0]} × {embeddings.shape[1]} unit embeddings) and its sources "
          f"{out.with_suffix('.json')}")
    return 0


def _cmd_landmarks(args: argparse.Namespace) -> int:
    from facelearn.pipeline import crop_box, landmarks_in_boxes

    model, _ = _load("landmarks", args.checkpoint, args.runtime)
    faces = []
    for path, image, det in _photo_faces(args):
        boxes = det.boxes.numpy() if det is not None else crop_box(*image.shape[1::-1])[None]
        points = landmarks_in_boxes(model, image, boxes)
        for k, (box, pts) in enumerate(zip(boxes, points)):
            faces.append({"source": str(path), "face": k, "box": [round(float(v), 2) for v in box],
                          "landmarks": np.round(pts, 2).tolist()})
    _write_json(Path(args.out), faces)
    print(f"wrote {args.out} ({len(faces)} faces × {model.config.n_points} landmarks)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``embed`` and ``landmarks`` at the top level."""
    for name, func, what in (("embed", _cmd_embed, "recognition"), ("landmarks", _cmd_landmarks, "landmarks")):
        doc = ("embed faces with a recognition checkpoint: one unit-length row per face in E.npy and its source "
               "(image, face, box, score) in E.json" if name == "embed" else
               "predict landmarks with a PFLD checkpoint: one entry per face (image, box, points in pixels) in L.json")
        p = subparser(subparsers, name, doc + "; inputs are aligned face crops, or whole photographs with --detect",
                      _EXAMPLES[name], func)
        p.add_argument("targets", nargs="+", metavar="IMAGE_OR_DIR", help="images, or folders searched recursively")
        p.add_argument("--checkpoint", required=True, help=f"{what} checkpoint: facelearn's, or a reference release (" + (
                       "arcface_torch backbone.pth" if name == "embed" else "PFLD-pytorch checkpoint.pth.tar") + ")")
        p.add_argument("--out", required=True, help="output file (.npy for embed, .json for landmarks)")
        p.add_argument("--detect", metavar="DETECTOR", help="RetinaFace checkpoint (facelearn's or biubug6's release): find the faces in each photograph"
                       + (" and align them to the ArcFace template by their 5 points" if name == "embed" else ""))
        p.add_argument("--threshold", type=cli_types.probability, default=0.5, help="with --detect: keep faces scoring above this")
        p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch",
                       help="run the networks with PyTorch, or with ONNX Runtime from their exported graphs")
        common(p, "quiet")
