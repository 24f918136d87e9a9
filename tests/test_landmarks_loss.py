"""The PFLD loss against a direct loop over samples (chapter "PFLD", eq. 2)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facelearn.landmarks.loss import (CATEGORIES, LossConfig, PFLDObjective, PoseThresholds, angle_weight,
                                      attribute_weight, categories, category_weights, pfld_loss)
from facelearn.landmarks.pfld import PFLDConfig, pfld_pair


def loop_categories(yaw, pitch, attrs, th=PoseThresholds()):
    """Category membership of one sample, written out with Python comparisons in degrees."""
    y, p = math.degrees(yaw), math.degrees(pitch) - th.level
    profile, up, down = abs(y) >= th.profile, p >= th.up, p <= -th.down
    return [profile, not (profile or up or down), up, down, bool(attrs[1]), bool(attrs[4])]


def loop_loss(pred, target, pa, ta, attrs_all, distance="l2"):
    """PFLD eq. (2) with one Python loop over the M samples and inner sums written out."""
    members = [loop_categories(ta[m][0], ta[m][1], attrs_all[m]) for m in range(len(pred))]
    M = len(pred)
    omega = []
    for c in range(len(CATEGORIES)):
        count = sum(row[c] for row in members)
        omega.append(M / count if count else 0.0)
    total = 0.0
    for m in range(M):
        w_attr = sum(omega[c] for c in range(len(CATEGORIES)) if members[m][c])
        w_angle = sum(1 - math.cos(pa[m][k] - ta[m][k]) for k in range(3))
        if distance == "l2":
            d = sum((pred[m][i] - target[m][i]) ** 2 for i in range(len(pred[m])))
        else:
            d = sum(abs(pred[m][i] - target[m][i]) for i in range(len(pred[m])))
        total += w_attr * w_angle * d
    return total / M


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["l2", "l1"]), st.integers(1, 12))
def test_loss_matches_direct_loop(seed, distance, m):
    g = torch.Generator().manual_seed(seed)
    pred, target = torch.rand(m, 10, generator=g, dtype=torch.float64), torch.rand(m, 10, generator=g, dtype=torch.float64)
    ta = (torch.rand(m, 3, generator=g, dtype=torch.float64) - 0.5) * 2.0   # ±57°
    pa = (torch.rand(m, 3, generator=g, dtype=torch.float64) - 0.5) * 2.0
    attrs = (torch.rand(m, 6, generator=g) < 0.3).float()
    omega = category_weights(categories(ta, attrs))
    w = attribute_weight(categories(ta, attrs), omega)
    got = pfld_loss(pred, target, pa, ta, w, distance).item()
    want = loop_loss(pred.tolist(), target.tolist(), pa.tolist(), ta.tolist(), attrs.tolist(), distance)
    assert got == pytest.approx(want, rel=1e-6, abs=1e-12)  # ω is float32


def test_sample_without_attributes_gets_positive_weight():
    angles = torch.tensor([[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [0.0, 0.5, 0.0]])
    attrs = torch.zeros(3, 6)
    members = categories(angles, attrs)
    assert members.any(1).all()
    assert members[0].tolist() == [False, True, False, False, False, False]   # frontal
    w = attribute_weight(members, category_weights(members))
    assert (w > 0).all()
    # inverse frequency: each of the three categories holds one of three samples
    assert w.tolist() == pytest.approx([3.0, 3.0, 3.0])


def test_angles_are_radians():
    true = torch.zeros(1, 3)
    # a 90° error in one angle weighs 1 − cos(π/2) = 1; in degrees it would weigh 1 − cos(90 rad) ≈ 1.45
    assert angle_weight(torch.tensor([[math.pi / 2, 0.0, 0.0]]), true).item() == pytest.approx(1.0)
    assert angle_weight(torch.tensor([[0.1, -0.2, 0.3]]), true).item() == pytest.approx(
        sum(1 - math.cos(a) for a in (0.1, -0.2, 0.3)))
    profile = categories(torch.tensor([[math.radians(31), 0.0, 0.0]]), torch.zeros(1, 6))
    assert profile[0, 0] and not profile[0, 1]


def test_plain_loss_and_distance_switch():
    pred, target = torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[1.0, 2.0, 1.0, -1.0]])
    assert pfld_loss(pred, target).item() == pytest.approx(1 + 4 + 0 + 4)
    assert pfld_loss(pred, target, distance="l1").item() == pytest.approx(1 + 2 + 0 + 2)
    with pytest.raises(ValueError, match="'l2' or 'l1'"):
        pfld_loss(pred, target, distance="l3")


def test_empty_category_weight_is_zero():
    members = torch.tensor([[False, True, False, False, False, False]] * 4)
    omega = category_weights(members)
    assert omega.tolist() == [0, 1.0, 0, 0, 0, 0]


def test_gradient_reaches_auxiliary_net_and_matches_finite_differences():
    torch.manual_seed(0)
    model = pfld_pair(PFLDConfig(0.25)).double()
    model.eval()  # fixed BatchNorm statistics so finite differences see the same function
    batch = {"image": torch.rand(3, 3, 112, 112, dtype=torch.float64),
             "landmarks": torch.rand(3, 196, dtype=torch.float64),
             "angles": torch.tensor([[0.7, 0.0, 0.1], [0.0, 0.5, -0.2], [0.0, -0.1, 0.0]], dtype=torch.float64),
             "attributes": torch.tensor([[0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0], [0] * 6], dtype=torch.float64)}
    omega = category_weights(categories(batch["angles"], batch["attributes"])).double()
    objective = PFLDObjective(omega, LossConfig())
    loss, logs = objective(model, batch)
    loss.backward()
    p = model["aux"].head[1].bias
    assert p.grad is not None and p.grad.abs().sum() > 0
    eps = 1e-6
    for k in range(3):
        with torch.no_grad():
            p[k] += eps
            up = objective(model, batch)[0].item()
            p[k] -= 2 * eps
            down = objective(model, batch)[0].item()
            p[k] += eps
        assert p.grad[k].item() == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-9)
    plain_loss, plain_logs = PFLDObjective(omega, LossConfig(weighted=False))(model, batch)
    assert plain_loss.item() == pytest.approx(float(logs["plain"]))
    assert "angle_error_deg" in logs and torch.isfinite(logs["angle_error_deg"])


@pytest.mark.parametrize("level", [0.0, -12.0, 7.5])
def test_level_pitch_shifts_head_up_and_down(level):
    g = torch.Generator().manual_seed(3)
    angles = (torch.rand(200, 3, generator=g, dtype=torch.float64) - 0.5) * 1.6
    attrs = (torch.rand(200, 6, generator=g) < 0.3).float()
    th = PoseThresholds(level=level)
    got = categories(angles, attrs, th).tolist()
    want = [loop_categories(a[0], a[1], f, th) for a, f in zip(angles.tolist(), attrs.tolist())]
    assert got == want
    # 15° below level: head down when level is 7.5°, neither up nor down when level is 0°
    row = categories(torch.tensor([[0.0, math.radians(level - 15.0), 0.0]]), torch.zeros(1, 6),
                     PoseThresholds(down=10.0, level=level))
    assert row[0, 3] and not row[0, 1]


def test_loss_config_rejects_unknown_switches():
    with pytest.raises(ValueError, match="'loss' or 'sampling'"):
        LossConfig(attributes="batch")
    with pytest.raises(ValueError, match="'zero' or 'median'"):
        LossConfig(level_pitch="mean")


def test_sampling_faces_by_attribute_weight_has_the_same_expected_loss():
    """E over faces drawn ∝ a_m of the sampled objective (ā · γ' · d) = eq. (2) over the whole set."""
    torch.manual_seed(1)
    model = pfld_pair(PFLDConfig(0.25)).double().eval()
    batch = {"image": torch.rand(5, 3, 112, 112, dtype=torch.float64),
             "landmarks": torch.rand(5, 196, dtype=torch.float64),
             "angles": torch.tensor([[0.7, 0.0, 0.1], [0.0, 0.5, -0.2], [0.0, -0.1, 0.0], [-0.6, -0.5, 0.0],
                                     [0.1, 0.1, 0.1]], dtype=torch.float64),
             "attributes": torch.tensor([[0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 0], [0] * 6, [0] * 6,
                                         [0, 1, 0, 0, 1, 0]], dtype=torch.float64)}
    members = categories(batch["angles"], batch["attributes"])
    omega = category_weights(members).double()
    a = attribute_weight(members, omega)
    whole = PFLDObjective(omega, LossConfig(attributes="loss"))(model, batch)[0].item()
    sampled = PFLDObjective(omega, LossConfig(attributes="sampling"), mean_attribute_weight=a.mean().item())
    per_face = [sampled(model, {k: v[m:m + 1] for k, v in batch.items()})[0].item() for m in range(5)]
    expected = sum(p * loss for p, loss in zip((a / a.sum()).tolist(), per_face))
    assert expected == pytest.approx(whole, rel=1e-9)
    assert a.mean().item() == pytest.approx(int((omega > 0).sum()))  # ā = the number of non-empty categories


def test_attribute_statistics_measure_up_and_down_from_the_median_pitch():
    from facelearn.landmarks.recipe import attribute_statistics

    g = torch.Generator().manual_seed(5)
    angles = torch.randn(401, 3, generator=g) * 0.25
    angles[:, 1] -= math.radians(12.0)                     # every pitch read 12° low, as SynthFace's are
    attrs = (torch.rand(401, 6, generator=g) < 0.2).float()
    zero, omega0, _ = attribute_statistics(angles, attrs, LossConfig(level_pitch="zero"))
    level, omega, a = attribute_statistics(angles, attrs, LossConfig(level_pitch="median"))
    assert zero.level == 0.0
    assert level.level == pytest.approx(math.degrees(angles[:, 1].median().item()))
    assert omega.tolist() == pytest.approx(category_weights(categories(angles, attrs, level)).tolist())
    up, down = CATEGORIES.index("head up"), CATEGORIES.index("head down")
    assert omega0[up] > 2 * omega0[down]                     # the shifted pitches empty "head up" ...
    assert omega[up] < 2 * omega[down] and omega[down] < 2 * omega[up]   # ... measured from the median, balanced
    assert a.mean().item() == pytest.approx(int((omega > 0).sum()))
