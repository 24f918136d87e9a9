"""PFLD training recipes, training, prediction and evaluation (book: chapter "PFLD", training section).

``quick`` trains PFLD 0.25X on the SynthFace ``wflw`` export on a CPU; ``full`` is the WFLW recipe for PFLD
1X on a GPU (Adam, batch 256, weight decay 1e-6 on every parameter as in the reference implementation,
cosine schedule). Both are :data:`RECIPES` entries (:class:`facelearn.engine.recipe.Recipe`), clip gradients
at norm 10, apply the loss's attribute factor by drawing faces in proportion to it
(:mod:`facelearn.landmarks.loss`) and call the same :func:`train`, which uses
:class:`facelearn.engine.Trainer` and returns a :class:`~facelearn.engine.recipe.TrainResult`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facelearn.data.wflw import LandmarkRecord, read_wflw, wflw_files
from facelearn.engine import Trainer, cosine_schedule, make_loader
from facelearn.engine.recipe import Recipe, TrainResult, build_optimizer, lookup
from facelearn.landmarks import metrics
from facelearn.landmarks.crops import CropConfig, LandmarkCrops, flip_landmarks, to_image_coordinates
from facelearn.landmarks.loss import (LossConfig, PFLDObjective, PoseThresholds, attribute_weight, categories,
                                      category_weights)
from facelearn.landmarks.pfld import PFLD, PFLDConfig, pfld_pair
from facelearn.models import multiply_adds  # noqa: F401  (re-exported: the cost section of chapter "PFLD")
from facelearn.registry import metadata


@dataclass(frozen=True)
class PFLDRecipe(Recipe):
    """Everything a PFLD training run needs besides the data folder: the fields of
    :class:`~facelearn.engine.recipe.Recipe` (Adam, every parameter decayed, gradients clipped at norm 10) and
    the model's shape, the loss, the crops, the SynthFace sizes, the test-time mirror."""

    task = "landmarks"
    _: KW_ONLY
    optimizer: str = "adam"
    decay_norms_and_biases: bool = True
    grad_clip: float | None = 10.0
    model: PFLDConfig = PFLDConfig()
    loss: LossConfig = LossConfig()
    crops: CropConfig = CropConfig()
    synth_train: int = 0   # SynthFace faces to export when the data folder is empty (quick only)
    synth_test: int = 0
    workers: int = 0       # data-loader processes making crops (a GPU needs a few to keep up)
    test_flip: bool = False  # evaluate on each crop and its mirror, averaging the two predictions
    note: str = ""

    @property
    def model_name(self) -> str:
        return preset_name(self.model)


#: both recipes: the attribute factor by sampling faces, head up/down measured from the median pitch
_SAMPLED = LossConfig(attributes="sampling", level_pitch="median")

RECIPES = {
    "quick": PFLDRecipe("quick", model=PFLDConfig(0.25), epochs=40, batch_size=32, lr=3e-3, weight_decay=1e-6,
                        warmup_steps=50, loss=_SAMPLED, synth_train=12000, synth_test=300, test_flip=True,
                        note="PFLD 0.25X on the SynthFace wflw export, CPU"),
    "full": PFLDRecipe("full", model=PFLDConfig(1.0), epochs=150, batch_size=256, lr=1e-3, weight_decay=1e-6,
                       warmup_steps=500, loss=_SAMPLED, workers=4,
                       note="PFLD 1X on WFLW (7,500 training faces), one GPU"),
}


def recipe(name: str, **changes) -> PFLDRecipe:
    """The recipe called ``name`` (keys of :data:`RECIPES`: ``quick`` or ``full``) with ``changes`` applied."""
    return lookup(RECIPES, name, **changes)


def load_split(root: str | os.PathLike, split: str) -> tuple[list[LandmarkRecord], Path]:
    """(records, images folder) of the ``train`` or ``test`` split of a WFLW-layout folder."""
    files = wflw_files(root)
    return read_wflw(files[split]), files["images"]


@dataclass
class TrainingStatistics:
    """What the weighted loss needs from the training set (computed once, from the un-augmented crops).

    thresholds: the pose thresholds, with ``level`` set to the median pitch when the loss asks for it;
    omega: (C,) ω^c; weights: (M,) a_m = Σ_c ω^c 1[m ∈ c]; mean_shape: (2P,) mean crop landmarks.
    """

    thresholds: PoseThresholds
    omega: torch.Tensor
    weights: torch.Tensor
    mean_shape: torch.Tensor


