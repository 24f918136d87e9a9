"""PFLD and its auxiliary net: shapes, multi-scale fusion, parameter counts (chapter "PFLD")."""

from __future__ import annotations

import pytest
import torch

from facelearn.landmarks.pfld import PFLD, AuxiliaryNet, PFLDConfig, pfld_pair
from facelearn.models import count_parameters, preset


def test_parameter_counts_match_the_paper_layout():
    assert count_parameters(preset("pfld-1x").build()) == pytest.approx(1.26e6, rel=0.01)
    assert count_parameters(preset("pfld-aux-1x").build()) == pytest.approx(0.46e6, rel=0.01)
    assert count_parameters(preset("pfld-0.25x").build()) < count_parameters(preset("pfld-1x").build()) / 8


@pytest.mark.parametrize("width, points", [(0.25, 98), (1.0, 68)])
def test_shapes_and_scales(width, points):
    cfg = PFLDConfig(width, points)
    model, aux = PFLD(cfg).eval(), AuxiliaryNet(cfg).eval()
    seen = {}
    model.s1.register_forward_hook(lambda m, i, o: seen.__setitem__("s1", o.shape))
    model.s2.register_forward_hook(lambda m, i, o: seen.__setitem__("s2", o.shape))
    model.s3.register_forward_hook(lambda m, i, o: seen.__setitem__("s3", o.shape))
    with torch.no_grad():
        lm, feature = model(torch.rand(2, 3, 112, 112))
        angles = aux(feature)
    assert lm.shape == (2, 2 * points) and angles.shape == (2, 3)
    assert feature.shape == (2, cfg.channels(64), 28, 28)
    assert seen["s1"][2:] == (14, 14) and seen["s2"][2:] == (7, 7) and seen["s3"][2:] == (1, 1)
    assert model.fc.in_features == cfg.channels(16) + cfg.channels(32) + cfg.channels(128)


def test_fusion_uses_every_scale():
    torch.manual_seed(0)
    model = PFLD(PFLDConfig(0.25)).eval()
    x = torch.rand(1, 3, 112, 112)
    model(x)[0].sum().backward()
    k1, k2 = model.s1.body[0][0].weight.grad, model.s3[0].weight.grad
    assert k1.abs().sum() > 0 and k2.abs().sum() > 0
    base = model.fc.weight.grad
    n1, n2 = model.config.channels(16), model.config.channels(32)
    assert base[:, :n1].abs().sum() > 0 and base[:, n1:n1 + n2].abs().sum() > 0 and base[:, n1 + n2:].abs().sum() > 0


def test_pair_and_dtype_follow_input():
    pair = pfld_pair(PFLDConfig(0.25)).double().eval()
    lm, f = pair["pfld"](torch.rand(1, 3, 112, 112, dtype=torch.float64))
    assert lm.dtype == torch.float64 and pair["aux"](f).dtype == torch.float64
