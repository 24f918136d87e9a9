"""``facelearn train retinaface`` and ``facelearn detect`` (book chapter "Training and evaluating
RetinaFace")."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facelearn import cli_types
from facelearn.cli import SPEED, common, resume_path, subparser, trainer_switches

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def _cmd_train(args: argparse.Namespace) -> int:
    from facelearn import runtime
    from facelearn.detection.training import evaluate_model, export_weights, synthface_root, train, train_config
    from facelearn.engine import distributed

    changes = {k: v for k, v in {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                                 "image_size": args.image_size}.items() if v is not None}
    cfg = train_config(args.preset, **changes, **trainer_switches(args))
    checkpoint = resume_path(args)
    with distributed.main_first():  # under torchrun: rank 0 exports the data set, the others then read it
        root = Path(args.data) if args.data else synthface_root(cfg, seed=args.seed, progress=distributed.is_main())
    if not (root / "train" / "label.txt").is_file():
        raise FileNotFoundError(f"{root / 'train' / 'label.txt'}: no training labels (expected a WIDER FACE "
                                "folder with train/label.txt and WIDER_train/images)")
    dev = runtime.device(args.device)
    if distributed.is_main():
        print(f"training {cfg.model} with recipe {cfg.name} on {root} ({dev})"
              + (f"; checkpoint {checkpoint}" if checkpoint else ""))
    result = train(cfg, root, checkpoint=checkpoint, device=dev, seed=args.seed, progress=distributed.is_main())
    model, history = result.model, result.history
    if not distributed.is_main():  # rank 0 alone evaluates and writes the model
        return 0
    if history:
        last = history[-1]
        print("epoch {epoch}: loss {loss:.4f} (cls {cls:.4f}, box {box:.4f}, landmarks {landmarks:.4f})".format(**last))
    metrics = {}
    if not args.no_eval and (root / "wider_face_split").is_dir():
        result = evaluate_model(model, root, progress=True, **cfg.test_time)
        metrics = {"ap": {k: round(v, 4) for k, v in result.ap.items()}, "images": result.images,
                   "scales": list(cfg.test_scales), "flip": cfg.test_flip, "vote_iou": cfg.test_vote_iou}
        print("val AP " + "  ".join(f"{k} {v:.4f}" for k, v in result.ap.items()))
    if args.export:
        path = export_weights(model.cpu(), args.export, preset=cfg.model, recipe=cfg.name,
                              metrics={**metrics, "epochs": cfg.epochs, "seed": args.seed, "data": root.name})
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    if args.json:
        print(json.dumps({"history": history, **metrics}))
    return 0


def _images(target: Path) -> list[Path]:
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise FileNotFoundError(f"{target}: no such image or folder")
    found = sorted(p for p in target.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise FileNotFoundError(f"{target}: no .jpg/.png/.bmp images inside")
    return found


def _draw(target: Path, image, det, min_score: float) -> None:
    import cv2

    from facelearn.viz.faces import draw_faces

    keep = det.scores >= min_score
    image = draw_faces(image, det.boxes[keep].numpy(), det.landmarks[keep].numpy(),
                       [f"{s:.2f}" for s in det.scores[keep].tolist()])
    if not cv2.imwrite(str(target), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise PermissionError(f"{target}: could not write the drawn image")


def _cmd_detect(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from facelearn import runtime
    from facelearn.detection.evaluation import write_prediction_file
    from facelearn.detection.postprocess import detect
    from facelearn.detection.training import load_detector, read_rgb

    model = load_detector(args.checkpoint, device=runtime.device(args.device))
    if args.runtime == "onnxruntime":
        from facelearn.onnx_export import with_runtime

        model = with_runtime(model.cpu(), "detection", None, args.runtime)
    images = _images(Path(args.target))
    out = Path(args.out)
    faces = 0
    for path in tqdm(images, desc="detect", disable=args.quiet):
        image = read_rgb(path)
        det = detect(model, image, score_threshold=args.threshold, nms_iou=args.nms, scale=args.scale,
                     flip=args.flip, vote_iou=args.vote, max_size=args.max_size)
        b = det.boxes.numpy()
        xywh = b.copy()
        xywh[:, 2:] = b[:, 2:] - b[:, :2]
        write_prediction_file(out / path.parent.name / f"{path.stem}.txt", path.stem, xywh, det.scores.numpy())
        if args.draw is not None:
            _draw(out / path.parent.name / f"{path.stem}.jpg", image, det, args.draw)
        faces += len(det)
    print(f"{len(images)} images, {faces} detections with score > {args.threshold}; wrote {out}/<event>/<name>.txt")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``retinaface`` under ``facelearn train``, or ``detect`` at the top level."""
    if subparsers.dest == "train_command":
        p = subparser(subparsers, "retinaface",
                      "train RetinaFace from a recipe (quick: MobileNet-0.25 on SynthFace on a CPU; full, "
                      "full-resnet50, paper: WIDER FACE on a GPU); resumes from --resume",
                      "facelearn train retinaface --preset quick --export retinaface_mnet025_quick.pt",
                      _cmd_train)
        common(p, "preset", "resume", "fresh", "seed", "device", *SPEED, task="detection",
               json="print the history and AP as JSON at the end")
        p.add_argument("--data", type=cli_types.existing_dir, help="WIDER FACE folder (train/label.txt, WIDER_train/images, and for evaluation "
                                      "WIDER_val/images + wider_face_split); default: the recipe's SynthFace export")
        p.add_argument("--export", help="also write a small inference checkpoint here")
        p.add_argument("--epochs", type=cli_types.positive_int, help="override the recipe's epochs")
        p.add_argument("--batch-size", type=cli_types.positive_int, help="override the recipe's batch size")
        p.add_argument("--lr", type=cli_types.positive_float, help="override the recipe's learning rate")
        p.add_argument("--image-size", type=cli_types.int_at_least(32), help="override the recipe's training crop size")
        p.add_argument("--no-eval", action="store_true", help="skip the WIDER FACE evaluation at the end")
        return
    p = subparser(subparsers, "detect",
                  "detect faces in an image or a folder of images with a RetinaFace checkpoint and write "
                  "the official WIDER FACE prediction layout <out>/<event>/<name>.txt",
                  "facelearn detect WIDER_val/images --checkpoint retinaface_mnet025_quick.pt "
                  "--out predictions/", _cmd_detect)
    p.add_argument("target", type=cli_types.existing_path, help="an image file or a folder searched recursively (event = parent folder)")
    p.add_argument("--checkpoint", required=True, type=cli_types.existing_file, help="file from `facelearn train retinaface --export` "
                                                       "or a Trainer checkpoint")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--threshold", type=cli_types.probability, default=0.02, help="keep detections above this score")
    p.add_argument("--nms", type=cli_types.probability, default=0.4, help="NMS IoU threshold")
    p.add_argument("--scale", type=float, nargs="+", default=None,
                   help="resize images by this factor for the network; several factors: an image pyramid "
                        "(default: octaves chosen from each image's size, so faces from 10 px to the whole "
                        "image reach the sizes the detector learnt; SynthFace's protocol: --scale 1.5 2 2.5 "
                        "--flip --vote 0.4)")
    p.add_argument("--flip", action="store_true", help="also run each resized image mirrored (the paper's test)")
    p.add_argument("--vote", type=float, metavar="IOU",
                   help="box voting: refine each detection from the candidates overlapping it at this IoU "
                        "(the paper uses 0.4)")
    p.add_argument("--max-size", type=cli_types.int_at_least(32), help="cap the long side of the resized image at this")
    p.add_argument("--draw", type=cli_types.probability, nargs="?", const=0.5, metavar="MIN_SCORE",
                   help="also write <out>/<event>/<name>.jpg with the boxes, scores and 5 landmarks of the "
                        "detections scoring at least MIN_SCORE (0.5 when not given)")
    p.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch",
                   help="run the network with PyTorch, or with ONNX Runtime from its exported graph (on the CPU)")
    common(p, "device", "quiet")
