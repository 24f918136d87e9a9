"""Logged values that stay on the device (book: "How to run it").

A loss function returns its logs as detached 0-d tensors so that the :class:`~facelearn.engine.Trainer`
can add them up on the device and wait for it only every ``log_every`` iterations. The Trainer sums in
:func:`log_dtype`; a count logged per image is divided in that dtype by :func:`per`, which gives the digits
Python's ``float(count) / n`` gave when the logs were floats.
"""

from __future__ import annotations

import torch


def log_dtype(device: torch.device) -> torch.dtype:
    """float64, or float32 on MPS, which has no float64: the dtype logs are summed and divided in."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def per(count: torch.Tensor, n: int | float) -> torch.Tensor:
    """``count / n`` as a detached 0-d tensor on ``count``'s device, divided in :func:`log_dtype`
    (count: a 0-d integer or float tensor, e.g. the positive anchors of a batch; n: e.g. the images)."""
    return count.detach().to(log_dtype(count.device)) / n
