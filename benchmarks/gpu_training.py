"""Training speed of the book's `full` recipes on one GPU: each model, its real loss, a few hundred steps.

    python benchmarks/gpu_training.py [--steps 200] [--device cuda] [--json gpu.json]

For each recipe (RetinaFace mobilenet0.25 and ResNet-50, iResNet-50 + ArcFace, PFLD 1X and 0.25X) the
batches come from small SynthFace exports through the recipe's own data set, augmentation and collate
function, are staged on the device, and :class:`facelearn.engine.Trainer` runs optimiser steps on them with
the recipe's loss and optimiser. Printed per recipe: milliseconds per step and images per second with AMP
(bf16 on CUDA) and in fp32 — the baseline measured in the same run — their ratio, the peak memory, and the
recipe's whole cost (epochs × steps per epoch × step time). The last lines measure how many augmented
training samples per second the data loader makes with 1 and with 4 worker processes: a GPU step faster
than that waits for data. ``--json`` writes every figure (the chapters read such a record).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from facelearn.engine import Trainer, make_loader, to_device
from facelearn.engine.recipe import build_optimizer


@dataclass
class Case:
    """One recipe to time: the modules to train, their optimiser, the loss, staged batches and the size of
    the real training set the recipe runs over (to turn a step time into the recipe's cost)."""

    name: str
    model: nn.Module
    optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    loss_fn: Callable
    batches: list[Any]
    batch_size: int
    epochs: int
    train_size: int
    grad_clip: float | None
    loader: Any = None  # the recipe's loader (with its augmentation) for the samples-per-second line


def retinaface_cases(root: Path, n_batches: int) -> list[Case]:
    from facelearn.data.synthface import export_widerface
    from facelearn.data.synthface.export import PRESETS as SIZES
    from facelearn.data.transforms import DetectionAugment
    from facelearn.detection.dataset import WiderFaceDetection, collate
    from facelearn.detection.retinaface import build
    from facelearn.detection.training import make_loss_fn, train_config

    cases = []
    for name in ("full", "full-resnet50"):
        cfg = train_config(name)
        data = root / "widerface"
        if not (data / "meta.json").is_file():
            export_widerface(data, n_train=cfg.batch_size * n_batches, n_val=1, image_size=640, progress=False)
        dataset = WiderFaceDetection(data, "train", train=True, augment=DetectionAugment(size=cfg.image_size))
        loader = make_loader(dataset, cfg.batch_size, shuffle=True, collate_fn=collate, drop_last=True)
        cases.append(Case(f"{cfg.model} {cfg.image_size}px", build(cfg.model, pretrained=False),
                          lambda m, cfg=cfg: build_optimizer(cfg, m), make_loss_fn(cfg.loss), list(loader),
                          cfg.batch_size, cfg.epochs, SIZES["full"].widerface[0], cfg.grad_clip, loader))
    return cases


def arcface_case(root: Path, n_batches: int) -> Case:
    from torch.utils.data import TensorDataset

    from facelearn.data import identities
    from facelearn.data.synthface import export_identities
    from facelearn.models import preset
    from facelearn.recognition.training import MS1MV2_SIZE, RecognitionRecipe, make_head, random_flip

    rec = RecognitionRecipe.full()
    n_classes, n_images = MS1MV2_SIZE
    data = root / "identities"
    if not (data / "meta.json").is_file():
        export_identities(data, n_identities=rec.batch_size * n_batches // 4, images_per_identity=4,
                          n_test_identities=20, image_size=rec.input_size, progress=False)
    images, labels = identities.IdentityFolder(data / "train", rec.input_size).load_all()
    loader = make_loader(TensorDataset(images, labels), rec.batch_size, shuffle=True, drop_last=True)
    spec = preset(rec.backbone)
    model = nn.ModuleDict({"backbone": spec.build(), "head": make_head(rec.loss, 512, n_classes, rec.s, rec.m)})

    def loss_fn(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
        x, y = batch
        return model["head"](model["backbone"](random_flip(x)), y), {}

    return Case(f"arcface {rec.backbone} {rec.input_size}px, {n_classes:,} classes", model,
                lambda m: build_optimizer(rec, m), loss_fn, list(loader), rec.batch_size, rec.epochs, n_images,
                rec.grad_clip)


def pfld_cases(root: Path, n_batches: int) -> list[Case]:
    from facelearn.data.synthface import export_wflw
    from facelearn.data.synthface.export import PRESETS as SIZES
    from facelearn.landmarks import recipe as R
    from facelearn.landmarks.crops import LandmarkCrops
    from facelearn.landmarks.loss import PFLDObjective
    from facelearn.landmarks.pfld import pfld_pair

    cases = []
    for name in ("full", "quick"):
        rec = R.recipe(name)
        data = root / "wflw"
        if not (data / "meta.json").is_file():
            export_wflw(data, n_train=256 * n_batches, n_test=1, progress=False, workers=min(8, os.cpu_count() or 1))
        records, images = R.load_split(data, "train")
        dataset = LandmarkCrops(records, images, augment=True, config=rec.crops)
        stats = R.training_statistics(dataset, rec.loss)
        loader = make_loader(dataset, rec.batch_size, shuffle=True, drop_last=True, weights=stats.weights)
        objective = PFLDObjective(stats.omega, rec.loss, stats.thresholds, float(stats.weights.mean()))
        train_size = SIZES["full"].wflw[0] if name == "full" else rec.synth_train
        cases.append(Case(f"pfld {rec.model.width}X ({name} recipe)", pfld_pair(rec.model),
                          lambda m, rec=rec: build_optimizer(rec, m), objective,
                          [b for _, b in zip(range(n_batches), loader)], rec.batch_size, rec.epochs, train_size,
                          rec.grad_clip, loader))
    return cases


def time_steps(case: Case, device: torch.device, amp: bool, steps: int, warmup: int) -> dict:
    """Milliseconds per optimiser step and the peak memory of ``steps`` steps cycling over the staged batches."""
    model = case.model.to(device)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, case.optimizer(model), case.loss_fn, device=device, amp=amp, grad_clip=case.grad_clip)
    batches = [to_device(b, device) for b in case.batches]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(warmup):
        trainer.train_step(batches[i % len(batches)])
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for i in range(steps):
        logs = trainer.train_step(batches[i % len(batches)])
    sync()
    seconds = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan")
    model.load_state_dict(state)  # the next precision starts from the same weights
    return {"ms_per_step": 1e3 * seconds, "images_per_s": case.batch_size / seconds, "peak_gib": peak,
            "final_loss": float(logs["loss"])}


def loader_rate(loader: Any, workers: int, batches: int = 20) -> float:
    """Training samples per second that ``loader``'s data set and collate function make with ``workers``."""
    from torch.utils.data import ConcatDataset

    repeated = ConcatDataset([loader.dataset] * math.ceil((batches + 1) * loader.batch_size / len(loader.dataset)))
    fast = make_loader(repeated, loader.batch_size, shuffle=True, num_workers=workers,
                       collate_fn=loader.collate_fn, drop_last=True)
    it = iter(fast)
    next(it)  # workers started
    start = time.perf_counter()
    n = 0
    for _, batch in zip(range(batches), it):
        n += loader.batch_size
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="timed optimiser steps per recipe and precision")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batches", type=int, default=4, help="distinct staged batches per recipe")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--only", help="comma-separated: retinaface, arcface, pfld")
    parser.add_argument("--data", help="folder for the small SynthFace exports (default: a temporary one)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    device = torch.device(args.device)
    root = Path(args.data or tempfile.mkdtemp(prefix="facelearn-gpu-"))
    builders = {"retinaface": retinaface_cases, "arcface": lambda r, n: [arcface_case(r, n)], "pfld": pfld_cases}
    chosen = args.only.split(",") if args.only else list(builders)
    record = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "steps": args.steps, "recipes": {}}
    print(f"{record['device']}, torch {record['torch']}, {args.steps} timed steps per line")
    print(f"{'recipe':<44} {'batch':>5} {'ms/step':>8} {'img/s':>8} {'fp32 ms':>8} {'AMP×':>5} {'peak GiB':>8} "
          f"{'recipe h':>8}")
    for key in chosen:
        start = time.perf_counter()
        cases = builders[key](root, args.batches)
        print(f"  ({key}: data and batches in {time.perf_counter() - start:.0f} s)", flush=True)
        for case in cases:
            amp = time_steps(case, device, True, args.steps, args.warmup)
            fp32 = time_steps(case, device, False, args.steps, args.warmup)
            steps = case.epochs * math.ceil(case.train_size / case.batch_size)
            hours = steps * amp["ms_per_step"] / 3.6e6
            rates = {w: loader_rate(case.loader, w) for w in (1, 4)} if case.loader is not None else {}
            record["recipes"][case.name] = {"batch": case.batch_size, "amp": amp, "fp32": fp32,
                                            "recipe_steps": steps, "recipe_hours": hours,
                                            "loader_samples_per_s": rates}
            print(f"{case.name:<44} {case.batch_size:>5} {amp['ms_per_step']:>8.1f} {amp['images_per_s']:>8.0f} "
                  f"{fp32['ms_per_step']:>8.1f} {fp32['ms_per_step'] / amp['ms_per_step']:>5.2f} "
                  f"{amp['peak_gib']:>8.2f} {hours:>8.2f}", flush=True)
            for w, r in rates.items():
                print(f"{'':<6}loader, {w} worker{'s' if w > 1 else ''}: {r:,.0f} samples/s "
                      f"({r / amp['images_per_s']:.2f}× the AMP step's rate)", flush=True)
            case.model.cpu()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
