"""A backbone and a classification head trained together (book chapters "Feature normalisation" and the
loss chapters).

The head is any module with ``forward(features, labels) -> loss`` and ``logits(features) -> (N, C)``:
:class:`~facelearn.recognition.normalisation.SoftmaxHead`, NormFace, or a margin head.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader


class EmbeddingClassifier(nn.Module):
    """``backbone`` maps its preprocessed images (``backbone.preprocess`` of (N, C, H, W) in [0, 1]) to features
    (N, D); ``head`` turns features and labels into a loss."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.backbone.preprocess(images)), labels)


def classification_step(model: EmbeddingClassifier,
                        batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The ``loss_fn`` for :class:`facelearn.engine.Trainer`: loss and training accuracy of one batch
    (images (N, C, H, W), labels (N,)); the accuracy a 0-d tensor on the batch's device."""
    images, labels = batch
    features = model.backbone(model.backbone.preprocess(images))
    loss = model.head(features, labels)
    with torch.no_grad():
        accuracy = (model.head.logits(features).argmax(1) == labels).float().mean()
    return loss, {"accuracy": accuracy}


@torch.no_grad()
def embed(backbone: nn.Module, loader: DataLoader, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, D) and labels (N,) of every batch ``(images, labels)`` of ``loader``, in eval mode, on the CPU."""
    was_training = backbone.training
    backbone.eval()
    features, labels = [], []
    for images, y in loader:
        features.append(backbone(backbone.preprocess(images.to(device))).float().cpu())
        labels.append(y)
    backbone.train(was_training)
    return torch.cat(features), torch.cat(labels)


@torch.no_grad()
def accuracy(model: EmbeddingClassifier, loader: DataLoader, device: torch.device | str = "cpu") -> float:
    """Top-1 accuracy of ``model.head.logits`` over ``loader``."""
    features, labels = embed(model.backbone, loader, device)
    return float((model.head.logits(features.to(device)).argmax(1).cpu() == labels).float().mean())
