"""``facelearn synth widerface|wflw|identities``: write SynthFace data sets (book chapter "SynthFace")."""

from __future__ import annotations

import argparse
import json

from facelearn import cli_types
from facelearn.cli import common, subparser
from facelearn.data.synthface.export import PRESETS, export_identities, export_widerface, export_wflw


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="default sizes for the counts")
    common(p, seed="random seed (same seed, same bytes)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _pick(value, default):
    return default if value is None else value


def _widerface(args: argparse.Namespace) -> int:
    d = PRESETS[args.preset].widerface
    summary = export_widerface(args.out, n_train=_pick(args.n_train, d[0]), n_val=_pick(args.n_val, d[1]),
                               image_size=_pick(args.image_size, d[2]), seed=args.seed, progress=not args.no_progress)
    print(json.dumps(summary))
    return 0


def _wflw(args: argparse.Namespace) -> int:
    d = PRESETS[args.preset].wflw
    summary = export_wflw(args.out, n_train=_pick(args.n_train, d[0]), n_test=_pick(args.n_test, d[1]), seed=args.seed,
                          progress=not args.no_progress)
    print(json.dumps(summary))
    return 0


def _identities(args: argparse.Namespace) -> int:
    d = PRESETS[args.preset].identities
    summary = export_identities(args.out, n_identities=_pick(args.n_identities, d[0]),
                                images_per_identity=_pick(args.images_per_identity, d[1]),
                                n_test_identities=_pick(args.n_test_identities, d[2]), image_size=args.image_size,
                                seed=args.seed, progress=not args.no_progress)
    print(json.dumps(summary))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``widerface``, ``wflw`` and ``identities`` under ``facelearn synth``."""
    q = PRESETS["quick"]
    p = subparser(subparsers, "widerface",
                  "write a SynthFace detection set in WIDER FACE's layout (images, RetinaFace label.txt, official val .mat)",
                  "facelearn synth widerface --out data/synth_widerface --n-train 400 --n-val 100 --image-size 320", _widerface)
    _common(p)
    p.add_argument("--n-train", type=cli_types.positive_int, help=f"training images (quick: {q.widerface[0]})")
    p.add_argument("--n-val", type=cli_types.positive_int, help=f"validation images (quick: {q.widerface[1]})")
    p.add_argument("--image-size", type=cli_types.positive_int, help=f"image width in pixels; face sizes scale with it (quick: {q.widerface[2]})")
    p = subparser(subparsers, "wflw", "write a SynthFace landmark set in WFLW's layout (98 points, box, 6 attributes)",
                  "facelearn synth wflw --out data/synth_wflw --n-train 1500 --n-test 500", _wflw)
    _common(p)
    p.add_argument("--n-train", type=cli_types.positive_int, help=f"training photos (quick: {q.wflw[0]})")
    p.add_argument("--n-test", type=cli_types.positive_int, help=f"test photos (quick: {q.wflw[1]})")
    p = subparser(subparsers, "identities",
                  "write a SynthFace identity set: aligned crops per identity, LFW pairs.txt and an insightface .bin",
                  "facelearn synth identities --out data/synth_ids --n-identities 200 --images-per-identity 10", _identities)
    _common(p)
    p.add_argument("--n-identities", type=cli_types.positive_int, help=f"training identities (quick: {q.identities[0]})")
    p.add_argument("--images-per-identity", type=cli_types.int_at_least(2), help=f"images per identity (quick: {q.identities[1]})")
    p.add_argument("--n-test-identities", type=cli_types.int_at_least(2), help=f"test identities for the pairs (quick: {q.identities[2]})")
    p.add_argument("--image-size", type=cli_types.positive_int, default=112, help="crop size in pixels (aligned like insightface)")
