"""``facelearn eval widerface``: score official WIDER FACE prediction files (chapter "Training and
evaluating RetinaFace"); the protocol is :mod:`facelearn.detection.evaluation`."""

from __future__ import annotations

import argparse
import json

from facelearn import cli_types
from facelearn.cli import common, subparser


def _cmd_widerface(args: argparse.Namespace) -> int:
    from facelearn.detection.evaluation import evaluate_folder

    result = evaluate_folder(args.pred, args.gt, progress=not args.json)
    if args.json:
        print(json.dumps(result.to_dict(curves=not args.no_curves)))
        return 0
    for setting, ap in result.ap.items():
        print(f"{setting:<7} AP {ap:.4f}  ({result.curves[setting].faces} faces)")
    print(f"{result.images} images, {result.predictions} predictions")
    if result.missing:
        print(f"{len(result.missing)} images have no prediction file (scored as no detections), "
              f"e.g. {result.missing[0]}.txt")
    if result.unexpected:
        print(f"{len(result.unexpected)} prediction files match no ground-truth image (ignored), "
              f"e.g. {result.unexpected[0]}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``widerface`` under ``facelearn eval``."""
    p = subparser(subparsers, "widerface",
                  "AP on WIDER FACE val (easy/medium/hard) with the official MATLAB protocol: boxes sorted "
                  "by score, global score normalisation, IoU 0.5, 1000 thresholds, ignored faces, VOC AP",
                  "facelearn eval widerface --pred predictions/ --gt wider_face_split/ --json", _cmd_widerface)
    p.add_argument("--pred", required=True, type=cli_types.existing_dir, help="folder of <event>/<name>.txt prediction files")
    p.add_argument("--gt", default=None, type=cli_types.existing_dir,
                   help="folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat; when not "
                        "given: $FACELEARN_WIDER_GT, the data folder, else the copy shipped with facelearn")
    common(p, json="print AP, counts and PR curves as JSON")
    p.add_argument("--no-curves", action="store_true", help="with --json, leave the PR curves out")
