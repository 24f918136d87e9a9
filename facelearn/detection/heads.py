"""Task heads of RetinaFace (book chapter "Context and detection modules").

Every task (face / background scores, box offsets, 5 landmarks — and later the dense-regression branch)
is one :class:`TaskHead`: a 1×1 convolution per pyramid level predicting ``values`` numbers for each of
the level's anchors. :class:`RetinaFace` keeps them in an ``nn.ModuleDict`` keyed by task name, so a
fourth task is one more entry.
"""

from __future__ import annotations

import torch
from torch import nn

#: values per anchor of each built-in task: 2 class scores, 4 box offsets, 5 × (x, y) landmark offsets, and
#: the dense branch's 128-d mesh code + 7 camera + 9 light parameters (chapter "The dense regression branch")
TASK_VALUES = {"cls": 2, "box": 4, "landmarks": 10, "dense": 144}


class TaskHead(nn.Module):
    """in_channels: width of the pyramid; anchors_per_location: per level; values: numbers per anchor.

    forward(list of (B, C, H_l, W_l)) → (B, A, values), anchors in :func:`generate_anchors` order.
    """

    def __init__(self, in_channels: int, anchors_per_location: tuple[int, ...], values: int) -> None:
        super().__init__()
        self.values = values
        self.convs = nn.ModuleList([nn.Conv2d(in_channels, k * values, 1) for k in anchors_per_location])

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        # (B, H, W, k·values) views, position-major and anchor-minor, flattened to (B, H·W, k·values) (still
        # views); with the same k on every level one concatenation copies each prediction once, into the
        # (B, Σ H·W, k·values) tensor that is (B, A, values) in memory
        outs = [conv(f).permute(0, 2, 3, 1).flatten(1, 2) for conv, f in zip(self.convs, features)]
        if len({y.shape[-1] for y in outs}) == 1:
            return torch.cat(outs, dim=1).view(outs[0].shape[0], -1, self.values)
        return torch.cat([y.reshape(y.shape[0], -1, self.values) for y in outs], dim=1)


def build_heads(in_channels: int, anchors_per_location: tuple[int, ...],
                tasks: tuple[str, ...] = ("cls", "box", "landmarks")) -> nn.ModuleDict:
    """One :class:`TaskHead` per task name in ``tasks`` (keys of :data:`TASK_VALUES`). The ``dense`` head starts
    at zero: every anchor first predicts the average face, frontal, lit from the camera."""
    heads = nn.ModuleDict({t: TaskHead(in_channels, anchors_per_location, TASK_VALUES[t]) for t in tasks})
    if "dense" in heads:
        for conv in heads["dense"].convs:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
    return heads
