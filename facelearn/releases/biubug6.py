"""biubug6/Pytorch_Retinaface's released RetinaFace weights, ``mobilenet0.25_Final.pth`` and
``Resnet50_Final.pth`` (book: chapter "Training and evaluating RetinaFace", the released model).

Layout: one state_dict saved from ``nn.DataParallel`` (every key prefixed ``module.``; ``detect.py`` also
accepts it under a ``state_dict`` key), 300 tensors for MobileNet-0.25 and 456 for ResNet-50, the same
tensors in the same order as facelearn's ``retinaface-mobilenet0.25`` and ``retinaface-resnet50``. Input: BGR
pixels minus (104, 117, 123), unscaled. Its ``conf`` output is softmaxed in ``forward``; facelearn's ``cls``
head gives the logits before it (the same numbers after :func:`~facelearn.detection.postprocess.candidates`'
softmax).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from facelearn.releases.pairing import pair_in_order
from facelearn.weights import BGR_MEAN_SUBTRACTED, Weights

SOURCE = "biubug6/Pytorch_Retinaface"
#: The repository README's folder of trained weights (a Google Drive folder: download by hand).
URL = "https://drive.google.com/open?id=1oZRSG0ZegbVkVwUd8wUIQx8W7yfZ_ki1"
_PUBLISHED = "WIDER FACE val, single scale at the original image size, as published in the repository's README"

RELEASES = (
    Weights("biubug6-mobilenet0.25", "retinaface-mobilenet0.25", "detection", BGR_MEAN_SUBTRACTED, url=URL,
            format="biubug6", recipe="the repository's train.py with cfg_mnet on WIDER FACE (mobilenet0.25_Final.pth)",
            metrics={"ap": {"easy": 0.9070, "medium": 0.8816, "hard": 0.7382}}, measured_on=_PUBLISHED, licence="MIT"),
    Weights("biubug6-resnet50", "retinaface-resnet50", "detection", BGR_MEAN_SUBTRACTED, url=URL, format="biubug6",
            recipe="the repository's train.py with cfg_re50 on WIDER FACE (Resnet50_Final.pth)",
            metrics={"ap": {"easy": 0.9548, "medium": 0.9404, "hard": 0.8443}}, measured_on=_PUBLISHED, licence="MIT"),
)


def _weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    inner = state.get("state_dict", state)
    if not isinstance(inner, dict):
        return {}
    return {(k[len("module."):] if isinstance(k, str) and k.startswith("module.") else k): v for k, v in inner.items()}


def recognise(state: dict[str, Any]) -> tuple[str, ...]:
    """The facelearn preset a biubug6 file holds (``retinaface-mobilenet0.25`` or ``-resnet50``), else ``()``."""
    keys = _weights(state)
    if "ClassHead.0.conv1x1.weight" not in keys:
        return ()
    if "body.stage1.0.0.weight" in keys:
        return ("retinaface-mobilenet0.25",)
    if "body.layer1.0.conv1.weight" in keys:
        return ("retinaface-resnet50",)
    return ()


def convert(name: str, state: dict[str, Any], path: str | os.PathLike) -> nn.Module:
    """facelearn's RetinaFace ``name`` with the file's weights and its input convention (BGR − mean)."""
    from facelearn.detection.retinaface import build

    model = build(name, input=BGR_MEAN_SUBTRACTED)
    model.load_state_dict(pair_in_order(_weights(state), model, path, f"{SOURCE} {name}"))
    return model
