"""Backbones: shapes and the well-known parameter counts."""

from __future__ import annotations

import pytest
import torch

from facelearn.models import count_parameters, preset
from facelearn.recognition import backbones


def test_parameter_counts_match_the_published_figures():
    assert count_parameters(backbones.iresnet50()) == pytest.approx(43.6e6, rel=0.01)  # insightface r50, 512-d
    assert count_parameters(backbones.mobilefacenet()) == pytest.approx(0.99e6, rel=0.03)  # Chen et al.: 0.99M
    assert count_parameters(backbones.iresnet100()) == pytest.approx(65.2e6, rel=0.01)


@pytest.mark.parametrize("name,dim", [("synthface-cnn", 128), ("mobilefacenet", 128), ("iresnet18", 512)])
def test_backbone_presets_embed(name, dim):
    p = preset(name)
    model = p.build().eval()
    with torch.no_grad():
        out = model(torch.randn(2, *p.input_size))
    assert out.shape == (2, dim) and torch.isfinite(out).all()
