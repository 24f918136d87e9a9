"""``facelearn train recognition`` and ``facelearn eval verification`` (book: "How to run it", loss chapters).

    facelearn train recognition --data DIR --loss arcface --out model.pt [--val pairs.txt|set.bin]
    facelearn eval verification --bin lfw.bin --checkpoint model.pt --json
    facelearn eval verification --embeddings E.npy --issame S.npy --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from facelearn import cli_types
from facelearn.cli import SPEED, common, resume_path, subparser, trainer_switches
from facelearn.errors import DataError


def load_verification_set(path: str | Path, size: int, root: str | Path | None = None,
                          progress: bool = True) -> tuple[torch.Tensor, np.ndarray]:
    """A ``.bin`` set or an LFW-style pairs file → (images (2P, 3, size, size), issame (P,))."""
    from facelearn.data import identities

    path = Path(path)
    if path.suffix == ".bin":
        return identities.read_bin(path, size, progress=progress)
    pairs, issame = identities.read_pairs(path, root)
    return identities.load_pair_images(pairs, size, progress=progress), issame


def load_training_set(data: str | Path, size: int, progress: bool = True):  # noqa: ANN201
    """An identity folder (loaded into memory when small) or a ``.rec`` (with its ``.idx``) → (dataset, classes)."""
    from torch.utils.data import TensorDataset

    from facelearn.data import identities

    data = Path(data)
    if data.suffix == ".rec":
        ds = identities.RecordIODataset(data, data.with_suffix(".idx"), size)
        labels = [int(identities.unpack_record(ds.record.read(k))[0][0]) for k in ds.keys]
        return ds, max(labels) + 1
    folder = identities.IdentityFolder(data, size)
    if len(folder) <= 50_000:
        images, labels = folder.load_all(progress=progress)
        return TensorDataset(images, labels), len(folder.classes)
    return folder, len(folder.classes)


def _train(args: argparse.Namespace) -> int:
    from facelearn import runtime
    from facelearn.engine import distributed
    from facelearn.recognition import training, verification

    changes = {k: v for k, v in {"loss": args.loss, "epochs": args.epochs, "s": args.s, "m": args.m,
                                 "backbone": args.backbone, "lr": args.lr, "batch_size": args.batch_size,
                                 "sample_rate": args.sample_rate}.items()
               if v is not None}
    if "loss" in changes and args.m is None:
        changes["m"] = training.default_margin(changes["loss"])
    if "backbone" in changes:
        from facelearn.models import preset
        changes["input_size"] = preset(changes["backbone"]).input_size[-1]
    recipe = training.recipe(args.preset, **changes, **trainer_switches(args))
    if recipe.loss not in training.LOSSES:
        raise ValueError(f"unknown loss {recipe.loss!r}; known: {', '.join(training.LOSSES)}")
    runtime.seed_everything(args.seed)
    with distributed.main_first():  # under torchrun: rank 0 exports the data set, the others then read it
        if args.data is None:  # the chapters' SynthFace identity set, exported on first use, with its pairs
            dataset, n_classes, val_images, val_same = training.synthface_identities(progress=distributed.is_main())
            args.val = args.val or "synthface"
        else:
            dataset, n_classes = load_training_set(args.data, recipe.input_size, progress=distributed.is_main())
    if distributed.is_main():
        print(f"training {recipe.backbone} with {recipe.loss} on {len(dataset)} images of {n_classes} identities")
    result = training.train(recipe, dataset, n_classes, checkpoint=resume_path(args), device=args.device,
                            seed=args.seed, progress=distributed.is_main())
    backbone, history = result.model, result.history
    if not distributed.is_main():  # rank 0 alone evaluates and writes the model
        return 0
    extra = {"final_loss": history[-1]["loss"] if history else float("nan")}
    if args.data is None:
        extra["pairs_sha256"] = training.synthface_pairs_sha256()
    path = training.save_model(backbone.cpu(), recipe, args.out, **extra)
    backbone, _, _ = training.load_model(path, args.device or "cpu")  # evaluate the weights as stored (fp16)
    if args.val:
        if args.val == "synthface":
            images, issame = val_images, val_same
        else:
            images, issame = load_verification_set(args.val, recipe.input_size, args.val_root)
        result = verification.verify(backbone, images, issame)
        extra.update(accuracy=result.accuracy, std=result.std, val=str(args.val))
        print(f"verification on {args.val}: {result.accuracy:.4f} ± {result.std:.4f}")
    path = training.save_model(backbone.cpu(), recipe, args.out, **extra)
    print(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from facelearn.recognition import training, verification

    if args.embeddings is not None:
        if args.issame is None:
            raise ValueError("--embeddings needs --issame")
        emb, issame = _load_npy(args.embeddings), _load_npy(args.issame)
        if issame.ndim != 1 or not np.isin(issame, (0, 1)).all():
            raise DataError.at(args.issame, None, f"expected (P,) booleans, got shape {issame.shape} with values "
                                                  f"{np.unique(issame)[:4].tolist()}")
        issame = issame.astype(bool)
        if not np.isfinite(emb).all():
            raise DataError.at(args.embeddings, None, "embeddings hold NaN or infinite values")
        if emb.ndim != 2 or len(emb) != 2 * len(issame):
            raise DataError.at(args.embeddings, None, f"expected ({2 * len(issame)}, D) embeddings for "
                               f"{len(issame)} pairs, got shape {emb.shape}")
        scores = verification.pair_scores(emb)
    else:
        if args.data is None or args.checkpoint is None:
            raise ValueError("give --bin/--pairs with --checkpoint, or --embeddings with --issame")
        backbone, recipe, _ = training.load_model(args.checkpoint, args.device or "cpu")
        images, issame = load_verification_set(args.data, recipe.input_size, args.root, progress=not args.json)
        emb = verification.embed(backbone, images, flip=not args.no_flip, progress=not args.json)
        scores = verification.pair_scores(emb)
    result = verification.evaluate(scores, issame, n_folds=args.folds)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(f"accuracy {result.accuracy:.4f} ± {result.std:.4f} over {args.folds} folds "
              f"({result.n_pairs} pairs), threshold {result.threshold:.4f}, AUC {result.roc_auc:.4f}")
        for far, tar in result.tar_at_far.items():
            print(f"TAR@FAR={far}: {tar:.4f}")
    return 0


def _load_npy(path: str) -> np.ndarray:
    if not Path(path).is_file():
        raise DataError.at(path, None, "no such file")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as err:
        raise DataError.at(path, None, f"not a plain .npy array ({err})") from None
    if not isinstance(array, np.ndarray) or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError.at(path, None, f"expected a numeric .npy array, got {getattr(array, 'dtype', type(array))}")
    return array


def register(subparsers: argparse._SubParsersAction) -> None:
    from facelearn.recognition.training import LOSSES

    if subparsers.dest == "train_command":
        p = subparser(subparsers, "recognition", "train a face-recognition backbone with a margin or metric loss",
                      "facelearn train recognition --data faces/train --loss arcface --val faces/pairs.txt "
                      "--out arcface.pt", _train)
        p.add_argument("--data", type=cli_types.existing_path, help="identity folder (root/<identity>/<image>) or train.rec (default: the "
                       "chapters' SynthFace identity set, exported if missing, validated on its pairs)")
        common(p, "preset", "resume", "fresh", "device", "seed", *SPEED, task="recognition")
        p.add_argument("--loss", choices=LOSSES, help="loss (default: the preset's, arcface)")
        p.add_argument("--backbone", help="model preset (see `facelearn models --task recognition`)")
        p.add_argument("--epochs", type=cli_types.positive_int)
        p.add_argument("--batch-size", type=cli_types.positive_int)
        p.add_argument("--lr", type=cli_types.positive_float)
        p.add_argument("--s", type=cli_types.positive_float, help="scale s of the normalised heads")
        p.add_argument("--m", type=cli_types.non_negative_float, help="margin (ArcFace m, CosFace m, SphereFace integer m)")
        p.add_argument("--sample-rate", type=cli_types.fraction, help="Partial FC: class centres split over the processes, "
                       "this share of them sampled each step (arcface, cosface, combined)")
        p.add_argument("--val", type=cli_types.existing_file, help="pairs file or .bin to evaluate on after training")
        p.add_argument("--val-root", type=cli_types.existing_dir, help="image root of a pairs file (default: its folder)")
        p.add_argument("--out", required=True, help="checkpoint to write (backbone + recipe)")
    else:
        p = subparser(subparsers, "verification", "10-fold verification accuracy, ROC AUC and TAR@FAR on pairs",
                      "facelearn eval verification --data lfw.bin --checkpoint arcface.pt --json", _eval)
        p.add_argument("--data", "--bin", "--pairs", dest="data", type=cli_types.existing_file, help=".bin set or LFW-style pairs.txt")
        p.add_argument("--root", type=cli_types.existing_dir, help="image root of a pairs file (default: its folder)")
        p.add_argument("--checkpoint", type=cli_types.existing_file, help="model written by `facelearn train recognition`")
        p.add_argument("--embeddings", type=cli_types.existing_file, help="precomputed (2P, D) embeddings .npy, pairs in consecutive rows")
        p.add_argument("--issame", type=cli_types.existing_file, help="(P,) booleans .npy")
        p.add_argument("--folds", type=cli_types.int_at_least(2), default=10)
        p.add_argument("--no-flip", action="store_true", help="do not add the mirrored image's embedding")
        common(p, "device", "json")