def attribute_statistics(angles: torch.Tensor, attributes: torch.Tensor,
                         loss: LossConfig = LossConfig()) -> tuple[PoseThresholds, torch.Tensor, torch.Tensor]:
    """(thresholds, ω^c (C,), a_m (M,)) of a training set from its (M, 3) angles in radians and (M, 6)
    attributes: the level pitch is the median pitch when ``loss.level_pitch == "median"``."""
    thresholds = PoseThresholds()
    if loss.level_pitch == "median":
        thresholds = dataclasses.replace(thresholds, level=float(torch.rad2deg(angles[:, 1].median())))
    members = categories(angles, attributes, thresholds)
    omega = category_weights(members)
    return thresholds, omega, attribute_weight(members, omega)


def training_statistics(dataset: LandmarkCrops, loss: LossConfig = LossConfig()) -> TrainingStatistics:
    """:func:`attribute_statistics` of each face's un-augmented crop angles and attributes, and the mean crop
    landmarks (the regressor's starting point)."""
    plain = LandmarkCrops(dataset.records, dataset.images_dir, augment=False, config=dataset.config,
                          cache_images=False)
    rows = [plain[i] for i in range(len(plain))]
    thresholds, omega, weights = attribute_statistics(torch.stack([r["angles"] for r in rows]),
                                                      torch.stack([r["attributes"] for r in rows]), loss)
    mean_shape = torch.stack([r["landmarks"] for r in rows]).mean(0)
    return TrainingStatistics(thresholds, omega, weights, mean_shape)


def train(rec: PFLDRecipe, data_root: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None,
          device: torch.device | str | None = None, seed: int | None = None, progress: bool = True,
          callbacks: tuple = ()) -> TrainResult:
    """Train PFLD and its auxiliary net with ``rec`` on the ``train`` split under ``data_root``.

    Returns a :class:`~facelearn.engine.recipe.TrainResult`: ``model`` PFLD, ``head`` the auxiliary net,
    ``statistics`` the :class:`TrainingStatistics` (ω, a_m, thresholds, mean shape). Writes ``checkpoint``
    after every epoch and resumes from it when it exists; ``seed``: default ``rec.seed``.
    """
    seed = rec.seed if seed is None else seed
    torch.manual_seed(seed)
    records, images = load_split(data_root, "train")
    data = LandmarkCrops(records, images, augment=True, config=rec.crops)
    stats = training_statistics(data, rec.loss)
    model = pfld_pair(rec.model)
    if not (checkpoint is not None and Path(checkpoint).exists()):
        with torch.no_grad():  # start from the mean shape: the fully connected layer only learns offsets
            model["pfld"].fc.bias.copy_(stats.mean_shape)
            model["pfld"].fc.weight.mul_(0.1)
    opt = build_optimizer(rec, model)
    sampled = rec.loss.weighted and rec.loss.attributes == "sampling"
    loader = make_loader(data, min(rec.batch_size, len(data)), shuffle=True, seed=seed, drop_last=True,
                         num_workers=rec.workers, weights=stats.weights if sampled else None)
    sched = cosine_schedule(opt, rec.epochs * len(loader), rec.warmup_steps)
    objective = PFLDObjective(stats.omega, rec.loss, stats.thresholds, float(stats.weights.mean()))
    trainer = Trainer(model, opt, objective, device=device, scheduler=sched, checkpoint=checkpoint, seed=seed,
                      callbacks=callbacks, meta=metadata(model["pfld"], rec.model_name, prefix="pfld."),
                      **rec.trainer_options())
    history = trainer.fit(loader, rec.epochs, progress=progress)
    return TrainResult(trainer.model["pfld"].eval(), history, trainer, trainer.checkpoint,
                       head=trainer.model["aux"].eval(), statistics=stats)


def preset_name(config: PFLDConfig) -> str:
    """The registry name of a PFLD of this shape (``pfld-1x``, ``pfld-0.25x``): what its checkpoints record."""
    return "pfld-0.25x" if config.width == 0.25 else "pfld-1x"


