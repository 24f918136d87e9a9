"""insightface ``recognition/arcface_torch``'s released iResNet backbones, ``backbone.pth`` (book: chapter
"CosFace and ArcFace", the released model).

Layout: a plain state_dict of ``iresnet{18,34,50,100}(num_features=512)`` (no prefix; 475 tensors for
iResNet-50), the same tensors in the same order as facelearn's ``iresnet*`` presets, including the final
BatchNorm1d ``features`` whose scale is frozen at 1. Input: 112 × 112 RGB, (x / 255 − 0.5) / 0.5 — facelearn's
recognition input, so nothing about the convention changes.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from facelearn.releases.pairing import pair_in_order
from facelearn.weights import SIGNED, Weights

SOURCE = "deepinsight/insightface arcface_torch"
#: The model zoo (OneDrive and Baidu folders linked from this page: download by hand; no hashes are published).
URL = "https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch"
_LICENCE = "code MIT; the models trained on insightface's data are for non-commercial research only"
_DEPTHS = {(2, 2, 2, 2): "iresnet18", (3, 4, 6, 3): "iresnet34", (3, 4, 14, 3): "iresnet50",
           (3, 13, 30, 3): "iresnet100"}

RELEASES = tuple(
    Weights(f"arcface_torch-ms1mv3-r{depth}", f"iresnet{depth}", "recognition", SIGNED, url=URL,
            format="arcface_torch", recipe=f"arcface_torch configs/ms1mv3_r{depth} (ArcFace, MS1MV3)",
            licence=_LICENCE)
    for depth in (18, 34, 50, 100))


def recognise(state: dict[str, Any]) -> tuple[str, ...]:
    """The facelearn preset an arcface_torch iResNet file holds (``iresnet50``, …), else ``()``."""
    if not {"conv1.weight", "prelu.weight", "fc.weight", "features.running_mean"} <= set(state):
        return ()
    blocks = tuple(len({k.split(".")[1] for k in state if isinstance(k, str) and k.startswith(f"layer{i}.")})
                   for i in range(1, 5))
    return (_DEPTHS[blocks],) if blocks in _DEPTHS else ()


def convert(name: str, state: dict[str, Any], path: str | os.PathLike) -> nn.Module:
    """facelearn's iResNet ``name`` with the file's weights."""
    from facelearn.models import preset

    model = preset(name).build()
    model.load_state_dict(pair_in_order(state, model, path, f"{SOURCE} {name}"))
    return model
