"""The reference implementations' released weights, loaded into facelearn's own architectures (book: the
"released model" section of chapters 12, 22 and 30).

Each release is a :class:`~facelearn.weights.Weights` record (official location, licence, the hash where the
publisher gives one, the preprocessing it was trained with) and a module that recognises its file layout:
:mod:`~facelearn.releases.biubug6` (RetinaFace), :mod:`~facelearn.releases.arcface_torch` (iResNet),
:mod:`~facelearn.releases.pfld_pytorch` (PFLD). The layouts list the same tensors as facelearn's models, in
the same order, under other names: :func:`~facelearn.releases.pairing.pair_in_order` maps them one to
one, checking every shape.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from facelearn.errors import DataError
from facelearn.releases import arcface_torch, biubug6, pfld_pytorch
from facelearn.releases.pairing import pair_in_order  # noqa: F401  (re-exported)
from facelearn.weights import Weights

FORMATS = (biubug6, arcface_torch, pfld_pytorch)

#: Every registered release (``facelearn.list_weights()`` lists them with the shipped checkpoints).
RELEASES: tuple[Weights, ...] = (*biubug6.RELEASES, *arcface_torch.RELEASES, *pfld_pytorch.RELEASES)


def describe(state: dict[str, Any]) -> str | None:
    """What a release file holds, in words (``biubug6/Pytorch_Retinaface weights of retinaface-resnet50``),
    or ``None`` when no known layout fits."""
    for fmt in FORMATS:
        held = fmt.recognise(state)
        if held:
            return f"{fmt.SOURCE} weights of {' / '.join(held)}"
    return None


def identify(state: dict[str, Any]) -> tuple[str, ...]:
    """The facelearn presets a release file fits (``()`` when no known layout fits)."""
    for fmt in FORMATS:
        held = fmt.recognise(state)
        if held:
            return held
    return ()


def load_release(name: str, state: dict[str, Any], path: str | os.PathLike) -> nn.Module:
    """The model preset ``name`` with the weights of the release file ``state`` (read from ``path``).

    The layout is recognised from the file's keys; a release of another architecture, or a file no release
    layout fits, raises a one-line :class:`DataError` naming the file, what it holds and what was expected.
    """
    for fmt in FORMATS:
        held = fmt.recognise(state)
        if held:
            if name not in held:
                raise DataError.at(path, None, f"holds {describe(state)}; expected {name}")
            return fmt.convert(name, state, path)
    from facelearn.registry import expect

    expect(path, state, model=name)  # raises: neither a facelearn checkpoint nor a known release
    raise AssertionError("unreachable")
