"""Training a recognition model with any loss of the book (book chapters "Metric learning" to "Beyond ArcFace").

A :class:`RecognitionRecipe` is the whole recipe as data (backbone, loss, s, m, schedule), a
:class:`facelearn.engine.recipe.Recipe`; its presets are :data:`RECIPES`: ``quick`` is the CPU chapters'
SmallCNN on 64-px SynthFace identities, ``full`` insightface's ms1mv2_r50 recipe (iResNet-50, ArcFace s = 64,
m = 0.5, SGD lr 0.1, 20 epochs). Both decay every parameter (norm layers and biases included), as
insightface's optimiser does, and clip gradients at norm 5. :func:`train` runs a recipe with
:class:`facelearn.engine.Trainer` and returns a :class:`~facelearn.engine.recipe.TrainResult` (the backbone, and
the head as ``head``); :func:`save_model`/:func:`load_model` write and read the small checkpoint that
``facelearn eval verification`` and the chapters use (backbone weights + recipe, no class weights).
"""

from __future__ import annotations

import os
from dataclasses import KW_ONLY, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

from facelearn.engine import Trainer, cosine_schedule, distributed, load_checkpoint, make_loader
from facelearn.engine.recipe import Recipe, TrainResult, build_optimizer, lookup
from facelearn.models import preset
from facelearn.recognition import beyond, margins, metric
from facelearn.recognition.normalisation import NormFaceHead, SoftmaxHead
from facelearn.recognition.partial_fc import PartialFC
from facelearn.registry import metadata

#: MS1MV2 (``faces_emore``), the `full` recipe's training set: identities and images.
MS1MV2_SIZE = (85742, 5822653)

#: Images of the chapters' SynthFace identity set (1,000 identities × 20, :class:`SynthFaceIdentities`): the
#: ``quick`` recipe's warm-up is one epoch of it.
SYNTHFACE_TRAIN_IMAGES = 1000 * 20

LOSSES = ("softmax", "center", "triplet", "lsoftmax", "sphereface", "normface", "cosface", "arcface", "combined",
          "subcenter", "curricularface", "adaface")


@dataclass(frozen=True)
class RecognitionRecipe(Recipe):
    """One training recipe: the fields of :class:`~facelearn.engine.recipe.Recipe` (defaults: ``quick``) and
    ``backbone``, a :mod:`facelearn.models` preset; ``s``/``m`` apply to the normalised heads (ArcFace's m2,
    CosFace's m3; ``m`` is the integer margin of L-Softmax/SphereFace)."""

    task = "recognition"
    name: str = "quick"
    _: KW_ONLY
    epochs: int = 12
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 3e-3
    weight_decay: float = 5e-4
    decay_norms_and_biases: bool = True
    warmup_steps: int = SYNTHFACE_TRAIN_IMAGES // 64
    grad_clip: float | None = 5.0
    backbone: str = "synthface-cnn"
    input_size: int = 64
    loss: str = "arcface"
    s: float = 32.0
    m: float = 0.5
    triplet_margin: float = 0.2
    images_per_identity: int = 4  # K of the P×K batches used by the triplet loss
    flip: bool = True  # random horizontal flips of half of each batch
    center_lambda: float = 0.003  # λ of the center loss (Wen et al.: 0.003 on CASIA-WebFace)
    schedule: tuple[float, float, float, float] | None = None  # L-Softmax/SphereFace λ (base, γ, power, λ_min)
    sample_rate: float | None = None  # Partial FC's share of sampled centres (arcface, cosface, combined); None: plain head

    @property
    def model_name(self) -> str:
        return self.backbone

    @classmethod
    def quick(cls, **changes: Any) -> "RecognitionRecipe":
        """The CPU chapters' recipe (SmallCNN, 64 px, AdamW): ``recipe("quick", **changes)``."""
        return recipe("quick", **changes)

    @classmethod
    def full(cls, **changes: Any) -> "RecognitionRecipe":
        """insightface's ms1mv2_r50 (iResNet-50, 112 px, ArcFace s = 64, m = 0.5, SGD 0.1, batch 128 × 8 GPUs):
        ``recipe("full", **changes)``."""
        return recipe("full", **changes)


#: The named recipes: ``quick`` (the CPU chapters') and ``full`` (insightface's ms1mv2_r50, no warm-up).
RECIPES = {
    "quick": RecognitionRecipe("quick"),
    "full": RecognitionRecipe("full", backbone="iresnet50", input_size=112, s=64.0, epochs=20, batch_size=128,
                              optimizer="sgd", lr=0.1, warmup_steps=0),
}


