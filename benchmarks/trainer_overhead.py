"""The training loop's own cost: steps per second of :class:`facelearn.engine.Trainer` against the loop it
replaced, and what its ``channels_last``, ``amp="bf16"`` and ``compile`` switches change.

    python benchmarks/trainer_overhead.py [--threads 2] [--steps 24] [--rounds 3] [--device cpu] [--no-compile]

Three of the book's training steps, each with its real loss on staged synthetic batches: RetinaFace
MobileNet-0.25 (batch 8 × 256², the multi-task loss with OHEM, SGD), PFLD 0.25X (batch 32 × 112², the
weighted objective with the auxiliary net, Adam) and the loss chapters' SmallCNN with an ArcFace head (batch
64 × 64², 500 identities, AdamW). The baseline, measured in the same run and interleaved with the new loop
round by round, is :func:`reference_step`: the previous ``Trainer.train_step``, which made the host wait for
the device at every iteration (the loss and every log read with ``float``, the finiteness of the loss, of the
gradient norm and of the weights each read with ``bool``). The new ``Trainer.fit`` keeps the logs on the device
and waits every ``log_every`` iterations. Printed per model: steps per second of each (the median of the
rounds), the new loop's speed-up over the reference, then the new loop with ``channels_last=True``, with
``amp="bf16"`` (bfloat16 autocast, on the CPU too) and with ``compile=True`` against its default (the
compiled model's first epoch, compilation included, on its own line), with the thread count and the device.
On a CPU a wait costs next to nothing, so the first ratio is near 1 there; on a GPU the waits are what the
small networks' steps spent their time on.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from facelearn import runtime
from facelearn.engine import Trainer, to_device
from facelearn.errors import TrainingStopped


@dataclass
class Case:
    """A model, how to build its optimiser, its ``loss_fn(model, batch) -> (loss, logs)``, a few distinct
    staged batches and the recipe's gradient clipping."""

    name: str
    model: nn.Module
    optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    loss_fn: Callable
    batches: list[Any]
    grad_clip: float | None


def retinaface_case(g: torch.Generator, n_batches: int) -> Case:
    from facelearn.detection.loss import LossConfig
    from facelearn.detection.retinaface import build
    from facelearn.detection.training import make_loss_fn

    size, batch, faces = 256, 8, 3

    def targets() -> dict:
        xy = torch.rand(faces, 2, generator=g) * (size - 80)
        wh = 16 + torch.rand(faces, 2, generator=g) * 60
        boxes = torch.cat([xy, xy + wh], 1)
        landmarks = xy[:, None] + wh[:, None] * torch.rand(faces, 5, 2, generator=g)
        return {"boxes": boxes, "landmarks": landmarks, "landmark_mask": torch.ones(faces, dtype=torch.bool)}

    batches = [(torch.rand(batch, 3, size, size, generator=g), [targets() for _ in range(batch)])
               for _ in range(n_batches)]
    return Case(f"RetinaFace MobileNet-0.25, batch {batch} × {size}²", build("retinaface-mobilenet0.25"),
                lambda m: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4),
                make_loss_fn(LossConfig()), batches, 10.0)


def pfld_case(g: torch.Generator, n_batches: int) -> Case:
    from facelearn.landmarks.loss import PFLDObjective
    from facelearn.landmarks.pfld import PFLDConfig, pfld_pair

    batch = 32
    batches = [{"image": torch.rand(batch, 3, 112, 112, generator=g), "landmarks": torch.rand(batch, 196, generator=g),
                "angles": (torch.rand(batch, 3, generator=g) - 0.5), "attributes": (torch.rand(batch, 6, generator=g) < 0.2).float()}
               for _ in range(n_batches)]
    return Case(f"PFLD 0.25X, batch {batch} × 112²", pfld_pair(PFLDConfig(0.25)),
                lambda m: torch.optim.Adam(m.parameters(), lr=1e-3, weight_decay=1e-6),
                PFLDObjective(torch.ones(6)), batches, 10.0)


