"""The training loop every chapter uses (book: "How to run it", and each model chapter's training section).

A :class:`Trainer` owns a model, an optimiser and a loss function ``loss_fn(model, batch) -> (loss, logs)``.
It moves batches to the model's device, runs the forward pass under autocast where the device supports
mixed precision, scales fp16 gradients, writes an atomic checkpoint after each epoch and resumes from it
exactly: the data order of epoch *e* depends only on the seed and *e*, and the random generators are saved
with the weights.

Under ``torchrun`` (chapter "Millions of identities") the same code trains one model on several processes:
the model is wrapped in torch's ``DistributedDataParallel`` (gradients averaged by a bucketed all-reduce
that overlaps the backward pass), :func:`make_loader` gives each process its share of every epoch, and
rank 0 alone writes checkpoints, logs and progress bars. A checkpoint holds the unwrapped model's weights,
so it resumes on any number of processes.
"""

from __future__ import annotations

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
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, WeightedRandomSampler

from facelearn import runtime
from facelearn.engine import distributed
from facelearn.engine.checkpoint import (check_resumable, load_checkpoint, remove_stale_temporaries, rng_state,
                                        save_checkpoint, set_rng_state, sync_log)
from facelearn.engine.logs import log_dtype
from facelearn.errors import TrainingStopped

LossFn = Callable[[nn.Module, Any], "tuple[torch.Tensor, dict[str, torch.Tensor | float]]"]


def to_device(batch: Any, device: torch.device, *, channels_last: bool = False) -> Any:
    """``batch`` with every tensor inside (tuples, lists, dicts, nested) moved to ``device``; with
    ``channels_last`` each 4-D floating tensor (a batch of images, (N, C, H, W)) is stored channels-last
    (same shape and values, memory laid out (N, H, W, C))."""
    if isinstance(batch, torch.Tensor):
        if channels_last and batch.ndim == 4 and batch.is_floating_point():
            return batch.to(device, non_blocking=True, memory_format=torch.channels_last)
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last=channels_last) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device, channels_last=channels_last) for v in batch]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    return batch


def _seed_worker(worker_id: int) -> None:
    np.random.seed(torch.initial_seed() % 2**32)


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0, num_workers: int = 0,
                drop_last: bool = False, collate_fn: Callable | None = None,
                weights: torch.Tensor | None = None) -> DataLoader:
    """A ``DataLoader`` whose order is reproducible: seeded generator, seeded workers, and a
    ``DistributedSampler`` when running under ``torchrun`` (each of the W processes reads its own 1/W of
    every epoch; ``batch_size`` is per process, the global batch W × ``batch_size``). :class:`Trainer`
    reseeds it every epoch.

    ``weights`` (len(dataset),): draw each epoch's len(dataset) items with replacement, item i with
    probability weights[i] / Σ weights (one process only).
    """
    sampler = None
    generator = torch.Generator().manual_seed(seed)
    if distributed.setup():
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


class _Objective(nn.Module):
    """``loss_fn(model, batch)`` as a module's forward, so that ``DistributedDataParallel`` can wrap it."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self._loss_fn = (loss_fn,)  # a tuple: a loss that is a module stays outside the wrapped parameters

    def forward(self, batch: Any) -> "tuple[torch.Tensor, dict[str, torch.Tensor | float]]":
        return self._loss_fn[0](self.model, batch)


def _batch_size(loader: Any) -> int | None:
    """Items per batch on this process: the loader's, else its batch sampler's (e.g. a PKSampler's P × K)."""
    size = getattr(loader, "batch_size", None)
    return size if size is not None else getattr(getattr(loader, "batch_sampler", None), "batch_size", None)


_FUSABLE = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)

# why a run stopped, as the device records it (see Trainer._record)
_LOSS, _GRADIENTS, _WEIGHTS = 1, 2, 3


