"""The detection data set: WIDER FACE images with RetinaFace labels, augmented for training (book chapter
"Training and evaluating RetinaFace").

Reads the WIDER layout (``WIDER_<split>/images/<event>/<name>.jpg`` and ``<split>/label.txt``) through
:func:`facelearn.data.widerface.read_labels`, so SynthFace exports and the real data set go through the
same code. Training samples are augmented by :class:`facelearn.data.transforms.DetectionAugment`;
evaluation samples are padded to a square and resized (:func:`facelearn.data.transforms.letterbox`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from facelearn.data.files import read_bgr
from facelearn.data.transforms import DetectionAugment, Sample, letterbox, to_tensor
from facelearn.data.widerface import LabelledImage, read_labels
from facelearn.errors import DataError


def _header_lines(label_file: Path) -> list[int]:
    """1-based line numbers of the ``# <event>/<name>.jpg`` lines (one per image, in file order)."""
    with open(label_file, encoding="utf-8") as f:
        return [n for n, line in enumerate(f, start=1) if line.strip().startswith("#")]


class WiderFaceDetection(Dataset):
    """Faces of one split of a WIDER-layout folder.

    Args:
        root: the folder holding ``WIDER_<split>/images`` and ``<split>/label.txt``.
        split: ``train`` or ``val`` (any name with that layout).
        train: augment (random crop, distortion, mirror, resize); else letterbox to ``size``.
        size: the square output size (for training, ``augment.size`` when ``augment`` is given).
        augment: the training augmentation (default ``DetectionAugment(size=size)``).
        seed: ``None`` draws each sample's augmentation seed from torch's global generator (so it changes
            every epoch, follows ``seed_everything`` and is restored by the Trainer on resume); an int
            fixes the augmentation of each index.
        missing: ``"error"`` raises :class:`DataError` naming the label line of an image file that does
            not exist; ``"skip"`` leaves such images out and counts them in ``skipped_missing``.
        skip_empty: leave out images without any face (counted in ``skipped_empty``); default: when training.

    Faces with a non-positive width or height are dropped (counted in ``dropped_faces``): they have no
    centre to crop around and no box to regress.

    Item: ``(image (3, S, S) float32 RGB in [0, 1], target)`` — the data contract of every task's data set;
    ``model.preprocess`` makes the network's input from it — with ``target["boxes"]`` (N, 4) x1 y1 x2 y2 and
    ``target["landmarks"]`` (N, 5, 2) in pixels of the S × S image (landmarks −1 where absent),
    ``target["landmark_mask"]`` (N,) bool, ``target["name"]`` ``<event>/<name>.jpg`` and, for evaluation,
    ``target["scale"]`` = S / the image's long side (original pixels = pixels / scale).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", *, train: bool = True, size: int = 640,
                 augment: DetectionAugment | None = None, seed: int | None = None, missing: str = "error",
                 skip_empty: bool | None = None) -> None:
        if missing not in ("error", "skip"):
            raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
        self.root, self.split, self.train, self.seed = Path(root), split, train, seed
        self.augment = augment if augment is not None else DetectionAugment(size=size)
        self.size = self.augment.size if train else size
        self.label_file = self.root / split / "label.txt"
        self.image_dir = self.root / f"WIDER_{split}" / "images"
        labels = read_labels(self.label_file)
        lines = _header_lines(self.label_file)
        self.items: list[tuple[LabelledImage, int]] = []
        self.skipped_missing, self.skipped_empty, self.dropped_faces = 0, 0, 0
        skip_empty = train if skip_empty is None else skip_empty
        for label, line in zip(labels, lines):
            if not (self.image_dir / label.name).is_file():
                if missing == "error":
                    raise DataError.at(self.label_file, line, f"image {self.image_dir / label.name} not found")
                self.skipped_missing += 1
                continue
            good = (label.boxes[:, 2] > 0) & (label.boxes[:, 3] > 0)
            self.dropped_faces += int((~good).sum())
            if skip_empty and not good.any():
                self.skipped_empty += 1
                continue
            self.items.append((label, line))

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, index: int) -> Sample:
        """The raw image (BGR uint8) and its valid faces in pixels, before any transform."""
        label, line = self.items[index]
        try:
            image = read_bgr(self.image_dir / label.name)
        except DataError as err:
            raise DataError.at(self.label_file, line, f"cannot read image {err}") from None
        good = (label.boxes[:, 2] > 0) & (label.boxes[:, 3] > 0)
        xywh = label.boxes[good].astype(np.float32)
        boxes = np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]].astype(np.float32)
        return Sample(image, boxes, label.landmarks[good].astype(np.float32).copy(), label.has_landmarks[good].copy())

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        return np.random.default_rng([self.seed, index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        label, _ = self.items[index]
        sample = self.sample(index)
        target: dict = {}
        if self.train:
            out = self.augment(sample, self._rng(index))
        else:
            out, scale = letterbox(sample, self.size, self.augment.fill)
            target["scale"] = torch.tensor(scale, dtype=torch.float32)
        landmarks = np.where(out.mask[:, None, None], out.landmarks, -1.0).astype(np.float32)
        target.update(boxes=torch.from_numpy(out.boxes.astype(np.float32)).reshape(-1, 4),
                      landmarks=torch.from_numpy(landmarks).reshape(-1, 5, 2),
                      landmark_mask=torch.from_numpy(out.mask.astype(bool)), name=label.name)
        return to_tensor(out.image), target


def collate(batch: list[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, list[dict]]:
    """Stack the images (B, 3, S, S); keep the targets as a list (faces per image differ)."""
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)
