"""Training and evaluating RetinaFace: recipes, the loss function the engine's Trainer calls, and the WIDER
FACE evaluation of a model (book chapter "Training and evaluating RetinaFace").

Recipes are frozen dataclasses (:class:`facelearn.engine.recipe.Recipe`) with named presets in :data:`RECIPES`:

* ``quick`` — MobileNet-0.25 (common anchors) on 2,000 SynthFace ``widerface`` scenes, small input, AdamW,
  40 epochs of 125 steps (5,000 steps, about 45 CPU minutes), tested on SynthFace val with the ``synthface`` protocol of
  :mod:`facelearn.detection.test_time` (a pyramid of 1.5, 2 and 2.5 times the image size, mirror, voting);
* ``quick-no-landmarks`` — ``quick`` with λ2 = 0 (the landmark-head ablation of the chapter);
* ``quick-dense`` — ``quick`` with the dense regression branch on (λ3 = 0.01, chapter "The dense regression
  branch");
* ``full`` — the common implementation's recipe on WIDER FACE: MobileNet-0.25, 640 × 640 crops, batch 32,
  SGD (lr 1e-3, momentum 0.9, weight decay 5e-4), 250 epochs;
* ``full-resnet50`` — the same with ResNet-50 (ImageNet weights), 840 × 840 crops, batch 24, 100 epochs;
* ``paper`` — the paper's setting: ResNet-50 with P2–P6 anchors, 640 × 640, SGD lr 1e-2 (after warm-up),
  80 epochs, OHEM 3 : 1.

Every recipe uses warm-up then cosine decay (the paper uses steps at epochs 55 and 68; the book says so); the
warm-up is counted in optimiser steps: one epoch for ``quick`` (125), five epochs of WIDER FACE's 12,880
training images for the others. Gradients are clipped at norm 10.
"""

from __future__ import annotations

import os
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facelearn.data.files import read_rgb
from facelearn.detection.loss import LossConfig, MultiTaskLoss
from facelearn.detection.test_time import PROTOCOLS
from facelearn.engine.recipe import Recipe, TrainResult, build_optimizer, lookup

#: Training images of WIDER FACE (the ``full`` recipes' data set): the warm-up of five epochs, in steps.
WIDER_TRAIN_IMAGES = 12880


