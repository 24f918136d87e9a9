"""Branch on versus off (book chapter "The dense regression branch"): fine-tune the same starting detector
with and without the dense branch on the same images in the same order, then measure both side by side.

The two runs differ only in the recipe (``quick`` versus ``quick-dense``: the fourth head and λ3 = 0.01);
both start from the weights in ``start`` (the dense head, absent there, starts at zero), use the same seed,
data order, augmentation and learning rate.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch


def fine_tune(recipe: str, start: str | os.PathLike, root: str | os.PathLike, *, images: int, epochs: int = 1,
              lr_scale: float = 0.3, seed: int = 0, device=None, progress: bool = False,
              loss_fn=None) -> tuple[torch.nn.Module, list[dict]]:
    """Fine-tune ``recipe``'s model from the weights in ``start`` on the first ``images`` training images of
    ``root`` for ``epochs`` epochs (learning rate ``lr_scale`` × the recipe's, constant) with the Trainer.
    Returns the model (eval mode) and the history."""
    from facelearn import runtime
    from facelearn.data.transforms import DetectionAugment
    from facelearn.detection.dataset import WiderFaceDetection, collate
    from facelearn.detection.retinaface import build
    from facelearn.detection.training import make_loss_fn, train_config
    from facelearn.engine import Trainer, make_loader
    from facelearn.engine.recipe import build_optimizer
    from facelearn.registry import load

    cfg = train_config(recipe)
    model = build(cfg.model)
    missing, unexpected = model.load_state_dict(load(start, task="detection").state_dict(), strict=False)
    if unexpected or any(not k.startswith("heads.dense.") for k in missing):
        raise ValueError(f"{start}: weights do not fit {cfg.model} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    runtime.seed_everything(seed)  # after building: both runs see the same data order and augmentation
    dataset = WiderFaceDetection(root, "train", train=True, augment=DetectionAugment(size=cfg.image_size))
    subset = torch.utils.data.Subset(dataset, range(min(images, len(dataset))))
    loader = make_loader(subset, cfg.batch_size, shuffle=True, seed=seed, collate_fn=collate)
    optimizer = build_optimizer(cfg.with_(lr=cfg.lr * lr_scale), model)
    trainer = Trainer(model, optimizer, loss_fn or make_loss_fn(cfg.loss), device=device, grad_clip=cfg.grad_clip,
                      seed=seed)
    history = trainer.fit(loader, epochs, progress=progress)
    return trainer.model.eval(), history


def side_by_side(models: dict[str, torch.nn.Module], root: str | os.PathLike, scenes, branch=None,
                 progress: bool = False, **test_time: Any) -> dict[str, dict[str, float]]:
    """For each named model: WIDER-protocol AP (easy / medium / hard) on ``root``'s val split (``test_time``: the
    ``scale``, ``flip``, ``vote_iou`` keywords of ``evaluate_model``, a recipe's ``test_time``) and the median
    5-point landmark error (/ inter-ocular distance) on ``scenes``
    (:func:`~facelearn.detection.mesh.evaluation.dense_scenes`); with a dense head, also its median 3-D error."""
    from facelearn.detection.mesh.evaluation import evaluate_heads
    from facelearn.detection.training import evaluate_model

    rows = {}
    for name, model in models.items():
        ap = evaluate_model(model, root, progress=progress, **test_time).ap
        heads = evaluate_heads(model, scenes, branch, examples=0)
        rows[name] = {**{f"AP {k}": float(v) for k, v in ap.items()}, "landmark NME": float(np.median(heads.nme)),
                      "3-D error": float(np.nanmedian(heads.mesh)) if np.isfinite(heads.mesh).any() else float("nan")}
    return rows
