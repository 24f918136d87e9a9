"""10-fold verification, thresholds and TAR@FAR against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facelearn.recognition import verification
from facelearn.recognition.backbones import SmallCNN


def test_best_threshold_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.random(40) < 0.5
        s = np.round(rng.normal(y * 1.0, 1.0), 1)
        t, acc = verification.best_threshold(s, y)
        brute = max(((s > c) == y).mean() for c in np.concatenate([s, [s.min() - 1]]))
        assert acc == pytest.approx(brute) and ((s > t) == y).mean() == pytest.approx(acc)


def test_tar_at_far_brute_force():
    rng = np.random.default_rng(1)
    y = rng.random(2000) < 0.5
    s = rng.normal(y * 2.0, 1.0)
    for far in (0.01, 0.1):
        tar, thr = verification.tar_at_far(s, y, far)
        assert (s[~y] > thr).mean() <= far
        assert tar == pytest.approx((s[y] > thr).mean())


def test_ten_fold_protocol_on_separable_and_random_scores():
    y = np.tile([True, False], 300)
    perfect = verification.evaluate(np.where(y, 0.9, 0.1), y)
    assert perfect.accuracy == 1.0 and perfect.std == 0.0 and 0.1 <= perfect.threshold < 0.9 and perfect.roc_auc == 1.0
    rng = np.random.default_rng(0)
    noise = verification.evaluate(rng.random(600), y)
    assert 0.35 < noise.accuracy < 0.65 and len(noise.fold_accuracies) == 10
    with pytest.raises(ValueError):
        verification.evaluate(np.ones(5), np.ones(5, bool))


def test_embed_sums_the_flip_and_normalises():
    torch.manual_seed(0)
    model = SmallCNN(embedding_dim=6, width=4, input_size=8).eval()
    x = torch.rand(5, 3, 8, 8)
    e = verification.embed(model, x)
    want = model((x - 0.5) / 0.5) + model((torch.flip(x, dims=[3]) - 0.5) / 0.5)  # [0, 1] → the [−1, 1] input
    torch.testing.assert_close(e, torch.nn.functional.normalize(want, dim=1).detach())
    assert torch.allclose(e.norm(dim=1), torch.ones(5))
    scores = verification.pair_scores(e[:4])
    assert scores == pytest.approx([float(e[0] @ e[1]), float(e[2] @ e[3])], abs=1e-6)


def test_embed_dedupes_repeated_images_without_changing_results():
    torch.manual_seed(1)
    model = SmallCNN(embedding_dim=6, width=4, input_size=8)
    x = torch.rand(4, 3, 8, 8)
    repeated = x[torch.tensor([0, 1, 0, 2, 3, 1, 2, 0])]
    torch.testing.assert_close(verification.embed(model, repeated), verification.embed(model, repeated, dedupe=False))