def _fuse(optimizer: torch.optim.Optimizer) -> bool:
    """Switch torch's SGD, Adam or AdamW, left at its default implementation, to its fused one: one kernel
    per step instead of several per parameter group, and a step that the optimiser skips on the device when
    given a nonzero ``found_inf`` tensor (what lets :class:`Trainer` check a step without waiting for it).
    Returns whether it did."""
    groups = optimizer.param_groups
    if type(optimizer) not in _FUSABLE or any(g.get("fused") is not None or g.get("foreach") is not None
                                              or g.get("differentiable") for g in groups):
        return False
    if not all(p.is_floating_point() for g in groups for p in g["params"]):
        return False
    for g in groups:
        g["fused"] = True
    optimizer.defaults["fused"] = True
    optimizer._step_supports_amp_scaling = True  # what the constructor sets for fused=True
    return True


def _compile(model: nn.Module) -> None:
    """``torch.compile`` the forward of ``model`` (of each member of an ``nn.ModuleDict``, which is never
    called itself) in place, so that the weights keep their names in a checkpoint."""
    from torch._dynamo.eval_frame import check_if_dynamo_supported

    try:
        check_if_dynamo_supported()
    except RuntimeError as err:
        raise RuntimeError(f"compile=True: torch.compile is not available here ({err}); train with "
                           f"compile=False") from None
    for module in model.values() if isinstance(model, nn.ModuleDict) else [model]:
        module.compile()


def _amp_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the Trainer's ``amp`` switch on ``device`` (``None``: fp32)."""
    if amp == "bf16":
        return torch.bfloat16
    if isinstance(amp, bool):
        return runtime.amp_dtype(device) if amp else None
    raise ValueError(f"amp must be True, False or 'bf16', got {amp!r}")


