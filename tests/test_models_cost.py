"""facelearn.models.multiply_adds: hand-counted on a tiny network, and the same on the meta device as on the CPU."""

import torch
from torch import nn

from facelearn import models


def test_multiply_adds_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=4),
                        nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    conv = 8 * 4 * 4 * 3 * 3 * 3
    grouped = 8 * 4 * 4 * 2 * 3 * 3  # each output channel sees in_channels / groups = 2 inputs
    assert models.multiply_adds(net, (3, 4, 4)) == conv + grouped + 128 * 5
    assert net.training, "the model's mode is restored"


def test_multiply_adds_on_the_meta_device_equals_the_cpu_count():
    cpu = models.preset("pfld-0.25x").build()
    with torch.device("meta"):
        meta = models.preset("pfld-0.25x").build()
    assert next(meta.parameters()).is_meta
    assert models.multiply_adds(meta, (3, 112, 112)) == models.multiply_adds(cpu, (3, 112, 112)) > 0
