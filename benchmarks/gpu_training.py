"""Training speed of the book's `full` recipes on one GPU: each model, its real loss, a few hundred steps.

One command measures everything and writes the record the training chapters' cost sections read:

    python benchmarks/gpu_training.py --device cuda --all

``--all`` times every recipe below, writes ``facelearn/records/gpu_training_<gpu>.json`` (``h200`` on an
NVIDIA H200; ``--json FILE`` writes elsewhere), then runs ``benchmarks/trainer_overhead.py --device cuda
--no-compile`` and ``benchmarks/retinaface_speed.py --only-training --device cuda``, all within ``--budget``
seconds (default 450): each recipe gets a share of what is left, a timed loop stops early when its share is
spent, the other two benchmarks are stopped when the budget is, and the record is rewritten after every
recipe, so a run cut short keeps what it measured. From a checkout where facelearn is not installed, put
``PYTHONPATH=.`` in front. On an H200 with 16 CPU cores it should take about six minutes (an estimate from
the step times of the previous record; the budget stops it at seven and a half). A smoke run of the same
code on a CPU takes two minutes on two cores: ``--device cpu --small --steps 2 --json /tmp/gpu.json``
(``--small``: batches of 2 to 4, RetinaFace at 128 px, 1,000 ArcFace classes; such a record is never
written into ``facelearn/records``).

    python benchmarks/gpu_training.py [--steps 200] [--warmup 20] [--device cuda] [--only pfld,arcface]
        [--json FILE] [--all] [--budget 450] [--small] [--skip-others] [--overhead-compile]

For each recipe (RetinaFace mobilenet0.25 and ResNet-50, iResNet-50 + ArcFace, PFLD 1X and 0.25X) the
batches come from small SynthFace exports through the recipe's own data set, augmentation and collate
function and are copied to the device before timing (``--batches`` distinct batches, cycled), so the data
loader is not part of the timed step. :class:`facelearn.engine.Trainer` then runs ``--warmup`` untimed
optimiser steps and ``--steps`` timed ones with the recipe's loss, optimiser and Trainer switches (gradient
clipping, ``channels_last``, ``compile``), first with AMP (bf16 on CUDA), then in fp32 from the same weights,
the baseline measured in the same run. The timed loop is bracketed by ``torch.cuda.synchronize``; the peak
memory is ``torch.cuda.max_memory_allocated`` over the timed steps (its counter reset after the warm-up;
staged batches, weights and optimiser state included).
Printed per recipe and precision: steps per second, milliseconds per step, images per second and peak memory,
then the AMP / fp32 ratio and the recipe's whole cost (epochs × steps per epoch × the AMP step). The lines
after each recipe measure how many augmented training samples per second its data loader makes with 1 and
with 4 worker processes: a GPU step faster than that waits for data in a real run. The last lines compare
with the goals (PFLD 0.25X: at most 8 ms per step of batch 32; iResNet-50 + ArcFace: at least 3,000
images per second with AMP).

The record holds measurements only: per recipe ``batch``, ``amp`` and ``fp32`` figures, ``recipe_steps``,
``recipe_hours``, ``loader_samples_per_s`` and ``measured`` (device, date, torch, steps timed, the setting);
at the top the device, torch, date and steps of the latest run. Writing into an existing record of the same
device keeps the lines this run did not measure, each with its own ``measured`` block.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from facelearn import runtime
from facelearn.engine import Trainer, make_loader, to_device
from facelearn.engine.recipe import build_optimizer

RECORDS = Path(__file__).resolve().parents[1] / "facelearn" / "records"
WORKERS = min(16, os.cpu_count() or 1)  # processes for the SynthFace exports
# (record line, figure, comparison, bound, unit): what the training steps are meant to reach with AMP
GOALS = (("pfld 0.25X (quick recipe)", "ms_per_step", "<=", 8.0, "ms per step of batch 32"),
         ("arcface iresnet50 112px, 85,742 classes", "images_per_s", ">=", 3000.0, "images/s"))


@dataclass
class Case:
    """One recipe to time: the modules to train, their optimiser, the loss, staged batches and the size of
    the real training set the recipe runs over (to turn a step time into the recipe's cost)."""

    name: str  # the record's key: the recipe's model and input size, whatever ``setting`` shrank
    model: nn.Module
    optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    loss_fn: Callable
    batches: list[Any]
    batch_size: int
    recipe_steps: int  # the real recipe's epochs × ⌈training set / its batch⌉
    options: dict  # the recipe's Trainer keywords but amp: grad_clip, channels_last, compile
    loader: Any = None  # the recipe's loader (with its augmentation) for the samples-per-second line
    setting: dict = field(default_factory=dict)  # what the timed step ran on (input size, classes)


def options(recipe: Any) -> dict:
    """The Trainer keywords ``recipe`` sets, but ``amp`` (each line times both precisions)."""
    return {k: v for k, v in recipe.trainer_options().items() if k != "amp"}


def retinaface_cases(root: Path, n_batches: int, small: bool) -> list[Case]:
    from facelearn.data.synthface import export_widerface
    from facelearn.data.synthface.export import PRESETS as SIZES
    from facelearn.data.transforms import DetectionAugment
    from facelearn.detection.dataset import WiderFaceDetection, collate
    from facelearn.detection.retinaface import build
    from facelearn.detection.training import make_loss_fn, train_config

    cases = []
    for name in ("full", "full-resnet50"):
        real = train_config(name)
        cfg = train_config(name, batch_size=2, image_size=128) if small else real
        data = root / "widerface"
        if not (data / "meta.json").is_file():
            export_widerface(data, n_train=max(cfg.batch_size * n_batches, 4), n_val=1,
                             image_size=160 if small else 640, progress=False, workers=WORKERS)
        dataset = WiderFaceDetection(data, "train", train=True, augment=DetectionAugment(size=cfg.image_size))
        loader = make_loader(dataset, cfg.batch_size, shuffle=True, collate_fn=collate, drop_last=True)
        steps = real.epochs * math.ceil(SIZES["full"].widerface[0] / real.batch_size)
        cases.append(Case(f"{real.model} {real.image_size}px", build(cfg.model, pretrained=False),
                          lambda m, cfg=cfg: build_optimizer(cfg, m), make_loss_fn(cfg.loss),
                          [b for _, b in zip(range(n_batches), loader)], cfg.batch_size, steps, options(cfg),
                          loader, {"image_size": cfg.image_size}))
    return cases


def arcface_cases(root: Path, n_batches: int, small: bool) -> list[Case]:
    from torch.utils.data import TensorDataset

    from facelearn.data import identities
    from facelearn.data.synthface import export_identities
    from facelearn.models import preset
    from facelearn.recognition.training import MS1MV2_SIZE, RecognitionRecipe, make_head, random_flip

    real = RecognitionRecipe.full()
    rec = RecognitionRecipe.full(batch_size=2) if small else real
    n_classes = 1000 if small else MS1MV2_SIZE[0]
    data = root / "identities"
    if not (data / "meta.json").is_file():
        export_identities(data, n_identities=max(rec.batch_size * n_batches // 4, 2), images_per_identity=4,
                          n_test_identities=20, image_size=rec.input_size, progress=False,
                          workers=WORKERS)
    images, labels = identities.IdentityFolder(data / "train", rec.input_size).load_all()
    loader = make_loader(TensorDataset(images, labels), rec.batch_size, shuffle=True, drop_last=True)
    spec = preset(rec.backbone)
    model = nn.ModuleDict({"backbone": spec.build(), "head": make_head(rec.loss, 512, n_classes, rec.s, rec.m)})

    def loss_fn(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
        x, y = batch
        return model["head"](model["backbone"](random_flip(x)), y), {}

    steps = real.epochs * math.ceil(MS1MV2_SIZE[1] / real.batch_size)
    return [Case(f"arcface {real.backbone} {real.input_size}px, {MS1MV2_SIZE[0]:,} classes", model,
                 lambda m: build_optimizer(rec, m), loss_fn, [b for _, b in zip(range(n_batches), loader)],
                 rec.batch_size, steps, options(rec), None, {"image_size": rec.input_size, "classes": n_classes})]


def pfld_cases(root: Path, n_batches: int, small: bool) -> list[Case]:
    from facelearn.data.synthface import export_wflw
    from facelearn.data.synthface.export import PRESETS as SIZES
    from facelearn.landmarks import recipe as R
    from facelearn.landmarks.crops import LandmarkCrops
    from facelearn.landmarks.loss import PFLDObjective
    from facelearn.landmarks.pfld import pfld_pair

    cases = []
    for name in ("full", "quick"):
        real = R.recipe(name)
        rec = R.recipe(name, batch_size=4) if small else real
        data = root / "wflw"
        if not (data / "meta.json").is_file():
            export_wflw(data, n_train=16 if small else 256 * n_batches, n_test=1, progress=False, workers=WORKERS)
        records, images = R.load_split(data, "train")
        dataset = LandmarkCrops(records, images, augment=True, config=rec.crops)
        stats = R.training_statistics(dataset, rec.loss)
        loader = make_loader(dataset, rec.batch_size, shuffle=True, drop_last=True, weights=stats.weights)
        objective = PFLDObjective(stats.omega, rec.loss, stats.thresholds, float(stats.weights.mean()))
        train_size = SIZES["full"].wflw[0] if name == "full" else real.synth_train
        cases.append(Case(f"pfld {real.model.width}X ({name} recipe)", pfld_pair(rec.model),
                          lambda m, rec=rec: build_optimizer(rec, m), objective,
                          [b for _, b in zip(range(n_batches), loader)], rec.batch_size,
                          real.epochs * math.ceil(train_size / real.batch_size), options(rec), loader,
                          {"image_size": 112}))
    return cases


BUILDERS = {"pfld": pfld_cases, "arcface": arcface_cases, "retinaface": retinaface_cases}  # the order they run in
N_CASES = {"pfld": 2, "arcface": 1, "retinaface": 2}


def time_steps(case: Case, device: torch.device, amp: bool, steps: int, warmup: int,
               deadline: float = math.inf) -> dict:
    """Steps per second, milliseconds per step, images per second and peak memory (GiB, CUDA only; ``None``
    elsewhere) of up to ``steps`` timed optimiser steps cycling over the staged batches, after ``warmup``
    untimed ones; the timed loop stops after the step during which ``time.perf_counter()`` passed
    ``deadline`` (at least one step is timed). The model's weights are restored afterwards."""
    gc.collect()  # the previous run's trainer and optimiser state go before the memory counter is reset
    model = case.model.to(device)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, case.optimizer(model), case.loss_fn, device=device, amp=amp, **case.options)
    batches = [to_device(b, device) for b in case.batches]  # staged: the timed steps copy nothing
    cuda = device.type == "cuda"
    for i in range(warmup):
        trainer.train_step(batches[i % len(batches)])
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    done = 0
    while done < steps and (done == 0 or time.perf_counter() < deadline):
        logs = trainer.train_step(batches[done % len(batches)])
        done += 1
    if cuda:
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / done
    trainer.check()  # raises if a step was not finite (the fused optimiser would have skipped the updates)
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if cuda else None
    final_loss = float(logs["loss"])
    model.load_state_dict(state)  # the next precision starts from the same weights
    del trainer, batches
    return {"ms_per_step": 1e3 * seconds, "steps_per_s": 1 / seconds, "images_per_s": case.batch_size / seconds,
            "peak_gib": peak, "final_loss": final_loss, "steps": done}


def loader_rate(loader: Any, workers: int, batches: int = 20, deadline: float = math.inf) -> float:
    """Training samples per second that ``loader``'s data set and collate function make with ``workers``
    processes, over ``batches`` batches (at least 2; fewer once ``deadline`` has passed), counted after the
    batches the workers had made ahead while the first one was awaited (two per worker) are taken."""
    from torch.utils.data import ConcatDataset

    ahead = 1 + 2 * workers  # the first batch and the ones prefetched (DataLoader: prefetch_factor 2 per worker)
    repeated = ConcatDataset([loader.dataset] *
                             math.ceil((batches + ahead + 1) * loader.batch_size / len(loader.dataset)))
    fast = make_loader(repeated, loader.batch_size, shuffle=True, num_workers=workers,
                       collate_fn=loader.collate_fn, drop_last=True)
    it = iter(fast)
    for _ in range(ahead):
        next(it)
    start = time.perf_counter()
    n = 0
    for i, _ in zip(range(batches), it):
        n += loader.batch_size
        if i >= 1 and time.perf_counter() > deadline:
            break
    return n / (time.perf_counter() - start)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()


def default_record(name: str) -> Path:
    """``facelearn/records/gpu_training_<gpu>.json``: ``NVIDIA H200`` -> ``gpu_training_h200.json``."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower().removeprefix("nvidia ")).strip("_")
    return RECORDS / f"gpu_training_{slug}.json"


def merged(path: Path, record: dict) -> dict:
    """``record`` with the lines of the record already at ``path`` (same device) that it does not hold, each
    keeping, or given from that record's header, its own ``measured`` block."""
    if not path.is_file():
        return record
    old = json.loads(path.read_text())
    if old.get("device") != record["device"] or bool(old.get("small")) != record["small"]:
        return record
    lines = {}
    for name, line in old.get("recipes", {}).items():
        if name not in record["recipes"]:
            line.setdefault("measured", {k: old[k] for k in ("device", "date", "torch", "steps") if k in old})
            lines[name] = line
    return {**record, "recipes": {**lines, **record["recipes"]}}


def write_record(path: Path, record: dict) -> None:
    """Strict JSON (no NaN), written beside ``path`` and renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)


def print_goals(record: dict) -> None:
    small = " (small setting: not comparable)" if record["small"] else ""
    for name, figure, op, bound, unit in GOALS:
        line = record["recipes"].get(name)  # this run's lines only
        if line is None:
            print(f"goal {name}: {op} {bound:,.0f} {unit} with AMP: not measured in this run")
            continue
        value = line["amp"][figure]
        met = value <= bound if op == "<=" else value >= bound
        print(f"goal {name}: {op} {bound:,.0f} {unit} with AMP; measured {value:,.1f} on {record['device']}: "
              f"{'met' if met else 'NOT met'}{small}", flush=True)


def run_others(device: torch.device, small: bool, compile: bool, deadline: float) -> None:
    """benchmarks/trainer_overhead.py and benchmarks/retinaface_speed.py --only-training on ``device``, each
    stopped when ``deadline`` passes; their output goes to this one's."""
    here = Path(__file__).resolve().parent
    dev = str(device)
    overhead = ["--device", dev] + ([] if compile else ["--no-compile"])
    speed = ["--only-training", "--device", dev]
    if small:
        overhead += ["--steps", "2", "--rounds", "1", "--batches", "1", "--threads", "1"]
        speed += ["--repeats", "1", "--train-threads", "1"]
    for script, extra in (("trainer_overhead.py", overhead), ("retinaface_speed.py", speed)):
        left = deadline - time.perf_counter()
        command = [sys.executable, str(here / script), *extra]
        if left < 10:
            print(f"\n== skipped {' '.join(command[1:])}: the budget is spent", flush=True)
            continue
        print(f"\n== {' '.join(['python', *command[1:]])} (stopped after {left:.0f} s)", flush=True)
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=here.parent)
        try:
            rc = proc.wait(timeout=left)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            rc = "stopped: budget spent"
        print(f"== {script}: exit {rc}, {time.perf_counter() - start:.0f} s", flush=True)


def main() -> None:
    start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="timed optimiser steps per recipe and precision")
    parser.add_argument("--warmup", type=int, help="untimed steps before them (default 20; 1 with --small)")
    parser.add_argument("--batches", type=int, help="distinct staged batches per recipe (default 4; 1 with --small)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--only", help="comma-separated, in this order: " + ", ".join(BUILDERS))
    parser.add_argument("--data", help="folder for the small SynthFace exports (default: a temporary one)")
    parser.add_argument("--json", help="write the record here (default with --all on CUDA: "
                                       "facelearn/records/gpu_training_<gpu>.json)")
    parser.add_argument("--all", action="store_true", help="every recipe, the record, then the two other benchmarks")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for the whole run (default 450)")
    parser.add_argument("--small", action="store_true", help="a smoke setting for a CPU: small batches and inputs")
    parser.add_argument("--skip-others", action="store_true", help="with --all: not the two other benchmarks")
    parser.add_argument("--overhead-compile", action="store_true", help="let trainer_overhead.py time compile=True")
    args = parser.parse_args()
    for flag, value, least in (("--steps", args.steps, 1), ("--warmup", args.warmup, 0),
                               ("--batches", args.batches, 1)):
        if value is not None and value < least:
            parser.error(f"{flag} must be at least {least}, got {value}")
    if not args.budget > 0:
        parser.error(f"--budget must be a positive number of seconds, got {args.budget}")
    if args.all and args.only:
        parser.error("--all times every recipe: leave out --only")
    try:
        device = runtime.device(args.device)
    except ValueError as err:
        parser.error(str(err))
    warmup = args.warmup if args.warmup is not None else (1 if args.small else 20)
    n_batches = args.batches if args.batches is not None else (1 if args.small else 4)
    chosen = args.only.split(",") if args.only else list(BUILDERS)
    unknown = [k for k in chosen if k not in BUILDERS]
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}; expected some of {', '.join(BUILDERS)}")
    name = device_name(device)
    out = Path(args.json) if args.json else None
    if out is None and args.all and device.type == "cuda" and not args.small:
        out = default_record(name)
    if out is not None and args.small and out.resolve().parent == RECORDS:
        parser.error(f"--small measures a smoke setting: not writing it into {RECORDS}")
    others = args.all and not args.skip_others
    deadline = start + args.budget
    recipes_deadline = deadline - (120 if others else 0)  # what the other two benchmarks take on an H200
    root = Path(args.data or tempfile.mkdtemp(prefix="facelearn-gpu-"))
    amp_dtype = runtime.amp_dtype(device)
    record = {"device": name, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "steps": args.steps,
              "warmup": warmup, "small": args.small, "cuda": torch.version.cuda,
              "amp_dtype": str(amp_dtype).replace("torch.", "") if amp_dtype else "none (fp32)",
              "cudnn_benchmark": torch.backends.cudnn.benchmark,
              "float32_matmul_precision": torch.get_float32_matmul_precision(),
              "host": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
              "threads": torch.get_num_threads(), "recipes": {}}
    print(f"{name}, torch {record['torch']}, AMP {record['amp_dtype']}, {args.steps} timed steps per line after "
          f"{warmup} warm-up steps, batches staged on the device; budget {args.budget:.0f} s"
          + (", SMALL smoke setting" if args.small else ""))
    for goal, figure, op, bound, unit in GOALS:
        print(f"goal: {goal}, {figure} {op} {bound:,.0f} {unit} with AMP")
    print(f"{'recipe':<42} {'prec':>4} {'batch':>5} {'steps/s':>8} {'ms/step':>8} {'img/s':>8} {'peak GiB':>8}")
    n_left = sum(N_CASES[k] for k in chosen)  # recipes still to time
    for key in chosen:
        if time.perf_counter() > recipes_deadline:
            print(f"  ({key}: skipped, the budget is spent)", flush=True)
            continue
        t = time.perf_counter()
        try:
            cases = BUILDERS[key](root, n_batches, args.small)
        except Exception:
            print(f"  ({key}: could not prepare its data: {traceback.format_exc(limit=2)})", flush=True)
            n_left -= N_CASES[key]
            continue
        print(f"  ({key}: data and batches in {time.perf_counter() - t:.0f} s)", flush=True)
        for case in cases:
            share = max(recipes_deadline - time.perf_counter(), 0) / max(n_left, 1)
            n_left -= 1
            t = time.perf_counter()
            try:
                figures = {}
                for label, amp, part in (("amp", True, 0.4), ("fp32", False, 0.8)):
                    figures[label] = f = time_steps(case, device, amp, args.steps, warmup, t + part * share)
                    pk = f"{f['peak_gib']:8.2f}" if f["peak_gib"] is not None else f"{'-':>8}"
                    print(f"{case.name:<42} {label:>4} {case.batch_size:>5} {f['steps_per_s']:>8.1f} "
                          f"{f['ms_per_step']:>8.2f} {f['images_per_s']:>8.0f} {pk}"
                          + (f"  ({f['steps']} steps: share of the budget spent)" if f["steps"] < args.steps else ""),
                          flush=True)
                rates = {str(w): loader_rate(case.loader, w, 2 if args.small else 20, t + share)
                         for w in (1, 4)} if case.loader is not None else {}
            except Exception:
                print(f"{case.name}: failed: {traceback.format_exc(limit=3)}", flush=True)
                continue
            finally:
                case.model.cpu()
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            amp = figures["amp"]
            hours = case.recipe_steps * amp["ms_per_step"] / 3.6e6
            record["recipes"][case.name] = {
                "batch": case.batch_size, "amp": amp, "fp32": figures["fp32"], "recipe_steps": case.recipe_steps,
                "recipe_hours": hours, "loader_samples_per_s": rates,
                "measured": {"device": name, "date": record["date"], "torch": record["torch"],
                             "steps": amp["steps"], "fp32_steps": figures["fp32"]["steps"], "warmup": warmup,
                             "batch": case.batch_size, **case.setting,
                             **{k: case.options[k] for k in ("channels_last", "compile") if k in case.options}}}
            print(f"{'':<6}AMP / fp32 step time {amp['ms_per_step'] / figures['fp32']['ms_per_step']:.2f}; "
                  f"recipe: {case.recipe_steps:,} steps, {hours:.2f} h with AMP on one {name}", flush=True)
            for w, r in rates.items():
                print(f"{'':<6}loader, {w} worker{'s' if w != '1' else ''}: {r:,.0f} samples/s "
                      f"({r / amp['images_per_s']:.2f}× the AMP step's rate)", flush=True)
            if out is not None:
                write_record(out, merged(out, record))
    if out is not None:
        print(f"record: {out} ({len(record['recipes'])} lines measured in this run)")
    print_goals(record)
    print(f"recipes done in {time.perf_counter() - start:.0f} s", flush=True)
    if others:
        run_others(device, args.small, args.overhead_compile, deadline)
    print(f"total {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
