"""NME, failure rate, CED and AUC (chapter "PFLD")."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facelearn.landmarks import metrics


def loop_nme(pred, target, a, b):
    out = []
    for p, t in zip(pred, target):
        d = math.dist(t[a], t[b])
        out.append(sum(math.dist(pi, ti) for pi, ti in zip(p, t)) / len(p) / d)
    return out


@pytest.mark.parametrize("n_points, eyes", [(98, (60, 72)), (68, (36, 45))])
def test_nme_matches_loop(n_points, eyes):
    rng = np.random.default_rng(0)
    target = rng.uniform(0, 100, (7, n_points, 2))
    pred = target + rng.normal(0, 2, target.shape)
    np.testing.assert_allclose(metrics.nme(pred, target), loop_nme(pred, target, *eyes), rtol=1e-12)
    np.testing.assert_allclose(metrics.nme(pred.reshape(7, -1), target.reshape(7, -1)),
                               loop_nme(pred, target, *eyes), rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.floats(0.1, 10), st.floats(-3, 3), st.integers(0, 100))
def test_nme_is_similarity_invariant(scale, angle, seed):
    rng = np.random.default_rng(seed)
    target = rng.uniform(0, 100, (3, 98, 2))
    pred = target + rng.normal(0, 2, target.shape)
    r = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) * scale
    np.testing.assert_allclose(metrics.nme(pred @ r.T + 5, target @ r.T + 5), metrics.nme(pred, target), rtol=1e-9)


def test_ced_fr_auc():
    errors = np.array([0.0, 0.02, 0.05, 0.2])
    x, y = metrics.ced(errors)
    assert y[0] == 0.25 and y[-1] == 0.75 and np.all(np.diff(y) >= 0)
    assert metrics.failure_rate(errors) == 0.25
    # AUC by hand: CED is 1/4 on [0, .02), 2/4 on [.02, .05), 3/4 on [.05, .1]
    want = (0.25 * 0.02 + 0.5 * 0.03 + 0.75 * 0.05) / 0.1
    assert metrics.auc(errors) == pytest.approx(want, abs=1e-3)
    assert metrics.auc(np.zeros(5)) == pytest.approx(1.0)
    assert metrics.auc(np.full(5, 0.5)) == 0.0


def test_summary_per_attribute():
    errors = np.array([0.01, 0.03, 0.2, 0.05])
    attrs = np.zeros((4, 6), int)
    attrs[2, 0] = attrs[3, 0] = 1   # pose
    attrs[1, 4] = 1                 # occlusion
    s = metrics.summary(errors, attrs)
    assert s["all"]["n"] == 4 and s["pose"]["nme"] == pytest.approx(0.125) and s["pose"]["fr"] == 0.5
    assert s["occlusion"]["n"] == 1 and "blur" not in s


def test_bad_shapes_and_degenerate_eyes():
    with pytest.raises(ValueError, match="differ"):
        metrics.nme(np.zeros((2, 98, 2)), np.zeros((2, 68, 2)))
    with pytest.raises(ValueError, match="outer-eye"):
        metrics.nme(np.zeros((1, 5, 2)), np.ones((1, 5, 2)))
    with pytest.raises(ValueError, match="inter-ocular distance 0"):
        metrics.nme(np.zeros((1, 98, 2)), np.zeros((1, 98, 2)))
