"""An autograd function for the tests of the Trainer's finiteness checks (tests/test_engine.py,
tests/test_bad_input_training.py)."""

import torch


class NanGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose gradients are not finite."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))
