"""Pairing a release's tensors with facelearn's, one to one in order (book: the "released model" sections).

The reference implementations register their layers in the order facelearn does, under other names; a
release is loaded by assigning its tensors in order, every shape checked, instead of a table of renamings.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from facelearn.errors import DataError


def pair_in_order(source: dict[str, torch.Tensor], model: nn.Module, path: str | os.PathLike,
                  what: str) -> dict[str, torch.Tensor]:
    """``model``'s full state dict with ``source``'s tensors assigned in order, BatchNorm counters aside
    (``num_batches_tracked``: some releases predate them). Counts and every shape are checked; a mismatch
    raises a one-line :class:`DataError`. The result loads with ``load_state_dict(strict=True)``."""
    state = model.state_dict()
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in state if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise DataError.at(path, None, f"{what}: {len(src)} tensors, the model has {len(dst)}")
    for (key, value), target in zip(src, dst):
        if tuple(value.shape) != tuple(state[target].shape):
            raise DataError.at(path, None, f"{what}: {key} {tuple(value.shape)} does not fit {target} "
                                           f"{tuple(state[target].shape)}")
        state[target] = value
    return state