@dataclass(frozen=True)
class TrainConfig(Recipe):
    """One detection recipe: the fields of :class:`~facelearn.engine.recipe.Recipe` (defaults: the common
    implementation's ``full``) and model: a :data:`facelearn.detection.retinaface.PRESETS` name; image_size:
    side of the square training crops; pretrained: ImageNet backbone (ResNets); loss: :class:`LossConfig`;
    synth_*: the SynthFace export used when no data folder is given (train / val images and their size);
    test_scales, test_flip, test_vote_iou: the test-time protocol of
    :func:`~facelearn.detection.postprocess.detect` — the factors validation images are resized by (several =
    an image pyramid), the mirror pass, box voting's IoU (:attr:`test_time`, used by :func:`evaluate_model`).

    On a CPU, ``amp="bf16"`` with ``channels_last=True`` trains MobileNet-0.25 about 1.8 × as fast (one thread,
    batch 8 × 640²; :class:`~facelearn.engine.Trainer`), its losses within about 0.2 % of fp32's; the presets
    keep ``amp=True`` (fp32 on a CPU) and channels-first, which the shipped checkpoints were trained with."""

    task = "detection"
    _: KW_ONLY
    epochs: int = 250
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 5 * (WIDER_TRAIN_IMAGES // 32)
    grad_clip: float | None = 10.0
    model: str = "retinaface-mobilenet0.25"
    image_size: int = 640
    pretrained: bool = False
    loss: LossConfig = field(default_factory=LossConfig)
    synth_train: int = 0
    synth_val: int = 0
    synth_image_size: int = 0
    test_scales: tuple[float, ...] = (1.0,)
    test_flip: bool = False
    test_vote_iou: float | None = None

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def test_time(self) -> dict[str, Any]:
        """The test-time keywords of :func:`~facelearn.detection.postprocess.detect` and :func:`evaluate_model`:
        ``scale``, ``flip``, ``vote_iou``."""
        return {"scale": self.test_scales, "flip": self.test_flip, "vote_iou": self.test_vote_iou}


_QUICK = TrainConfig("quick", image_size=256, epochs=40, batch_size=16, lr=3e-3, weight_decay=1e-4,
                     optimizer="adamw", warmup_steps=2000 // 16, synth_train=2000, synth_val=300, synth_image_size=320,
                     test_scales=PROTOCOLS["synthface"].scales, test_flip=PROTOCOLS["synthface"].flip,
                     test_vote_iou=PROTOCOLS["synthface"].vote_iou)

#: SynthFace scenes the chapters export: the first ``PAGE_SCENES`` training and ``PAGE_VAL_SCENES`` validation
#: scenes of ``quick``'s export (the same scenes: each one depends only on the seed, its split and its index), so
#: a page's export, short run and evaluations fit its time budget.
PAGE_SCENES = 400
PAGE_VAL_SCENES = 100

RECIPES = {
    "quick": _QUICK,
    "quick-no-landmarks": _QUICK.with_(name="quick-no-landmarks", loss=LossConfig(landmark_weight=0.0)),
    "quick-dense": _QUICK.with_(name="quick-dense", model="retinaface-mobilenet0.25-dense",
                                loss=LossConfig(dense_weight=0.01)),
    "full": TrainConfig("full", loss=LossConfig(neg_pos_ratio=7.0)),
    "full-resnet50": TrainConfig("full-resnet50", model="retinaface-resnet50", image_size=840, epochs=100,
                                 batch_size=24, warmup_steps=5 * (WIDER_TRAIN_IMAGES // 24), pretrained=True,
                                 loss=LossConfig(neg_pos_ratio=7.0)),
    "paper": TrainConfig("paper", model="retinaface-resnet50-paper", image_size=640, epochs=80, batch_size=32, lr=1e-2,
                         pretrained=True),
}


def train_config(name: str, **changes: Any) -> TrainConfig:
    """The recipe called ``name`` (keys of :data:`RECIPES`) with ``changes`` applied."""
    return lookup(RECIPES, name, **changes)


def make_loss_fn(config: LossConfig = LossConfig()):
    """``loss_fn(model, batch) -> (loss, logs)`` for the engine's Trainer, on batches of
    :class:`facelearn.detection.dataset.WiderFaceDetection` + its ``collate``: RGB images in [0, 1], which
    ``model.preprocess`` turns into the network's input, and targets in pixels; anchors are cached per input
    size."""
    criterion = MultiTaskLoss(config)
    cache: dict[tuple, torch.Tensor] = {}

    def loss_fn(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        images, targets = batch
        key = (tuple(images.shape[-2:]), images.device)
        if key not in cache:
            cache[key] = model.anchors(key[0], device=images.device)
        outputs = model(model.preprocess(images))
        return criterion(outputs, cache[key], [t["boxes"] for t in targets], [t["landmarks"] for t in targets],
                         [t["landmark_mask"] for t in targets], images=images)

    return loss_fn


@torch.no_grad()
def predict_folder(model: torch.nn.Module, images: list[Path], names: list[str], *, score_threshold: float = 0.02,
                   scale: float | tuple[float, ...] | None = None, flip: bool = False, vote_iou: float | None = None,
                   max_size: int | None = None, progress: bool = True) -> dict[tuple[str, str], np.ndarray]:
    """Run :func:`~facelearn.detection.postprocess.detect` on every image (resized by ``scale`` — one factor, a
    pyramid, or None for the pyramid chosen from each image's size — and mirrored if ``flip``, box voting at
    ``vote_iou``, long side capped at ``max_size``). names: ``<event>/<file>.jpg``.
    Returns {(event, stem): (N, 5) x y w h score}, the form :func:`facelearn.detection.evaluation.evaluate`
    reads."""
    from tqdm.auto import tqdm

    from facelearn.detection.postprocess import detect

    out = {}
    for path, name in tqdm(list(zip(images, names)), desc="detect", disable=not progress, leave=False):
        det = detect(model, read_rgb(path), score_threshold=score_threshold, scale=scale, flip=flip,
                     vote_iou=vote_iou, max_size=max_size)
        b = det.boxes.numpy().astype(np.float64)
        xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)
        out[Path(name).parent.name, Path(name).stem] = np.concatenate([xywh, det.scores.numpy()[:, None]], axis=1)
    return out


def evaluate_model(model: torch.nn.Module, root: str | os.PathLike, *, score_threshold: float = 0.02,
                   scale: float | tuple[float, ...] | None = None, flip: bool = False, vote_iou: float | None = None,
                   max_size: int | None = None, progress: bool = True):
    """WIDER FACE AP (easy / medium / hard) of ``model`` on the val split under ``root`` (the real data set
    or a SynthFace export): ``root/WIDER_val/images`` and ``root/wider_face_split``; the test-time protocol
    ``scale``, ``flip``, ``vote_iou`` of :func:`~facelearn.detection.postprocess.detect` (a recipe's
    :attr:`TrainConfig.test_time`). Returns
    :class:`facelearn.detection.evaluation.WiderFaceResult`."""
    from facelearn.data.widerface import read_val_ground_truth
    from facelearn.detection.evaluation import evaluate

    root = Path(root)
    gt = read_val_ground_truth(root / "wider_face_split")
    names = [f"{e}/{f}.jpg" for e in gt.events for f in gt.files[e]]
    paths = [root / "WIDER_val" / "images" / n for n in names]
    preds = predict_folder(model, paths, names, score_threshold=score_threshold, scale=scale, flip=flip,
                           vote_iou=vote_iou, max_size=max_size, progress=progress)
    return evaluate(preds, gt)


def export_weights(model: torch.nn.Module, path: str | os.PathLike, *, preset: str, recipe: str,
                   metrics: dict[str, Any] | None = None) -> Path:
    """Write a small inference checkpoint: the weights with their description (model preset, config,
    preprocessing: :func:`facelearn.registry.save`), the recipe that trained it and ``metrics`` (e.g. the AP
    it reached). Read back with :func:`load_detector` or :func:`facelearn.load`."""
    from facelearn.registry import save

    return save(model, path, preset, recipe=recipe, metrics=metrics or {})


def load_detector(path: str | os.PathLike, device: torch.device | str | None = None) -> torch.nn.Module:
    """The RetinaFace a checkpoint holds — exported (:func:`export_weights`) or a Trainer's — rebuilt from
    its own description (:func:`facelearn.load`); another task's checkpoint is refused. Eval mode."""
    from facelearn.registry import load

    return load(path, task="detection").to(device or "cpu")


def synthface_root(cfg: TrainConfig, seed: int = 0, progress: bool = True) -> Path:
    """The SynthFace ``widerface`` export a recipe trains on, written under ``runtime.data_dir()`` the first
    time it is asked for (a ``meta.json`` marks a finished export)."""
    from facelearn import runtime
    from facelearn.data.synthface import export_widerface

    if not cfg.synth_train:
        raise ValueError(f"recipe {cfg.name!r} trains on WIDER FACE: pass its folder as data root")
    root = runtime.data_dir() / f"synthface_widerface_{cfg.synth_train}_{cfg.synth_val}_{cfg.synth_image_size}_s{seed}"
    if not (root / "meta.json").is_file():
        export_widerface(root, n_train=cfg.synth_train, n_val=cfg.synth_val, image_size=cfg.synth_image_size,
                         seed=seed, progress=progress)
    return root


def train(cfg: TrainConfig, root: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None,
          device: torch.device | str | None = None, seed: int | None = None, progress: bool = True,
          model: torch.nn.Module | None = None, callbacks: tuple = ()) -> TrainResult:
    """Train a RetinaFace with the recipe ``cfg`` on ``root/train/label.txt`` + ``root/WIDER_train/images``
    with the engine's Trainer (AMP on GPU when ``cfg.amp``; writes ``checkpoint`` after every epoch and resumes
    from it when it exists; ``seed``: default ``cfg.seed``). ``model``: start from these weights instead of a
    fresh ``cfg.model``. Returns a :class:`~facelearn.engine.recipe.TrainResult` (``model`` in eval mode)."""
    from facelearn import runtime
    from facelearn.data.transforms import DetectionAugment
    from facelearn.detection.dataset import WiderFaceDetection, collate
    from facelearn.detection.retinaface import build
    from facelearn.engine import Trainer, cosine_schedule, make_loader
    from facelearn.registry import metadata

    seed = cfg.seed if seed is None else seed
    runtime.seed_everything(seed)
    root = Path(root)
    dataset = WiderFaceDetection(root, "train", train=True, augment=DetectionAugment(size=cfg.image_size))
    loader = make_loader(dataset, cfg.batch_size, shuffle=True, seed=seed, drop_last=len(dataset) > cfg.batch_size,
                         collate_fn=collate)
    model = model if model is not None else build(cfg.model, pretrained=cfg.pretrained)
    optimizer = build_optimizer(cfg, model)
    scheduler = cosine_schedule(optimizer, cfg.epochs * len(loader), cfg.warmup_steps)
    trainer = Trainer(model, optimizer, make_loss_fn(cfg.loss), device=device, scheduler=scheduler,
                      checkpoint=checkpoint, seed=seed, callbacks=callbacks, meta=metadata(model, cfg.model),
                      **cfg.trainer_options())
    history = trainer.fit(loader, cfg.epochs, progress=progress)
    return TrainResult(trainer.model.eval(), history, trainer, trainer.checkpoint)


#: The checkpoints shipped with the book (``make checkpoints`` regenerates them): file name → recipe.
SHIPPED = {"retinaface_mnet025_quick.pt": "quick",
           "retinaface_mnet025_quick_no_landmarks.pt": "quick-no-landmarks"}


def find_checkpoint(name: str) -> Path:
    """A shipped checkpoint (keys of :data:`SHIPPED`): looked for in the package's ``checkpoints/`` folder
    (installed with facelearn), then in ``runtime.cache_dir()``. A ``FileNotFoundError`` gives the command
    that makes it."""
    from facelearn import runtime

    if name not in SHIPPED:
        raise ValueError(f"unknown checkpoint {name!r}; known: {', '.join(SHIPPED)}")
    for folder in (Path(__file__).resolve().parent / "checkpoints", runtime.cache_dir()):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{name} not found; make it with `facelearn train retinaface --preset {SHIPPED[name]} "
                            f"--export {runtime.cache_dir() / name}`")
