"""Test-time protocols of a face detector: which sizes an image is shown at (book chapter "Training and
evaluating RetinaFace").

A detector finds a face well only at the sizes it learnt: the quick recipe's training crops show SynthFace
faces between a few pixels and about 150 px on the network input (median 8 px), and its anchors span 16–512 px.
:func:`pyramid_scales` chooses, from an image's size alone, the factors that bring every face between
``min_face`` pixels and the whole image into the band the detector learnt, and never enlarges a large
photograph beyond ``max_side`` pixels; each pass then keeps only the candidates whose height on the network
input lies in that band (:func:`in_band`, the "valid range" of SNIP {cite}`singh2018snip`), so a pass trusts
only the faces it was chosen for: boxes on the parts of a face too large for it, and the tiny boxes that texture
(grass, gravel, a star field) raises, are left to the passes where they would be faces of a learnt size — and
there they are not found. A :class:`Protocol` is a named set of test-time keywords of
:func:`facelearn.detection.postprocess.detect`; :data:`PROTOCOLS` holds the default (``real``) and the one tuned
on SynthFace's small faces (``synthface``: a fixed 1.5 / 2 / 2.5 pyramid, mirror, box voting), which only
SynthFace's validation figures use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

#: Face heights (pixels on the network input) that the detector saw most in training: a face is shown at
#: ``LEARNT_FACES[0]`` (the smallest anchor) when smallest, at most ``LEARNT_FACES[1]`` when largest.
LEARNT_FACES = (16.0, 128.0)
#: The smallest face (pixels in the image) a protocol looks for.
MIN_FACE = 10.0
#: An image is never enlarged beyond this long side (pixels); one already larger is never enlarged.
MAX_SIDE = 1600
#: Ratio of consecutive factors: an octave, so each face is seen at two sizes inside the learnt band.
STEP = 2.0


def pyramid_scales(height: int, width: int, *, min_face: float = MIN_FACE,
                   learnt: tuple[float, float] = LEARNT_FACES, max_side: int = MAX_SIDE,
                   step: float = STEP) -> tuple[float, ...]:
    """Resize factors (descending) for an image of ``height`` × ``width`` pixels.

    Factor s shows image faces of heights [lo/s, hi/s] at the learnt band [lo, hi] = ``learnt``. The largest
    factor brings a ``min_face`` face to lo, s_1 = lo/min_face, capped at max(1, max_side / long side) so a
    large photograph is not enlarged; each next factor divides by ``step`` (≤ hi/lo, so consecutive bands
    overlap), until a face as tall as the image's short side fits: s_k ≤ hi / short side. A pure function of
    the size; e.g. 512 × 512 → (1.6, 0.8, 0.4, 0.2).
    """
    lo, hi = learnt
    if height < 1 or width < 1 or not 0 < lo < hi or min_face <= 0 or not 1 < step <= hi / lo:
        raise ValueError(f"need a positive image size, 0 < lo < hi and 1 < step <= hi/lo, got {height}x{width}, "
                         f"learnt {learnt}, step {step}")
    top = min(lo / min_face, max(1.0, max_side / max(height, width)))
    smallest = hi / min(height, width)
    scales = [top]
    while scales[-1] > smallest:
        scales.append(scales[-1] / step)
    return tuple(math.floor(s * 1e4) / 1e4 for s in scales)  # 4 decimals, rounded down: never above a cap


def in_band(boxes: torch.Tensor, learnt: tuple[float, float] = LEARNT_FACES) -> torch.Tensor:
    """Which boxes (N, 4) x1 y1 x2 y2, in pixels of the network input, are lo ≤ height ≤ hi → (N,) bool."""
    height = boxes[:, 3] - boxes[:, 1]
    return (height >= learnt[0]) & (height <= learnt[1])


@dataclass(frozen=True)
class Protocol:
    """Test-time keywords of :func:`~facelearn.detection.postprocess.detect`. scales: fixed resize factors, or
    None for :func:`pyramid_scales` of each image, each pass keeping the boxes :func:`in_band`; flip: also run the mirror image; vote_iou: box voting's IoU
    (None: off); max_size: cap on the resized long side."""

    name: str
    scales: tuple[float, ...] | None = None
    flip: bool = False
    vote_iou: float | None = None
    max_size: int | None = None

    @property
    def keywords(self) -> dict[str, Any]:
        """``scale``, ``flip``, ``vote_iou``, ``max_size`` for :func:`detect` and ``evaluate_model``."""
        return {"scale": self.scales, "flip": self.flip, "vote_iou": self.vote_iou, "max_size": self.max_size}


#: ``real``: the default of :func:`~facelearn.detection.postprocess.detect` and ``facelearn detect``;
#: ``single``: one pass at the image's own size; ``synthface``: the quick recipe's SynthFace val protocol.
PROTOCOLS = {
    "real": Protocol("real"),
    "single": Protocol("single", scales=(1.0,)),
    "synthface": Protocol("synthface", scales=(1.5, 2.0, 2.5), flip=True, vote_iou=0.4),
}


def scales_for(height: int, width: int, scale: float | tuple[float, ...] | list[float] | None) -> tuple[float, ...]:
    """The factors :func:`detect` uses: ``scale`` as given (one number or several), or, if None,
    :func:`pyramid_scales` of the image size."""
    if scale is None:
        return pyramid_scales(height, width)
    try:
        scales = tuple(float(s) for s in ((scale,) if isinstance(scale, (int, float)) else scale))
    except (TypeError, ValueError):
        scales = ()
    if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
        raise ValueError(f"scale must be a positive number or a non-empty list of them, got {scale}")
    return scales
