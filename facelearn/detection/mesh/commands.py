"""``facelearn train mesh-decoder``: pre-train the dense branch's mesh decoder on SynthFace's true meshes
(book chapter "The dense regression branch")."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facelearn import cli_types
from facelearn.cli import common, subparser


def _cmd_train(args: argparse.Namespace) -> int:
    from facelearn import runtime
    from facelearn.detection.mesh.decoder import (decoder_config, pretrain_autoencoder, reconstruction_error,
                                                  save_decoder, synthface_meshes)
    from facelearn.engine import distributed

    changes = {k: v for k, v in {"epochs": args.epochs, "n_train": args.n_train}.items() if v is not None}
    cfg = decoder_config(args.preset, **changes)
    out = Path(args.out)
    if out.exists() and out.is_dir():
        raise ValueError(f"{out}: is a folder; --out names the checkpoint file to write")
    dev = runtime.device(args.device)
    print(f"pre-training the mesh auto-encoder, preset {cfg.name}: {cfg.n_train} SynthFace meshes, "
          f"{cfg.epochs} epochs ({dev})")
    encoder, decoder, history = pretrain_autoencoder(cfg, seed=args.seed, device=dev,
                                                     progress=not args.quiet and distributed.is_main())
    if not distributed.is_main():  # rank 0 alone evaluates and writes the model
        return 0
    error = reconstruction_error(encoder, decoder, synthface_meshes(cfg.n_test, seed=args.seed + 1000))
    metrics = {k: round(v, 5) for k, v in error.items()}
    metrics.update(epochs=cfg.epochs, seed=args.seed, n_train=cfg.n_train, n_test=cfg.n_test)
    path = save_decoder(decoder.cpu(), out, metrics, encoder=encoder.cpu())
    print(f"held-out ({cfg.n_test} new identities): mean vertex error {error['vertex_iod']:.2%} of the inter-ocular "
          f"distance ({error['vertex_diag']:.2%} of the bounding-box diagonal), colour error {error['colour']:.1f} "
          f"grey levels")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    if args.json:
        print(json.dumps({"history": history, "metrics": metrics}))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparser(subparsers, "mesh-decoder", "pre-train the dense branch's mesh decoder (graph-convolution "
                  "auto-encoder) on SynthFace's true meshes",
                  "facelearn train mesh-decoder --preset quick --out facelearn/detection/checkpoints/mesh_decoder_quick.pt",
                  _cmd_train)
    from facelearn.detection.mesh.decoder import PRESETS

    p.add_argument("--preset", default="quick", choices=list(PRESETS), help="decoder recipe (default quick)")
    p.add_argument("--out", required=True, help="checkpoint file to write")
    p.add_argument("--epochs", type=cli_types.positive_int, help="override the preset's epochs")
    p.add_argument("--n-train", dest="n_train", type=cli_types.positive_int, help="override the number of training meshes")
    common(p, "seed", "device", "quiet", json="also print the history and metrics as JSON")