def export(model: nn.ModuleDict | PFLD, path: str | os.PathLike, **info) -> Path:
    """Save the landmark network alone (no auxiliary net, no optimiser) with its description (model name,
    config, preprocessing: :func:`facelearn.registry.save`): a small checkpoint."""
    from facelearn.registry import save

    pfld = model["pfld"] if isinstance(model, nn.ModuleDict) else model
    return save(pfld, path, preset_name(pfld.config), **info)


def load(path: str | os.PathLike, device: torch.device | str = "cpu") -> PFLD:
    """The PFLD model of :func:`export`'s checkpoint or of a trainer checkpoint, rebuilt from the checkpoint's
    own description (:func:`facelearn.load`); another task's checkpoint is refused."""
    from facelearn.registry import load as load_model

    return load_model(path, task="landmarks").to(device)


@torch.no_grad()
def predict(model: PFLD, dataset: LandmarkCrops, batch_size: int = 64, flip: bool = False) -> np.ndarray:
    """Landmarks in image pixels for every face of ``dataset`` (un-augmented) → (N, P, 2).

    flip: also predict on the mirrored crop, map those points back (x → size − 1 − x and the mirror
    permutation, as in training's mirror augmentation) and average the two predictions.
    """
    model.eval()
    dev = next(model.parameters()).device
    size = dataset.config.size
    out = []
    for batch in make_loader(dataset, batch_size, shuffle=False):
        images = model.preprocess(batch["image"].to(dev))
        pred, _ = model(images)
        pred = pred.cpu()
        if flip:
            mirrored, _ = model(images.flip(-1))
            points = mirrored.cpu().double().numpy().reshape(len(pred), -1, 2) * size
            back = np.stack([flip_landmarks(p, size) for p in points]) / size
            pred = (pred + torch.from_numpy(back).to(pred.dtype).reshape(len(pred), -1)) / 2
        out.append(to_image_coordinates(pred, batch["matrix"], size))
    return np.concatenate(out)


def evaluate(model: PFLD, records: list[LandmarkRecord], images_dir: str | os.PathLike,
             config: CropConfig = CropConfig(), flip: bool = False) -> tuple[np.ndarray, dict]:
    """Per-face NME (N,) and :func:`facelearn.landmarks.metrics.summary` of ``model`` on ``records``
    (``flip``: average with the mirrored crop's prediction, see :func:`predict`)."""
    data = LandmarkCrops(records, images_dir, augment=False, config=config)
    pred = predict(model, data, flip=flip)
    target = np.stack([r.landmarks for r in records])
    errors = metrics.nme(pred, target)
    return errors, metrics.summary(errors, np.stack([r.attributes for r in records]))


def shipped_checkpoint(name: str) -> Path:
    """A checkpoint shipped with facelearn, made by ``make checkpoints``: ``pfld-quick`` (the recipe's weighted
    loss), ``pfld-quick-plain`` (plain L2) or ``pfld-quick-as-written`` (eq. 2 with ω in the loss, level 0°)."""
    path = Path(__file__).parent / "checkpoints" / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not shipped; regenerate it with 'make checkpoints'")
    return path


def estimate_angles(records: list[LandmarkRecord], images_dir: str | os.PathLike) -> np.ndarray:
    """Yaw, pitch, roll (radians) of each face from its annotated landmarks with
    :func:`facelearn.landmarks.euler.euler_from_landmarks`, in the camera of its full image → (N, 3)."""
    from facelearn.data.files import read_bgr
    from facelearn.landmarks.euler import euler_from_landmarks

    out = []
    for r in records:
        path = Path(images_dir) / r.image
        img = read_bgr(path)
        out.append(euler_from_landmarks(r.landmarks, img.shape[1], img.shape[0]))
    return np.stack(out)


def true_angles(root: str | os.PathLike, records: list[LandmarkRecord]) -> np.ndarray:
    """The true yaw, pitch, roll (degrees) of SynthFace faces from the export's ``meta.json`` → (N, 3)."""
    import json

    from facelearn.errors import DataError

    path = Path(root) / "meta.json"
    if not path.is_file():
        raise DataError.at(path, None, "no meta.json: true angles exist only for SynthFace exports")
    meta = json.loads(path.read_text())["images"]
    try:
        return np.array([[meta[r.image][k] for k in ("yaw", "pitch", "roll")] for r in records], dtype=np.float64)
    except KeyError as err:
        raise DataError.at(path, None, f"no pose recorded for image {err.args[0]!r}") from None
