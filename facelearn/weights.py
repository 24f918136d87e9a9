"""Trained weights as data: where a file comes from, the input it expects, what trained it and how well it
does (book: "How to run it", and the "released model" section of each model chapter).

A :class:`Preprocess` says how images become the input a set of weights was trained on: the channel order,
the divisor applied to the 0–255 pixels, the mean and standard deviation, the input size. It is data, so
weights trained with another convention (the reference implementations' releases: BGR minus a mean,
unscaled) are described, stored in checkpoints and applied exactly, never guessed. It is the one place where
images become a network's input: the data sets of every task yield RGB in [0, 1] (or uint8 pixels), each
model's ``preprocess`` applies the record it carries, and ``forward`` reads the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Preprocess:
    """uint8 pixels → network input: ``x = (pixels[channels] / divisor − mean) / std``, per channel.

    channels: ``"RGB"`` or ``"BGR"``, the order the weights read; divisor: 255 maps pixels to [0, 1], 1 leaves
    them unscaled; mean, std: three numbers in that channel order, in the units after the division;
    size: (H, W) the weights expect, ``None`` for any size (a fully convolutional detector).
    """

    channels: str = "RGB"
    divisor: float = 255.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.channels not in ("RGB", "BGR"):
            raise ValueError(f"channels must be 'RGB' or 'BGR', got {self.channels!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or self.divisor <= 0 or min(self.std) <= 0:
            raise ValueError(f"bad preprocessing {self}: three means, three positive stds, a positive divisor")

    def __call__(self, images: np.ndarray | Sequence[np.ndarray] | torch.Tensor) -> torch.Tensor:
        """images → the (N, 3, H, W) float32 network input these weights read.

        images: uint8 RGB pixels as read, (N, H, W, 3) or H×W×3 arrays (a list of one size); or a tensor
        (N, 3, H, W) / (3, H, W) as the data sets yield it, uint8 pixels or float RGB in [0, 1] (pixels / 255:
        :meth:`from_unit`, the same numbers as the pixels give). The tensor stays on its device.
        """
        if isinstance(images, torch.Tensor):
            x = images[None] if images.dim() == 3 else images
            if x.dim() != 4 or x.shape[1] != 3 or not (x.dtype == torch.uint8 or x.is_floating_point()):
                raise ValueError(f"expected (N, 3, H, W) uint8 or float RGB images, got {x.dtype} {tuple(x.shape)}")
        else:
            arr = np.stack([np.asarray(i) for i in images]) if isinstance(images, (list, tuple)) \
                else np.asarray(images)
            if arr.ndim == 3:
                arr = arr[None]
            if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
                raise ValueError(f"expected uint8 RGB images (N, H, W, 3), got {arr.dtype} {arr.shape}")
            x = torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))
        if self.size is not None and tuple(x.shape[-2:]) != tuple(self.size):
            raise ValueError(f"these weights read {self.size[0]}×{self.size[1]} images, "
                             f"got {x.shape[-2]}×{x.shape[-1]}")
        if x.is_floating_point():
            return self.from_unit(x)
        x = self._order(x.float())
        return self._normalise(x / self.divisor if self.divisor != 1 else x)

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) RGB in [0, 1] (pixels / 255) → the same input as :meth:`__call__` on the pixels.

        Exact for x = uint8 / 255 in float32 (x · 255 gives back every integer 0…255); for 255 as the divisor
        nothing is multiplied at all.
        """
        x = self._order(x)
        if self.divisor != 255.0:
            x = x * (255.0 / self.divisor)
        return self._normalise(x)

    def _order(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(1) if self.channels == "BGR" else x

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.mean):
            x = x - x.new_tensor(self.mean).view(1, 3, 1, 1)
            if any(s != 1.0 for s in self.std):  # the difference is a fresh tensor: divide it in place
                return x.div_(x.new_tensor(self.std).view(1, 3, 1, 1))
        if any(s != 1.0 for s in self.std):
            x = x / x.new_tensor(self.std).view(1, 3, 1, 1)
        return x


#: facelearn's detectors: RGB, ImageNet mean and standard deviation (torchvision's convention).
IMAGENET = Preprocess("RGB", 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
#: facelearn's PFLD: RGB in [0, 1], the crops as the landmark data set yields them.
UNIT = Preprocess("RGB", 255.0)
#: facelearn's and insightface's recognition input, 112 × 112 RGB in [−1, 1].
SIGNED = Preprocess("RGB", 255.0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (112, 112))
#: biubug6/Pytorch_Retinaface: BGR pixels minus (104, 117, 123), unscaled.
BGR_MEAN_SUBTRACTED = Preprocess("BGR", 1.0, (104.0, 117.0, 123.0))
#: PFLD-pytorch: BGR 112 × 112 crops in [0, 1] (``transforms.ToTensor()``).
BGR_UNIT_112 = Preprocess("BGR", 255.0, size=(112, 112))

#: The preprocessing of facelearn's own models of each task, for a model that carries no record of its own.
TASK_PREPROCESS = {"detection": IMAGENET, "landmarks": UNIT, "recognition": SIGNED}


@dataclass(frozen=True)
class Weights:
    """One trained file of a registered model.

    name: registry key (``retinaface-mobilenet0.25.quick``); model: the model preset it fits; task;
    preprocess: the input it was trained on; file: a file shipped inside the package (relative to
    ``facelearn/``), or url + sha256 for a download (sha256 ``None`` where the publisher gives none: the
    reader must pass one); format: ``facelearn`` or the release's layout (``biubug6``, ``arcface_torch``,
    ``pfld_pytorch``); recipe: what trained it; metrics, measured_on: its figures and the data they were
    measured on (for shipped files, read from the checkpoint itself); licence.
    """

    name: str
    model: str
    task: str
    preprocess: Preprocess
    file: str | None = None
    url: str | None = None
    sha256: str | None = None
    format: str = "facelearn"
    recipe: str = ""
    metrics: dict[str, Any] = field(default_factory=dict, compare=False)
    measured_on: str = ""
    licence: str = ""

    def path(self) -> Path | None:
        """The shipped file's path inside the installed package, or ``None`` for a download."""
        return Path(__file__).resolve().parent / self.file if self.file else None

    def transforms(self) -> Preprocess:
        """uint8 RGB images → what the model built with these weights reads in ``forward``: their
        :attr:`preprocess`, at the crop size they were trained on (64 × 64 for the loss chapters' CNN, 112 × 112
        for the releases); the same as ``model.preprocess``."""
        return self.preprocess

