"""scikit-learn's bundled handwritten digits as a small image data set (book chapter "Feature normalisation").

1,797 greyscale 8×8 digits (ten classes) ship with scikit-learn, so a chapter can train a real classifier
without downloading anything. Images are scaled to [0, 1] and resized to ``size``×``size`` (16 by default,
the input of ``digits_cnn_2d``; 28–32 for the face chapters' CNNs).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset


def digits_datasets(size: int = 16, test_fraction: float = 0.25, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """(train, test) data sets of (image (1, size, size) float32 in [0, 1], label int64), split per class
    with ``test_fraction`` of each digit held out, deterministically for ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=test_fraction, random_state=seed,
                                           stratify=digits.target)
    return (TensorDataset(images[train_idx], labels[train_idx]),
            TensorDataset(images[test_idx], labels[test_idx]))