class Trainer:
    """Train ``model`` with ``optimizer`` on ``loss_fn(model, batch) -> (loss, logs)``.

    Args:
        model: every trainable module (a backbone and a margin head together in an ``nn.ModuleDict``).
        optimizer, scheduler: torch optimiser; optional scheduler stepped once per iteration.
        loss_fn: returns the scalar loss to minimise and a dict of values to log (0-d tensors or floats).
        device: defaults to :func:`facelearn.runtime.device`; the model is moved there.
        amp: ``True``: mixed precision where the device has a default for it (bf16/fp16 on CUDA; fp32 on
            CPU); ``"bf16"``: bfloat16 autocast on any device, the CPU included (convolutions and matrix
            products in bf16, the loss read in fp32; fast on CPUs with AVX-512 BF16 or AMX, slow without);
            ``False``: fp32.
        grad_clip: max global gradient norm, or ``None``.
        checkpoint: file to save after each epoch and to resume from when it exists.
        seed: seeds the per-epoch data order (``seed``, epoch) of loaders made by :func:`make_loader`.
        callbacks: ``f(trainer, logs)`` called after every iteration (e.g. a margin's annealing schedule);
            ``logs`` holds the iteration's values as :meth:`train_step` returns them.
        sync_batchnorm: under ``torchrun``, batch-norm statistics over the global batch (``SyncBatchNorm``,
            GPUs only) instead of each process's own batch.
        find_unused_parameters: tell ``DistributedDataParallel`` that some parameters may get no gradient.
        meta: the model's description (:func:`facelearn.registry.metadata`), stored in every checkpoint so that
            :func:`facelearn.load` rebuilds the model from it alone.
        log_every: the host waits for the device once every ``log_every`` iterations (and at each epoch's
            end) to read the finiteness flags and refresh the progress bar.
        channels_last: store the model's weights and each 4-D image batch channels-last ((N, H, W, C) in
            memory), the layout the CPU (oneDNN) and GPU (cuDNN) convolution kernels run fastest on.
        compile: run the model's forward through ``torch.compile`` (compiled on the first iterations).
            Both are off by default, so that a run repeats the earlier runs bit for bit; a recipe turns them
            on. ``benchmarks/trainer_overhead.py`` measures them: on a 2-core CPU (one thread) channels-last
            trained RetinaFace MobileNet-0.25, PFLD 0.25X and the loss chapters' SmallCNN 1.15–1.76 × faster,
            and compiling 0.96–1.70 × faster after 2–6 minutes of compilation, longer than a quick-profile
            chapter's whole training. ``benchmarks/retinaface_speed.py`` times RetinaFace MobileNet-0.25's step
            at batch 8 × 640² (SGD, one thread of a CPU with AVX-512 BF16 and no AMX): channels-last 1.1–1.3 ×,
            ``amp="bf16"`` 1.3–1.4 ×, both together 1.8 × as fast as the default (their first losses 10⁻⁷,
            4·10⁻⁴ and 1.6·10⁻³ from fp32's, relative); compiling the forward made each of these steps slower
            once compiled (0.85–0.91 × as fast as the same step uncompiled).

    Between two waits the logs stay on the device: each iteration adds its detached values to device
    tensors, so nothing forces the host to wait for the step it has just queued. The check that a step is
    finite stays exact. Each iteration computes, on the device, whether its loss, its gradient norm and (after
    the update) its weights are finite, and the first iteration that was not; at the next wait
    :class:`~facelearn.errors.TrainingStopped` names that iteration. An update never uses a non-finite loss or
    gradient: a fused optimiser (on CUDA, torch's SGD, Adam and AdamW at their default implementation are
    switched to the fused one) is told on the device to skip the step, and skips every later step too, so
    the parameters and the optimiser state are those before the iteration named (the batch-norm running
    statistics keep the forward passes up to the wait). Another optimiser, and fp16's gradient scaler, get
    the flag read before each update (one wait per iteration, as on the CPU, where reading it costs nothing).

    Under ``torchrun`` the process group is joined here (:func:`facelearn.engine.distributed.setup`) and
    ``self.model`` stays the plain model; the wrapped one is used for the forward and backward passes only.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, *,
                 device: torch.device | str | None = None, scheduler: Any = None, amp: bool | str = True,
                 grad_clip: float | None = None, checkpoint: str | os.PathLike | None = None, seed: int = 0,
                 callbacks: Iterable[Callable[["Trainer", dict], None]] = (), sync_batchnorm: bool = False,
                 find_unused_parameters: bool = False, meta: dict[str, Any] | None = None, log_every: int = 50,
                 channels_last: bool = False, compile: bool = False) -> None:
        if log_every < 1:
            raise ValueError(f"log_every must be a positive number of iterations, got {log_every}")
        self.world_size = distributed.world_size() if distributed.setup() else 1
        self.device = torch.device(device) if device is not None else runtime.device()
        if self.device.type == "cuda" and self.device.index is None and self.world_size > 1:
            self.device = torch.device("cuda", torch.cuda.current_device())
        if sync_batchnorm and self.world_size > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.channels_last = channels_last
        self.model = model.to(self.device, memory_format=torch.channels_last) if channels_last else model.to(self.device)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.loss_fn = loss_fn
        self.amp_dtype = _amp_dtype(amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.grad_clip = grad_clip
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.seed = seed
        self.callbacks = list(callbacks)
        self.meta = meta
        self.log_every = log_every
        self.epoch = 0  # epochs completed
        self.step = 0  # iterations completed
        self.history: list[dict[str, float]] = []
        self._fused = self.device.type == "cuda" and _fuse(optimizer)  # before a checkpoint's state is loaded
        # the optimiser skips a step on the device when told: no wait before each update
        self._deferred = getattr(optimizer, "_step_supports_amp_scaling", False) and not self.scaler.is_enabled()
        self._first_bad = torch.full((), -1, dtype=torch.long, device=self.device)  # first non-finite iteration
        self._why = torch.zeros((), dtype=torch.long, device=self.device)  # _LOSS, _GRADIENTS or _WEIGHTS
        self._bad_loss = torch.zeros((), device=self.device)  # its loss
        if self.checkpoint is not None and distributed.is_main():
            remove_stale_temporaries(self.checkpoint)  # left by a write that was killed before its rename
        if self.checkpoint is not None and self.checkpoint.exists():
            state = load_checkpoint(self.checkpoint, map_location=self.device)
            check_resumable(state, self.checkpoint, self.model, meta, shapes=self.world_size == 1)
            self.load_state_dict(state)
        if compile:
            _compile(self.model)
        self.compile = compile
        self._forward: nn.Module = _Objective(self.model, loss_fn)
        if self.world_size > 1:  # wrapping broadcasts rank 0's weights, so every process starts equal
            ids = [self.device.index] if self.device.type == "cuda" else None
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(  # each process's own shard
                self._forward, [f"model.{name}" for name, _, _ in self._sharded()])
            self._forward = DistributedDataParallel(self._forward, device_ids=ids,
                                                    find_unused_parameters=find_unused_parameters)

    # -- one iteration -------------------------------------------------------------------------------------
    def train_step(self, batch: Any) -> dict[str, torch.Tensor | float]:
        """Forward, backward and update on one batch; returns the logs: ``loss`` and ``loss_fn``'s values, the
        tensors among them detached 0-d tensors on the device (``float(logs["loss"])`` waits for the step).

        Every ``log_every``-th iteration waits for the device and raises
        :class:`~facelearn.errors.TrainingStopped` if an iteration since the last wait was not finite."""
        self.model.train()
        batch = to_device(batch, self.device, channels_last=self.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            loss, logs = self._compiled_forward(batch)
        loss_ok = torch.isfinite(loss.detach())
        if not self._deferred and not bool(loss_ok):
            raise TrainingStopped(f"loss is {loss.item()} at iteration {self.step}; lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # under DDP: gradients averaged over the processes here
        norm = None
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            norm = self._clip_gradients(self.grad_clip)
        grads_ok = loss_ok
        if not self.scaler.is_enabled():  # fp16's scaler skips a step with infinite gradients by itself
            if norm is None:
                norm = nn.utils.get_total_norm([p.grad.detach() for p in self.model.parameters() if p.grad is not None])
            grads_ok = torch.isfinite(norm)
            if not self._deferred and not bool(grads_ok):
                raise TrainingStopped(self._stopped("gradients", self.step))
        if self._deferred:  # skipped on the device: this step not finite, or an earlier one
            self.optimizer.found_inf = (~(loss_ok & grads_ok & (self._first_bad < 0))).float()
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.found_inf
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        weights_ok = torch.isfinite(nn.utils.get_total_norm([p.detach() for p in self.model.parameters()]))
        if self._deferred:
            self._record(loss.detach(), loss_ok, grads_ok, weights_ok)
        elif not bool(weights_ok):
            raise TrainingStopped(self._stopped("weights", self.step))
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1
        if self.step % self.log_every == 0:
            self.check()
        logs = {"loss": loss.detach(), **{k: v.detach() if torch.is_tensor(v) else v for k, v in logs.items()}}
        for callback in self.callbacks:
            callback(self, logs)
        return logs

    def _compiled_forward(self, batch: Any) -> "tuple[torch.Tensor, dict]":
        if not self.compile:
            return self._forward(batch)
        try:
            return self._forward(batch)
        except torch._dynamo.exc.TorchDynamoException as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RuntimeError(f"compile=True: torch.compile failed on this machine ({first}); train with "
                               f"compile=False") from None

    def _record(self, loss: torch.Tensor, *finite: torch.Tensor) -> None:
        """Note, on the device, this iteration as the first non-finite one if it is (no wait)."""
        loss_ok, grads_ok, weights_ok = finite
        why = torch.where(~loss_ok, _LOSS, torch.where(~grads_ok, _GRADIENTS, torch.where(~weights_ok, _WEIGHTS, 0)))
        first = (self._first_bad < 0) & (why > 0)
        self._first_bad = torch.where(first, self.step, self._first_bad)
        self._why = torch.where(first, why, self._why)
        self._bad_loss = torch.where(first, loss.float(), self._bad_loss)

    def check(self) -> None:
        """Wait for the device and raise :class:`~facelearn.errors.TrainingStopped` naming the first iteration
        whose loss, gradients or weights were not finite, if any was (it and every later one left no update;
        ``self.step`` goes back to it)."""
        if not self._deferred:
            return  # each iteration was checked before its update
        first, why, loss = int(self._first_bad), int(self._why), float(self._bad_loss)
        if first < 0:
            return
        self.step = first
        if why == _LOSS:
            raise TrainingStopped(f"loss is {loss} at iteration {first}; lower the learning rate")
        raise TrainingStopped(self._stopped("gradients" if why == _GRADIENTS else "weights", first))

    @staticmethod
    def _stopped(what: str, step: int) -> str:
        return (f"{what} are not finite at iteration {step} (the loss was finite); lower the learning rate or "
                f"check the data — the last checkpoint is the last good state")

    def _clip_gradients(self, max_norm: float) -> torch.Tensor:
        """Scale every gradient by min(1, max_norm / (‖g‖ + 10⁻⁶)), ‖g‖ the global norm; a sharded
        parameter's part of ‖g‖² is summed over the processes, so every process scales by the same factor.
        Returns ‖g‖ before clipping (a 0-d tensor on the device)."""
        shards = {id(p) for _, _, p in self._sharded()} if self.world_size > 1 else set()
        if not shards:
            return nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        grads = [(p.grad, id(p) in shards) for p in self.model.parameters() if p.grad is not None]
        mine = torch.stack([g.float().pow(2).sum() for g, sharded in grads if sharded]).sum()
        dist.all_reduce(mine)
        total = (mine + sum(g.float().pow(2).sum() for g, sharded in grads if not sharded)).sqrt()
        factor = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g, _ in grads:
            g.mul_(factor.to(g.dtype))
        return total

    # -- epochs --------------------------------------------------------------------------------------------
    def fit(self, loader: DataLoader, epochs: int, *, progress: bool = True) -> list[dict[str, float]]:
        """Train until ``epochs`` epochs are complete (counting those restored from the checkpoint).

        Returns the history: one dict per epoch with the mean of each logged value, ``epoch`` and ``seconds``.
        The progress bar shows the epoch's mean loss so far, refreshed every ``log_every`` iterations.
        """
        from tqdm.auto import tqdm

        remaining = max(0, epochs - self.epoch)
        main = distributed.is_main()
        if self.world_size > 1 and main and remaining:
            print(self.scale_line(loader), flush=True)
        if self.checkpoint is not None and main and self.history:  # a kill after a checkpoint, before its log line
            sync_log(self.checkpoint.with_suffix(".log.jsonl"), [self._log_record(r, loader) for r in self.history])
        bar = tqdm(total=remaining * len(loader), desc="training", disable=not (progress and main and remaining))
        sum_dtype = log_dtype(self.device)
        while self.epoch < epochs:
            self._reseed(loader, self.epoch)
            sums: dict[str, torch.Tensor | float] = defaultdict(float)  # on the device for tensor logs
            count = 0
            start = time.perf_counter()
            bar.set_description(f"epoch {self.epoch + 1}/{epochs}")
            try:
                for batch in loader:
                    logs = self.train_step(batch)
                    for k, v in logs.items():
                        sums[k] = sums[k] + (v.to(sum_dtype) if torch.is_tensor(v) else v)
                    count += 1
                    bar.update(1)
                    if self.step % self.log_every == 0:  # train_step has just waited for the device
                        bar.set_postfix(loss=f"{float(sums['loss']) / count:.4f}", refresh=False)
                self.check()
                record = self._mean_over_processes({k: float(v) for k, v in sums.items()}, count)
                self.epoch += 1
                record.update(epoch=self.epoch, seconds=time.perf_counter() - start)
                self.history.append(record)
                state = self.state_dict() if self.checkpoint is not None and (main or self._sharded()) else None
                if state is not None and main:
                    save_checkpoint(state, self.checkpoint)
                    sync_log(self.checkpoint.with_suffix(".log.jsonl"), [self._log_record(r, loader) for r in self.history])
                distributed.barrier()  # no process runs ahead of a checkpoint being written
            except TrainingStopped:
                bar.close()  # so that the one-line message starts a line of its own
                raise
            except RuntimeError as err:
                if not distributed.lost_peer(err):
                    raise
                bar.close()
                raise distributed.failure(err, self.step) from err
        bar.close()
        return self.history

    def scale_line(self, loader: DataLoader) -> str:
        """One line saying how the job is spread: processes, backend, global batch and learning rate."""
        per = _batch_size(loader)
        group = self.optimizer.param_groups[0]
        lr = group.get("initial_lr", group["lr"])
        batch = f"global batch {self.world_size} × {per} = {self.world_size * per}" if per else "global batch ?"
        return (f"training on {self.world_size} processes ({dist.get_backend()}, {self.device.type}): {batch}, "
                f"learning rate {lr:g}, {len(loader)} iterations per epoch")

    def _mean_over_processes(self, sums: dict[str, float], count: int) -> dict[str, float]:
        """Each logged value's mean over the epoch's iterations of every process."""
        if self.world_size == 1:
            return {k: v / max(count, 1) for k, v in sums.items()}
        keys = sorted(sums)
        total = torch.tensor([sums[k] for k in keys] + [float(count)], dtype=torch.float64,
                             device=self.device if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(total)
        return {k: float(total[i] / max(float(total[-1]), 1.0)) for i, k in enumerate(keys)}

    def _log_record(self, record: dict[str, float], loader: DataLoader) -> dict[str, Any]:
        if self.world_size == 1:
            return record
        per = _batch_size(loader)
        return {**record, "world_size": self.world_size, "global_batch": per and per * self.world_size}

    def _reseed(self, loader: DataLoader, epoch: int) -> None:
        for sampler in (loader.sampler, getattr(loader, "batch_sampler", None)):
            if hasattr(sampler, "set_epoch"):  # DistributedSampler, PKSampler
                sampler.set_epoch(epoch)
        rank = distributed.rank()
        if loader.generator is not None:
            loader.generator.manual_seed(self.seed * 1_000_003 + epoch + 7919 * rank)
        if self.world_size > 1:  # each process its own augmentation draws, fixed by (seed, epoch, rank)
            runtime.seed_everything(self.seed * 1_000_003 + epoch * 104_729 + rank)

    # -- checkpoints ---------------------------------------------------------------------------------------
    def _sharded(self) -> list[tuple[str, nn.Module, nn.Parameter]]:
        """(name, module, parameter) of every parameter split over the processes (modules with ``sharded``,
        e.g. :class:`facelearn.recognition.partial_fc.PartialFC`)."""
        return [(f"{prefix}.{name}" if prefix else name, module, p)
                for prefix, module in self.model.named_modules() if getattr(module, "sharded", False)
                for name, p in module.named_parameters(recurse=False)]

    def _per_class(self, model: dict, optimizer: dict, convert: str) -> None:
        """Replace, in state dicts, each sharded parameter and its optimiser state by ``module.gather`` (the
        whole tensor, for saving) or ``module.shard`` (this process's rows, for loading)."""
        index = {id(p): i for i, p in enumerate(p for group in self.optimizer.param_groups for p in group["params"])}
        for name, module, p in self._sharded():
            fn = getattr(module, convert)
            model[name] = fn(model[name])
            i = index.get(id(p))
            if i is not None and i in optimizer["state"]:
                optimizer["state"][i] = {k: fn(v) if torch.is_tensor(v) and v.ndim == p.ndim and v.shape[1:] == p.shape[1:]
                                         else v for k, v in optimizer["state"][i].items()}  # moments, not "step"

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: weights, optimiser, scheduler, scaler, counters, generators.

        Sharded parameters are stored whole (a collective: every process must call this)."""
        model, optimizer = self.model.state_dict(), self.optimizer.state_dict()
        optimizer = {**optimizer, "state": dict(optimizer["state"])}  # never write into the live state
        if self._fused:  # the checkpoint holds the optimiser as it was built, resumable on any device
            optimizer["param_groups"] = [{**g, "fused": None} for g in optimizer["param_groups"]]
        self._per_class(model, optimizer, "gather")
        return {
            "model": model,
            "optimizer": optimizer,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "rng": rng_state(),
            **({"facelearn": self.meta} if self.meta else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`, on any number of processes (sharded parameters cut to this one's rows)."""
        model, optimizer = dict(state["model"]), dict(state["optimizer"])
        optimizer["state"] = dict(optimizer["state"])
        if self._fused:  # stay fused (Adam's step counts are then loaded onto the device)
            optimizer["param_groups"] = [{**g, "fused": True} for g in optimizer["param_groups"]]
        self._per_class(model, optimizer, "shard")
        self.model.load_state_dict(model)
        self.optimizer.load_state_dict(optimizer)
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history = list(state.get("history", []))
        set_rng_state(state["rng"])

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`state_dict` atomically to ``path`` (with sharded parameters: call it on every process)."""
        return save_checkpoint(self.state_dict(), path)


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to zero, stepped per iteration."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
