"""The recipe protocol the three tasks share (book: "How to run it").

A recipe is a frozen dataclass holding everything a training run needs besides its data: the fields of
:class:`Recipe` (epochs, batch size, optimiser, learning rate, weight decay, warm-up in optimiser steps,
gradient clipping, mixed precision, seed) and the fields its task adds (detection
:class:`~facelearn.detection.training.TrainConfig`, recognition
:class:`~facelearn.recognition.training.RecognitionRecipe`, landmarks
:class:`~facelearn.landmarks.recipe.PFLDRecipe`: the model preset, the loss, the data sizes, the test-time
settings). Each task keeps its named presets in one ``RECIPES`` dict read through :func:`lookup`;
:mod:`facelearn.recipes` lists them all. Every task builds its optimiser with :func:`build_optimizer` and its
``train(recipe, data, …)`` returns a :class:`TrainResult`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping, TypeVar

import torch
from torch import nn

R = TypeVar("R", bound="Recipe")

OPTIMIZERS = ("sgd", "adam", "adamw")


@dataclass(frozen=True)
class Recipe:
    """The fields every task's recipe has. Only ``name`` is positional.

    optimizer: ``sgd`` (momentum 0.9), ``adam`` or ``adamw``; weight_decay: applied to the weight matrices and
    kernels, and also to norm layers and biases when ``decay_norms_and_biases`` (what insightface's SGD and
    PFLD's Adam do; detection keeps them free of decay, as nanoGPT's ``configure_optimizers``);
    warmup_steps: optimiser steps of linear warm-up before the cosine decay
    (:func:`facelearn.engine.cosine_schedule`); grad_clip: gradient-norm clipping (None: none); amp: the
    :class:`~facelearn.engine.Trainer`'s mixed precision (``True``: on a GPU; ``"bf16"``: bfloat16 autocast on
    the CPU as well); seed: the run's seed when ``train`` is given none; channels_last, compile: the
    :class:`~facelearn.engine.Trainer`'s switches (image batches and convolution weights stored channels-last;
    the forward compiled with ``torch.compile``). These four change the speed and, in the last digits (bf16: in
    the third or fourth), what is computed; the presets keep ``amp=True`` and the other two off, so that a CPU
    run repeats the shipped checkpoints bit for bit.
    """

    name: str
    _: KW_ONLY
    epochs: int = 1
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 1e-3
    weight_decay: float = 0.0
    decay_norms_and_biases: bool = False
    warmup_steps: int = 0
    grad_clip: float | None = None
    amp: bool | str = True
    seed: int = 0
    channels_last: bool = False
    compile: bool = False

    #: the task of the recipe's model (``detection``, ``recognition``, ``landmarks``)
    task: ClassVar[str] = ""

    def with_(self: R, **changes: Any) -> R:
        """A copy with some fields changed (e.g. ``epochs=2``)."""
        return dataclasses.replace(self, **changes)

    def with_warmup_epochs(self: R, epochs: float, n_samples: int) -> R:
        """A copy whose warm-up lasts ``epochs`` epochs of a training set of ``n_samples`` items, in batches of
        ``batch_size`` with the last partial one dropped: ``int(epochs * (n_samples // batch_size))`` steps
        (a chapter that trains a preset on a smaller set than the preset's keeps its warm-up one epoch long)."""
        return self.with_(warmup_steps=int(epochs * (n_samples // self.batch_size)))

    @property
    def model_name(self) -> str:
        """The :mod:`facelearn.registry` name of the model the recipe trains."""
        raise NotImplementedError(f"{type(self).__name__} does not name its model")

    def trainer_options(self) -> dict[str, Any]:
        """The :class:`facelearn.engine.Trainer` keywords the recipe sets."""
        return {"amp": self.amp, "grad_clip": self.grad_clip, "channels_last": self.channels_last,
                "compile": self.compile}


def lookup(presets: Mapping[str, R], name: str, **changes: Any) -> R:
    """The preset called ``name`` of a task's ``RECIPES`` with ``changes`` applied; an unknown name is a
    ``ValueError`` listing the known ones."""
    if name not in presets:
        task = next(iter(presets.values())).task if presets else "training"
        raise ValueError(f"unknown {task} recipe {name!r}; known: {', '.join(presets)}")
    return presets[name].with_(**changes)


def parameter_groups(model: nn.Module, weight_decay: float, decay_all: bool = False) -> list[dict[str, Any]]:
    """The optimiser's parameter groups (trainable parameters only): weight decay on tensors of two or more
    dimensions (linear weights, convolution kernels, class centres), none on one-dimensional ones (norm
    layers' scales and shifts, biases, PReLU slopes) unless ``decay_all``, which makes one group."""
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_all:
        return [{"params": params, "weight_decay": weight_decay}]
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]


def build_optimizer(recipe: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    """The optimiser of ``recipe`` over ``model``'s trainable parameters (:func:`parameter_groups`)."""
    groups = parameter_groups(model, recipe.weight_decay, recipe.decay_norms_and_biases)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=0.9)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(groups, lr=recipe.lr)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}: expected {', '.join(OPTIMIZERS)}")


@dataclass
class TrainResult:
    """What every task's ``train`` returns.

    model: the trained network in eval mode (RetinaFace, the recognition backbone, PFLD); history: one dict
    per epoch (``loss`` and the loss's parts); trainer: the :class:`facelearn.engine.Trainer` (its
    ``model`` holds every trained module); checkpoint: the Trainer checkpoint written, if any; head: the
    module trained beside the network and not needed to use it (the recognition margin head, PFLD's
    auxiliary net; None when there is none); statistics: what the task computed from its training set
    (PFLD's :class:`~facelearn.landmarks.recipe.TrainingStatistics`; None elsewhere).
    """

    model: nn.Module
    history: list[dict[str, float]]
    trainer: Any
    checkpoint: Path | None = None
    head: nn.Module | None = None
    statistics: Any = field(default=None, repr=False)
