"""The training loop every chapter uses (book: "How to run it", and each model chapter's training section).

A :class:`Trainer` owns a model, an optimiser and a loss function ``loss_fn(model, batch) -> (loss, logs)``.
It moves batches to the model's device, runs the forward pass under autocast where the device supports
mixed precision, scales fp16 gradients, averages gradients across ``torchrun`` processes, writes an
atomic checkpoint after each epoch and resumes from it exactly: the data order of epoch *e* depends only
on the seed and *e*, and the random generators are saved with the weights.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, WeightedRandomSampler

from facelearn import runtime
from facelearn.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state

LossFn = Callable[[nn.Module, Any], "tuple[torch.Tensor, dict[str, float]]"]


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor inside (tuples, lists, dicts, nested) moved to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device) for v in batch]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    return batch


def _seed_worker(worker_id: int) -> None:
    np.random.seed(torch.initial_seed() % 2**32)


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0, num_workers: int = 0,
                drop_last: bool = False, collate_fn: Callable | None = None,
                weights: torch.Tensor | None = None) -> DataLoader:
    """A ``DataLoader`` whose order is reproducible: seeded generator, seeded workers, and a
    ``DistributedSampler`` when running under ``torchrun``. :class:`Trainer` reseeds it every epoch.

    ``weights`` (len(dataset),): draw each epoch's len(dataset) items with replacement, item i with
    probability weights[i] / Σ weights (one process only).
    """
    sampler = None
    generator = torch.Generator().manual_seed(seed)
    if dist.is_available() and dist.is_initialized():
        if weights is not None:
            raise ValueError("weighted sampling is not supported under torchrun; train on one process")
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        shuffle = False
    elif weights is not None:
        if len(weights) != len(dataset) or not bool((weights >= 0).all()) or float(weights.sum()) <= 0:
            raise ValueError(f"weights must be {len(dataset)} non-negative numbers with a positive sum")
        # the sampler shares the loader's generator, so Trainer's reseeding fixes each epoch's draw
        sampler = WeightedRandomSampler(weights.double(), len(dataset), replacement=True, generator=generator)
        shuffle = False
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler, num_workers=num_workers,
                      drop_last=drop_last, collate_fn=collate_fn, generator=generator, worker_init_fn=_seed_worker,
                      persistent_workers=False)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _is_main() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class Trainer:
    """Train ``model`` with ``optimizer`` on ``loss_fn(model, batch) -> (loss, logs)``.

    Args:
        model: every trainable module (a backbone and a margin head together in an ``nn.ModuleDict``).
        optimizer, scheduler: torch optimiser; optional scheduler stepped once per iteration.
        loss_fn: returns the scalar loss to minimise and a dict of floats to log.
        device: defaults to :func:`facelearn.runtime.device`; the model is moved there.
        amp: mixed precision where the device supports it (bf16/fp16 on CUDA; fp32 on CPU).
        grad_clip: max global gradient norm, or ``None``.
        checkpoint: file to save after each epoch and to resume from when it exists.
        seed: seeds the per-epoch data order (``seed``, epoch) of loaders made by :func:`make_loader`.
        callbacks: ``f(trainer, logs)`` called after every iteration (e.g. a margin's annealing schedule).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, *,
                 device: torch.device | str | None = None, scheduler: Any = None, amp: bool = True,
                 grad_clip: float | None = None, checkpoint: str | os.PathLike | None = None, seed: int = 0,
                 callbacks: Iterable[Callable[["Trainer", dict], None]] = ()) -> None:
        self.device = torch.device(device) if device is not None else runtime.device()
        self.model = model.to(self.device)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.loss_fn = loss_fn
        self.amp_dtype = runtime.amp_dtype(self.device) if amp else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.grad_clip = grad_clip
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.seed = seed
        self.callbacks = list(callbacks)
        self.epoch = 0  # epochs completed
        self.step = 0  # iterations completed
        self.history: list[dict[str, float]] = []
        if self.checkpoint is not None and self.checkpoint.exists():
            self.load_state_dict(load_checkpoint(self.checkpoint, map_location=self.device))

    # -- one iteration -------------------------------------------------------------------------------------
    def train_step(self, batch: Any) -> dict[str, float]:
        """Forward, backward and update on one batch; returns the logs with ``loss``."""
        self.model.train()
        batch = to_device(batch, self.device)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            loss, logs = self.loss_fn(self.model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at iteration {self.step}; lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if _world_size() > 1:
            for p in self.model.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= _world_size()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1
        logs = {"loss": float(loss.detach()), **{k: float(v) for k, v in logs.items()}}
        for callback in self.callbacks:
            callback(self, logs)
        return logs

    # -- epochs --------------------------------------------------------------------------------------------
    def fit(self, loader: DataLoader, epochs: int, *, progress: bool = True) -> list[dict[str, float]]:
        """Train until ``epochs`` epochs are complete (counting those restored from the checkpoint).

        Returns the history: one dict per epoch with the mean of each logged value, ``epoch`` and ``seconds``.
        """
        from tqdm.auto import tqdm

        remaining = max(0, epochs - self.epoch)
        bar = tqdm(total=remaining * len(loader), desc="training", disable=not (progress and _is_main() and remaining))
        while self.epoch < epochs:
            self._reseed(loader, self.epoch)
            sums: dict[str, float] = defaultdict(float)
            count = 0
            start = time.perf_counter()
            bar.set_description(f"epoch {self.epoch + 1}/{epochs}")
            for batch in loader:
                logs = self.train_step(batch)
                for k, v in logs.items():
                    sums[k] += v
                count += 1
                bar.update(1)
                bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)
            self.epoch += 1
            record = {k: v / max(count, 1) for k, v in sums.items()}
            record.update(epoch=self.epoch, seconds=time.perf_counter() - start)
            self.history.append(record)
            if self.checkpoint is not None and _is_main():
                self.save(self.checkpoint)
                with open(self.checkpoint.with_suffix(".log.jsonl"), "a") as log:
                    log.write(json.dumps(record) + "\n")
        bar.close()
        return self.history

    def _reseed(self, loader: DataLoader, epoch: int) -> None:
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        if loader.generator is not None:
            loader.generator.manual_seed(self.seed * 1_000_003 + epoch)

    # -- checkpoints ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: weights, optimiser, scheduler, scaler, counters, generators."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(state.get("history", []))
        set_rng_state(state["rng"])

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`state_dict` atomically to ``path``."""
        return save_checkpoint(self.state_dict(), path)


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to zero, stepped per iteration."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
