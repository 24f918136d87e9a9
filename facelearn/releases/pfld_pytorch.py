"""polarisZhao/PFLD-pytorch's released PFLD, ``checkpoint/snapshot/checkpoint.pth.tar`` (book: chapter
"PFLD landmark detection", the released model).

Layout: a dict ``{'epoch', 'pfld_backbone', 'auxiliarynet'}`` of two state_dicts (files of the 2019
``train.py`` say ``plfd_backbone``), 261 + 28 tensors for PFLD 1X, in facelearn's order. Input: BGR 112 × 112
crops in [0, 1]. The reference defines a BatchNorm after S3's 7 × 7 convolution (``bn8``) but its ``forward``
never applies it: the file's ``bn8`` is dropped and the model is built with ``s3_norm=False``. The backbone
returns (features, landmarks) where facelearn's returns (landmarks, feature).
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from facelearn.releases.pairing import pair_in_order
from facelearn.weights import BGR_UNIT_112, Weights

SOURCE = "polarisZhao/PFLD-pytorch"
#: The checkpoint committed to the repository, at the commit the book read (no hash is published).
URL = ("https://github.com/polarisZhao/PFLD-pytorch/raw/b00750c37deaf5d133933d080d4b7a6421826812/"
       "checkpoint/snapshot/checkpoint.pth.tar")

RELEASES = (
    Weights("pfld_pytorch-1x", "pfld-1x", "landmarks", BGR_UNIT_112, url=URL, format="pfld_pytorch",
            recipe="the repository's train.py on WFLW (98 points)", licence="none stated in the repository"),
    Weights("pfld_pytorch-aux-1x", "pfld-aux-1x", "landmarks", BGR_UNIT_112, url=URL, format="pfld_pytorch",
            recipe="the repository's train.py on WFLW (Euler angles)", licence="none stated in the repository"),
)
_WIDTHS = {1.0: "1x", 0.25: "0.25x"}


def _backbone(state: dict[str, Any]) -> dict[str, Any]:
    found = state.get("pfld_backbone", state.get("plfd_backbone"))
    return found if isinstance(found, dict) else {}


def recognise(state: dict[str, Any]) -> tuple[str, ...]:
    """The facelearn presets a PFLD-pytorch file provides (``pfld-1x`` and, with its auxiliary net,
    ``pfld-aux-1x``), else ``()``."""
    backbone = _backbone(state)
    if "conv1.weight" not in backbone or "fc.weight" not in backbone or backbone["fc.weight"].shape[0] != 196:
        return ()
    width = _WIDTHS.get(backbone["conv1.weight"].shape[0] / 64)
    if width is None:
        return ()
    return (f"pfld-{width}", f"pfld-aux-{width}") if "auxiliarynet" in state else (f"pfld-{width}",)


def convert(name: str, state: dict[str, Any], path: str | os.PathLike) -> nn.Module:
    """facelearn's PFLD (or its auxiliary net, for ``pfld-aux-*``) with the file's weights, BGR input and
    S3's BatchNorm the identity."""
    from facelearn.landmarks.pfld import PFLD, AuxiliaryNet, PFLDConfig

    backbone = _backbone(state)
    config = PFLDConfig(backbone["conv1.weight"].shape[0] / 64, 98, input=BGR_UNIT_112, s3_norm=False)
    if name.startswith("pfld-aux-"):
        model, source = AuxiliaryNet(config), state["auxiliarynet"]
    else:
        model, source = PFLD(config), {k: v for k, v in backbone.items() if not k.startswith("bn8.")}
    model.load_state_dict(pair_in_order(source, model, path, f"{SOURCE} {name}"))
    return model
