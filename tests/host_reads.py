"""A counter of host reads for the tests that training steps never wait for the device
(tests/test_loss_logs.py, tests/test_detection_loss_reference.py)."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import torch

#: what reads a tensor's value on the host, and so waits for the device to have computed it
READS = ("item", "__float__", "__int__", "__index__", "__bool__", "tolist", "numpy", "cpu", "nonzero",
         "masked_select")


@contextmanager
def host_reads(monkeypatch):
    """Count, by name, the calls of :data:`READS` (methods of ``torch.Tensor``), of ``torch.nonzero`` and the
    indexing of a tensor by a boolean tensor (``__getitem__[bool]``, ``__setitem__[bool]``: the result's shape is
    known only once the mask has been computed) made inside the ``with`` block → the Counter."""
    calls = Counter()

    def counting(name, original):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)
        return wrapper

    def by_mask(index) -> bool:
        parts = index if isinstance(index, tuple) else (index,)
        return any(torch.is_tensor(i) and i.dtype == torch.bool for i in parts)

    def indexing(name, original):
        def wrapper(self, index, *rest):
            if by_mask(index):
                calls[f"{name}[bool]"] += 1
            return original(self, index, *rest)
        return wrapper

    with monkeypatch.context() as patch:
        for name in READS:
            patch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
        patch.setattr(torch, "nonzero", counting("torch.nonzero", torch.nonzero))
        for name in ("__getitem__", "__setitem__"):
            patch.setattr(torch.Tensor, name, indexing(name, getattr(torch.Tensor, name)))
        yield calls