def recipe(name: str, **changes: Any) -> RecognitionRecipe:
    """The recipe called ``name`` (keys of :data:`RECIPES`) with ``changes`` applied."""
    return lookup(RECIPES, name, **changes)


def default_margin(loss: str) -> float:
    """Each paper's margin: CosFace 0.35, ArcFace 0.5, L-Softmax/SphereFace 4, AdaFace 0.4."""
    return {"cosface": 0.35, "lsoftmax": 4, "sphereface": 4, "adaface": 0.4}.get(loss, 0.5)


def make_head(loss: str, in_features: int, n_classes: int, s: float = 64.0, m: float | None = None,
              center_lambda: float = 0.003, schedule: tuple[float, float, float, float] | None = None) -> nn.Module:
    """The margin head of ``loss`` (one of :data:`LOSSES` except ``triplet``): (N, D), (N,) → loss.

    ``schedule``: (base, γ, power, λ_min) of the L-Softmax/SphereFace annealing (default: each paper's).
    """
    m = default_margin(loss) if m is None else m
    sched = margins.LambdaSchedule(*schedule) if schedule is not None else None
    heads = {
        "softmax": lambda: SoftmaxHead(in_features, n_classes),
        "center": lambda: metric.CenterLossHead(in_features, n_classes, center_lambda),
        "lsoftmax": lambda: margins.LSoftmaxHead(in_features, n_classes, int(m),
                                                 sched or margins.LambdaSchedule.lsoftmax_mnist()),
        "sphereface": lambda: margins.SphereFaceHead(in_features, n_classes, int(m),
                                                     sched or margins.LambdaSchedule.sphereface()),
        "normface": lambda: NormFaceHead(in_features, n_classes, s),
        "cosface": lambda: margins.CosFaceHead(in_features, n_classes, s, m),
        "arcface": lambda: margins.ArcFaceHead(in_features, n_classes, s, m),
        "combined": lambda: margins.CombinedMarginHead(in_features, n_classes, s, 1.0, 0.3, 0.2),
        "subcenter": lambda: beyond.SubCenterArcFaceHead(in_features, n_classes, 3, s, m),
        "curricularface": lambda: beyond.CurricularFaceHead(in_features, n_classes, s, m),
        "adaface": lambda: beyond.AdaFaceHead(in_features, n_classes, s, m),
    }
    if loss not in heads:
        raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
    return heads[loss]()


class PKSampler(Sampler[list[int]]):
    """Batches of P identities × K images each (FaceNet sec. 3.2, Hermans et al. 2017), so every batch holds
    positives for the triplet loss. labels: (N,) ints; yields lists of indices, one list per batch.

    Under ``torchrun`` each iteration draws W × P identities and process r takes the r-th P of them, so the
    W processes together see one batch of W·P identities (an epoch has N / (W·P·K) iterations).
    """

    def __init__(self, labels: torch.Tensor, p: int, k: int, seed: int = 0) -> None:
        self.labels, self.p, self.k, self.seed, self.epoch = torch.as_tensor(labels), p, k, seed, 0
        self.groups = [torch.nonzero(self.labels == c).squeeze(1) for c in torch.unique(self.labels)]
        self.groups = [g for g in self.groups if len(g) >= 2]
        self.rank, self.world = distributed.rank(), distributed.world_size()

    @property
    def batch_size(self) -> int:
        """Images per batch on this process: P × K."""
        return self.p * self.k

    def set_epoch(self, epoch: int) -> None:
        """Draw the batches of ``epoch`` next (the trainer calls this, so resuming repeats the same batches)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, len(self.labels) // (self.p * self.k * self.world))

    def __iter__(self):  # noqa: ANN204
        g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
        self.epoch += 1
        for _ in range(len(self)):
            ids = torch.randperm(len(self.groups), generator=g)[: self.p * self.world]
            batch = []
            for j, i in enumerate(ids.tolist()):  # every process draws every image: the generators stay equal
                grp = self.groups[i]
                images = grp[torch.randperm(len(grp), generator=g)[: self.k]].tolist()
                batch += images if j // self.p == self.rank else []
            yield batch


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror a random half of the images of a batch (N, C, H, W) horizontally (torch's global generator)."""
    mask = torch.rand(len(x), device=x.device) < 0.5
    return torch.where(mask[:, None, None, None], torch.flip(x, dims=[3]), x)


