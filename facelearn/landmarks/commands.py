"""``facelearn train pfld`` and ``facelearn eval landmarks`` (book: chapter "PFLD", and "How to run it").

One module registers into two groups; :func:`register` looks at which group's sub-parsers it was given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from facelearn import cli_types
from facelearn.cli import SPEED, common, resume_path, subparser, trainer_switches
from facelearn.errors import DataError


def default_synthface_root(n_train: int, n_test: int, seed: int = 0) -> Path:
    """Where a SynthFace ``wflw`` export of these sizes lives: ``data_dir()/synthface-wflw-<train>-<test>-s<seed>``
    (the sizes are in the name, so a recipe with other sizes never reads a stale export)."""
    from facelearn import runtime

    return runtime.data_dir() / f"synthface-wflw-{n_train}-{n_test}-s{seed}"


def ensure_synthface(root: Path, n_train: int, n_test: int, seed: int = 0, progress: bool = True) -> Path:
    """Export SynthFace's WFLW-format data set to ``root`` unless a finished export (its ``meta.json``, written
    last) is already there."""
    if not (root / "meta.json").is_file():
        from facelearn.data.synthface import export_wflw

        export_wflw(root, n_train=n_train, n_test=n_test, seed=seed, progress=progress)
    return root


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    print(f"{'subset':<14} {'faces':>6} {'NME':>8} {'FR@0.1':>8} {'AUC@0.1':>8}")
    for name, s in summary.items():
        print(f"{name:<14} {s['n']:>6} {s['nme']:>8.4f} {s['fr']:>8.4f} {s['auc']:>8.4f}")


def _cmd_train(args: argparse.Namespace) -> int:
    from facelearn.engine import distributed
    from facelearn.landmarks import recipe as R

    rec = R.recipe(args.preset)
    rec = rec.with_(loss=dataclasses.replace(rec.loss, weighted=args.loss == "weighted", distance=args.distance,
                                             attributes=args.attributes or rec.loss.attributes,
                                             level_pitch=args.level_pitch or rec.loss.level_pitch),
                    epochs=args.epochs or rec.epochs, **trainer_switches(args))
    root = Path(args.data) if args.data else None
    if root is None:
        if rec.synth_train == 0:
            raise ValueError(f"preset {rec.name!r} trains on real WFLW: give --data DIR (the WFLW folder)")
        # the book's SynthFace export (data seed 0); --seed only changes the training run
        with distributed.main_first():  # under torchrun: rank 0 exports, the others then read it
            root = ensure_synthface(default_synthface_root(rec.synth_train, rec.synth_test), rec.synth_train,
                                    rec.synth_test, progress=distributed.is_main())
    out = Path(args.out)
    result = R.train(rec, root, checkpoint=resume_path(args), device=args.device, seed=args.seed,
                     progress=distributed.is_main())
    if not distributed.is_main():  # rank 0 alone evaluates and writes the model
        return 0
    records, images = R.load_split(root, "test")
    errors, summary = R.evaluate(result.model, records, images, rec.crops, flip=rec.test_flip)
    meta = root / "meta.json"
    generator = json.loads(meta.read_text()).get("generator", "") if meta.is_file() else "real data"
    R.export(result.model, out, recipe=rec.name, loss="weighted" if rec.loss.weighted else "plain",
             distance=rec.loss.distance, attributes=rec.loss.attributes, level_pitch=rec.loss.level_pitch,
             test_nme=summary["all"]["nme"], test_flip=rec.test_flip,
             epochs=rec.epochs, seed=args.seed,
             data=str(generator))
    print(f"saved {out} (test NME {summary['all']['nme']:.4f} on {len(errors)} faces)")
    _print_summary(summary, False)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from facelearn.data.wflw import read_wflw
    from facelearn.landmarks import metrics

    if args.pred:
        if not args.gt:
            raise ValueError("--pred needs --gt (the annotation file to compare with)")
        pred, gt = read_wflw(args.pred), read_wflw(args.gt)
        if len(pred) != len(gt):
            raise DataError.at(args.pred, None, f"{len(pred)} faces but {args.gt} has {len(gt)}")
        for k, (p, g) in enumerate(zip(pred, gt), start=1):
            if p.image != g.image:
                raise DataError.at(args.pred, k, f"image {p.image!r} but the ground truth has {g.image!r}")
        errors = metrics.nme(np.stack([p.landmarks for p in pred]), np.stack([g.landmarks for g in gt]))
        summary = metrics.summary(errors, np.stack([g.attributes for g in gt]))
    else:
        if not (args.checkpoint and args.data):
            raise ValueError("give --checkpoint and --data (a model on a WFLW folder), or --pred and --gt")
        from facelearn.landmarks import recipe as R

        model = R.load(args.checkpoint, device=args.device or "cpu")
        records, images = R.load_split(args.data, args.split)
        _, summary = R.evaluate(model, records, images, flip=args.flip)
    _print_summary(summary, args.json)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``pfld`` under ``facelearn train`` or ``landmarks`` under ``facelearn eval``."""
    if subparsers.dest.startswith("train"):
        p = subparser(subparsers, "pfld", "train PFLD and its auxiliary Euler-angle net (recipe quick or full)",
                      "facelearn train pfld --preset quick --out pfld-quick.pt", _cmd_train)
        common(p, "preset", "resume", "fresh", "seed", "device", *SPEED, task="landmarks")
        p.add_argument("--data", type=cli_types.existing_dir, help="WFLW-layout folder (default for quick: a SynthFace export, made if missing)")
        p.add_argument("--out", required=True, help="model checkpoint to write")
        p.add_argument("--loss", default="weighted", choices=["weighted", "plain"], help="PFLD loss or plain")
        p.add_argument("--distance", default="l2", choices=["l2", "l1"], help="landmark distance")
        p.add_argument("--attributes", choices=["loss", "sampling"],
                       help="weighted loss: ω inside the loss (eq. 2 as written) or by sampling faces "
                            "(default: the recipe's)")
        p.add_argument("--level-pitch", choices=["zero", "median"],
                       help="pitch that counts as level for head up/down (default: the recipe's)")
        p.add_argument("--epochs", type=cli_types.positive_int, help="override the recipe's epochs")
    elif subparsers.dest.startswith("eval"):
        p = subparser(subparsers, "landmarks", "NME (inter-ocular), FR@0.1, AUC@0.1, per WFLW attribute subset",
                      "facelearn eval landmarks --checkpoint pfld-quick.pt --data ~/.cache/facelearn/data/"
                      "synthface-wflw --json", _cmd_eval)
        p.add_argument("--checkpoint", type=cli_types.existing_file, help="PFLD checkpoint from 'facelearn train pfld'")
        p.add_argument("--data", type=cli_types.existing_dir, help="WFLW-layout folder to evaluate on")
        p.add_argument("--split", default="test", choices=["train", "test"], help="which annotation file")
        p.add_argument("--pred", type=cli_types.existing_file, help="predicted landmarks as a WFLW annotation file (instead of a model)")
        p.add_argument("--flip", action="store_true",
                       help="with --checkpoint: average each prediction with the mirrored crop's (the quick recipe's "
                            "test protocol)")
        p.add_argument("--gt", type=cli_types.existing_file, help="ground-truth WFLW annotation file, same faces in the same order as --pred")
        common(p, "device", "json")
    else:
        raise ValueError(f"facelearn.landmarks.commands registers under 'train' or 'eval', not {subparsers.dest!r}")
