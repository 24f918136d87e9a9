"""The shipped recognition checkpoints re-evaluated from the images against the figures they record.

Each ``checkpoints/recognition/quick-<loss>.pt`` was written by ``facelearn train recognition --preset quick
--loss <loss>`` (``make checkpoints``) with the verification accuracy it reached on the chapters' SynthFace
pairs; the chapters recompute that accuracy on every run, and this test checks that they will quote it.
"""

from __future__ import annotations

import pytest

from facelearn.recognition import training, verification

LOSSES = ("softmax", "triplet", "sphereface", "normface", "cosface", "arcface")


@pytest.fixture(scope="module")
def pairs():
    _, _, images, issame = training.synthface_identities(progress=False)
    return images, issame


@pytest.mark.slow
@pytest.mark.parametrize("loss", LOSSES)
def test_shipped_checkpoint_reproduces_its_accuracy(loss, pairs):
    path = training.shipped_checkpoint(loss)
    if not path.is_file():
        pytest.skip(f"{path} not shipped")
    assert path.stat().st_size <= 5e6
    model, recipe, extra = training.load_model(path)
    assert recipe.loss == loss and recipe.name == "quick"
    if "pairs_sha256" not in extra:
        pytest.skip(f"{path.name} records no SynthFace data fingerprint; regenerate it with `make checkpoints`")
    assert extra["pairs_sha256"] == training.synthface_pairs_sha256(), (
        "SynthFace's identity set changed since this checkpoint was trained: run `make checkpoints`")
    result = verification.verify(model, *pairs)
    assert result.accuracy == pytest.approx(extra["accuracy"], abs=1e-6)