def arcface_case(g: torch.Generator, n_batches: int) -> Case:
    from facelearn.models import preset
    from facelearn.recognition.training import make_head, random_flip

    batch, classes = 64, 500
    model = nn.ModuleDict({"backbone": preset("synthface-cnn").build(), "head": make_head("arcface", 128, classes, 30.0, 0.5)})

    def loss_fn(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
        x, y = batch
        return model["head"](model["backbone"](random_flip(x)), y), dict(getattr(model["head"], "last", {}))

    batches = [(torch.rand(batch, 3, 64, 64, generator=g), torch.randint(0, classes, (batch,), generator=g))
               for _ in range(n_batches)]
    return Case(f"SmallCNN + ArcFace, batch {batch} × 64², {classes} classes", model,
                lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=5e-4), loss_fn, batches, 5.0)


def reference_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable, batch: Any,
                   device: torch.device, grad_clip: float | None, step: int) -> dict[str, float]:
    """The previous ``Trainer.train_step`` (one process, fp32): every check and log read on the host."""
    model.train()
    batch = to_device(batch, device)
    loss, logs = loss_fn(model, batch)
    if not torch.isfinite(loss):
        raise TrainingStopped(f"loss is {loss.item()} at iteration {step}; lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    _stop_if_nonfinite("gradients", [p.grad for p in model.parameters() if p.grad is not None], step)
    optimizer.step()
    _stop_if_nonfinite("weights", list(model.parameters()), step)
    return {"loss": float(loss.detach()), **{k: float(v) for k, v in logs.items()}}


def _stop_if_nonfinite(what: str, tensors: list[torch.Tensor], step: int) -> None:
    """The previous per-step check: one fused norm, read on the host."""
    if tensors and not bool(torch.isfinite(nn.utils.get_total_norm([t.detach() for t in tensors]))):
        raise TrainingStopped(f"{what} are not finite at iteration {step} (the loss was finite)")


def reference_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, case: Case, loader: DataLoader,
                    device: torch.device) -> float:
    """Seconds for one pass of the previous ``fit`` loop (per-step logs summed as Python floats)."""
    sums: dict[str, float] = {}
    start = time.perf_counter()
    for i, batch in enumerate(loader):
        for k, v in reference_step(model, optimizer, case.loss_fn, batch, device, case.grad_clip, i).items():
            sums[k] = sums.get(k, 0.0) + v
    _sync(device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trainer_epoch(trainer: Trainer, loader: DataLoader) -> float:
    """Seconds for one more epoch of ``trainer.fit``."""
    start = time.perf_counter()
    trainer.fit(loader, trainer.epoch + 1, progress=False)
    _sync(trainer.device)
    return time.perf_counter() - start


def measure(case: Case, device: torch.device, steps: int, rounds: int, compile: bool) -> dict[str, Any]:
    """Steps per second of the reference loop and of Trainer (default, channels_last, amp="bf16", compile)."""
    staged = [to_device(b, device) for b in case.batches]
    loader = DataLoader([staged[i % len(staged)] for i in range(steps)], batch_size=None, shuffle=False)
    start_state = copy.deepcopy(case.model.state_dict())

    def fresh() -> nn.Module:
        model = copy.deepcopy(case.model).to(device)
        model.load_state_dict(start_state)
        return model

    ref_model = fresh()
    ref_opt = case.optimizer(ref_model)
    trainers = {"default": Trainer(fresh_model := fresh(), case.optimizer(fresh_model), case.loss_fn, device=device,
                                   grad_clip=case.grad_clip, amp=False)}
    cl_model = fresh()
    trainers["channels_last"] = Trainer(cl_model, case.optimizer(cl_model), case.loss_fn, device=device,
                                        grad_clip=case.grad_clip, amp=False, channels_last=True)
    bf16_model = fresh()
    trainers["bf16"] = Trainer(bf16_model, case.optimizer(bf16_model), case.loss_fn, device=device,
                               grad_clip=case.grad_clip, amp="bf16")
    first_compiled = None
    if compile:
        c_model = fresh()
        trainers["compile"] = Trainer(c_model, case.optimizer(c_model), case.loss_fn, device=device,
                                      grad_clip=case.grad_clip, amp=False, compile=True)
        first_compiled = trainer_epoch(trainers["compile"], loader)  # compilation happens here
    reference_epoch(ref_model, ref_opt, case, loader, device)  # warm-up
    for trainer in trainers.values():
        if trainer.epoch == 0:
            trainer_epoch(trainer, loader)
    times: dict[str, list[float]] = {"reference": [], **{k: [] for k in trainers}}
    for r in range(rounds):  # interleaved, the order turned each round
        order = ["reference", *trainers] if r % 2 == 0 else [*trainers, "reference"][::-1]
        for key in order:
            if key == "reference":
                times[key].append(reference_epoch(ref_model, ref_opt, case, loader, device))
            else:
                times[key].append(trainer_epoch(trainers[key], loader))
    rates = {k: steps / statistics.median(v) for k, v in times.items()}
    return {"rates": rates, "first_compiled_s": first_compiled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--steps", type=int, default=24, help="iterations per timed epoch")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs of each loop, interleaved")
    parser.add_argument("--batches", type=int, default=4, help="distinct staged batches per model")
    parser.add_argument("--device", default=None, help="default: facelearn.runtime.device()")
    parser.add_argument("--only", help="comma-separated: retinaface, pfld, arcface")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile=True measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else runtime.device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"device {device} ({name}), {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{args.steps} steps per epoch, median of {args.rounds} interleaved epochs")
    builders = {"retinaface": retinaface_case, "pfld": pfld_case, "arcface": arcface_case}
    g = torch.Generator().manual_seed(0)
    units = f"{'':<46} {'steps/s':>9} {'steps/s':>8} {'':>5} {'steps/s':>8} {'':>5}"
    units += f" {'steps/s':>8} {'':>5}"
    names = f"{'model':<46} {'reference':>9} {'Trainer':>8} {'×':>5} {'ch-last':>8} {'×':>5} {'bf16':>8} {'×':>5}"
    if not args.no_compile:
        units, names = units + f" {'steps/s':>8} {'':>5}", names + f" {'compile':>8} {'×':>5}"
    print(units)
    print(names)
    for key in args.only.split(",") if args.only else builders:
        runtime.seed_everything(0)
        case = builders[key](g, args.batches)
        try:
            result = measure(case, device, args.steps, args.rounds, not args.no_compile)
        except RuntimeError as err:
            if not str(err).startswith("compile=True: "):
                raise
            print(f"{case.name}: {err}")
            result = measure(case, device, args.steps, args.rounds, False)
        r = result["rates"]
        line = (f"{case.name:<46} {r['reference']:>9.2f} {r['default']:>8.2f} {r['default'] / r['reference']:>5.2f} "
                f"{r['channels_last']:>8.2f} {r['channels_last'] / r['default']:>5.2f} "
                f"{r['bf16']:>8.2f} {r['bf16'] / r['default']:>5.2f}")
        if "compile" in r:
            line += f" {r['compile']:>8.2f} {r['compile'] / r['default']:>5.2f}"
        print(line, flush=True)
        if result["first_compiled_s"] is not None:
            print(f"{'':<6}compile=True: first epoch {result['first_compiled_s']:.1f} s "
                  f"({args.steps} steps, compilation included)", flush=True)
    print("×: Trainer against the reference loop (the previous train_step, a host wait per check and log); "
          "ch-last, bf16 and compile against Trainer's default, which has them off (a recipe turns them on)")


if __name__ == "__main__":
    main()