def _labels_of(dataset: Dataset) -> torch.Tensor:
    if hasattr(dataset, "tensors"):
        return dataset.tensors[1]
    if hasattr(dataset, "samples"):
        return torch.tensor([lab for _, lab in dataset.samples])
    return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))])


def train(recipe: RecognitionRecipe, dataset: Dataset, n_classes: int | None = None, *,
          checkpoint: str | os.PathLike | None = None, device: torch.device | str | None = None,
          seed: int | None = None, progress: bool = True, callbacks: tuple = ()) -> TrainResult:
    """Train ``recipe.backbone`` with ``recipe.loss`` on ``dataset`` (items (image, label); ``n_classes``:
    default the largest label + 1).

    Returns a :class:`~facelearn.engine.recipe.TrainResult`: ``model`` the backbone, ``head`` the margin head
    (``None`` for triplet). The head and backbone train together in one ``nn.ModuleDict`` through
    :class:`facelearn.engine.Trainer` (AMP, a ``checkpoint`` written every epoch and resumed from, exact
    resume; ``seed``: default ``recipe.seed``).
    """
    seed = recipe.seed if seed is None else seed
    n_classes = int(_labels_of(dataset).max()) + 1 if n_classes is None else n_classes
    torch.manual_seed(seed)
    spec = preset(recipe.backbone)
    backbone = spec.build()
    dim = backbone(torch.zeros(2, *spec.input_size)).shape[1]
    modules = {"backbone": backbone}
    if recipe.sample_rate is not None:
        modules["head"] = PartialFC(dim, n_classes, recipe.loss, recipe.s, recipe.m, recipe.sample_rate)
    elif recipe.loss != "triplet":
        modules["head"] = make_head(recipe.loss, dim, n_classes, recipe.s, recipe.m, recipe.center_lambda,
                                    recipe.schedule)
    model = nn.ModuleDict(modules)

    if recipe.loss == "triplet":
        sampler = PKSampler(_labels_of(dataset), recipe.batch_size // recipe.images_per_identity,
                            recipe.images_per_identity, seed)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler)

        def loss_fn(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
            x, y = batch
            x = model["backbone"].preprocess(random_flip(x) if recipe.flip else x)
            return metric.triplet_loss(model["backbone"](x), y, recipe.triplet_margin, "semihard")
    else:
        loader = make_loader(dataset, recipe.batch_size, shuffle=True, seed=seed, drop_last=True)

        def loss_fn(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
            x, y = batch
            x = model["backbone"].preprocess(random_flip(x) if recipe.flip else x)
            loss = model["head"](model["backbone"](x), y)
            return loss, dict(getattr(model["head"], "last", {}))

    opt = build_optimizer(recipe, model)
    sched = cosine_schedule(opt, recipe.epochs * len(loader), recipe.warmup_steps)
    trainer = Trainer(model, opt, loss_fn, device=device, scheduler=sched, checkpoint=checkpoint, seed=seed,
                      callbacks=callbacks, meta=metadata(model["backbone"], recipe.backbone, prefix="backbone."),
                      **recipe.trainer_options())
    history = trainer.fit(loader, recipe.epochs, progress=progress)
    return TrainResult(trainer.model["backbone"], history, trainer, trainer.checkpoint,
                       head=trainer.model["head"] if "head" in trainer.model else None)


def save_model(backbone: nn.Module, recipe: RecognitionRecipe, path: str | os.PathLike, **extra: Any) -> Path:
    """Write the backbone's weights (fp16, to stay small) with their description (:func:`facelearn.registry.save`)
    and the recipe: the checkpoint that ``facelearn eval verification --checkpoint`` reads. ``extra``: plain
    values to store (e.g. accuracy)."""
    from facelearn.registry import save

    return save(backbone, path, recipe.backbone, half=True, recipe=asdict(recipe), extra=extra)


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, RecognitionRecipe, dict]:
    """Read a :func:`save_model` checkpoint → (backbone in eval mode, recipe, extra); the backbone is rebuilt
    from the checkpoint's own description (:func:`facelearn.load`), another task's checkpoint refused. The
    recipe keeps the fields the class has today (a checkpoint written when the warm-up was counted in epochs
    stored ``warmup_epochs``, which is left out)."""
    from facelearn.registry import load

    backbone = load(path, task="recognition")
    state = load_checkpoint(path)
    known = {f.name for f in fields(RecognitionRecipe)}
    rec = RecognitionRecipe(**{k: tuple(v) if k == "schedule" and v is not None else v
                               for k, v in state["recipe"].items() if k in known})
    return backbone.to(device), rec, dict(state.get("extra", {}))


@dataclass(frozen=True)
class SynthFaceIdentities:
    """The size of the SynthFace identity set of the CPU chapters (``quick``). The test identities, their
    images and their pairs depend only on ``n_test_identities``, ``images_per_identity``, ``image_size`` and
    ``seed``: a smaller training set (:data:`PAGE_IDENTITIES`) is scored on the very same pairs."""

    n_identities: int = 1000
    images_per_identity: int = 20
    n_test_identities: int = 100
    image_size: int = 64
    seed: int = 0

    @property
    def folder(self) -> str:
        return (f"synthface-identities-{self.n_identities}x{self.images_per_identity}-"
                f"{self.n_test_identities}-{self.image_size}px-seed{self.seed}")


#: The smaller training set the chapters train on while the page runs (the checkpoints use the default).
PAGE_IDENTITIES = SynthFaceIdentities(n_identities=150)


def synthface_identities(config: SynthFaceIdentities = SynthFaceIdentities(), progress: bool = True):  # noqa: ANN201
    """Export (once, under :func:`facelearn.runtime.data_dir`) and load the chapters' SynthFace identity set.

    Returns (train TensorDataset of (3, S, S) RGB images in [0, 1] with labels, number of training identities,
    pair images (2P, 3, S, S), issame (P,)). The same files are what ``facelearn train recognition --data``
    and ``facelearn eval verification --pairs`` read.
    """
    from torch.utils.data import TensorDataset

    from facelearn import runtime
    from facelearn.data import identities

    root = runtime.data_dir() / config.folder
    if not (root / "meta.json").is_file():
        from facelearn.data.synthface import export_identities

        export_identities(root, n_identities=config.n_identities, images_per_identity=config.images_per_identity,
                          n_test_identities=config.n_test_identities, image_size=config.image_size,
                          seed=config.seed, progress=progress)
    folder = identities.IdentityFolder(root / "train", config.image_size)
    images, labels = folder.load_all()
    pairs, issame = identities.read_pairs(root / "pairs.txt")
    return TensorDataset(images, labels), len(folder.classes), identities.load_pair_images(pairs, config.image_size), issame


def shipped_checkpoint(loss: str) -> Path:
    """Where the book's checkpoint of the ``quick`` recipe trained with ``loss`` lives:
    ``facelearn/recognition/checkpoints/quick-<loss>.pt``, shipped inside the package (``make checkpoints``
    rewrites it)."""
    return Path(__file__).resolve().parent / "checkpoints" / f"quick-{loss}.pt"


def load_or_train(loss: str, progress: bool = True) -> tuple[nn.Module, RecognitionRecipe, dict]:
    """The ``quick`` backbone trained with ``loss``: the shipped checkpoint if present (a clone of the book's
    repository), else a cached one, else trained now exactly as ``facelearn train recognition --loss <loss>``
    does (minutes on a CPU) and cached under :func:`facelearn.runtime.cache_dir`."""
    from facelearn import runtime

    for path in (shipped_checkpoint(loss), runtime.cache_dir() / "recognition" / f"quick-{loss}.pt"):
        if path.is_file():
            return load_model(path)
    dataset, n_classes, _, _ = synthface_identities(progress=progress)
    recipe = RecognitionRecipe.quick(loss=loss, m=default_margin(loss))
    runtime.seed_everything(0)
    result = train(recipe, dataset, n_classes, seed=0, progress=progress)
    save_model(result.model.cpu(), recipe, path, final_loss=result.history[-1]["loss"])
    return load_model(path)


def synthface_pairs_sha256(config: SynthFaceIdentities = SynthFaceIdentities()) -> str:
    """SHA-256 of the chapters' SynthFace ``pairs.txt`` and ``synthface.bin`` (the pairs and their images): which
    data a checkpoint was scored on. The test identities do not depend on the training set's size."""
    import hashlib

    from facelearn import runtime

    root = runtime.data_dir() / config.folder
    digest = hashlib.sha256()
    for name in ("pairs.txt", "synthface.bin"):
        digest.update((root / name).read_bytes())
    return digest.hexdigest()
