"""Test-time protocols: the pyramid chosen from the image size, and ``detect``'s default using it."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facelearn.detection.test_time import (LEARNT_FACES, MAX_SIDE, MIN_FACE, PROTOCOLS, in_band,
                                           pyramid_scales, scales_for)
from facelearn.detection.training import train_config

sides = st.integers(min_value=16, max_value=8000)


@settings(max_examples=200, deadline=None)
@given(sides, sides)
def test_pyramid_covers_small_to_whole_image_faces_without_enlarging_large_photos(h, w):
    scales = pyramid_scales(h, w)
    assert scales == pyramid_scales(h, w) and list(scales) == sorted(scales, reverse=True)
    lo, hi = LEARNT_FACES
    # never enlarges beyond MAX_SIDE, and an image already larger is never enlarged at all
    assert max(h, w) * scales[0] <= max(max(h, w), MAX_SIDE) + 1e-6
    if max(h, w) >= MAX_SIDE:
        assert scales[0] <= 1.0
    # the smallest face is shown at the smallest learnt size, unless that would enlarge beyond MAX_SIDE
    if max(h, w) * lo / MIN_FACE <= MAX_SIDE:
        assert MIN_FACE * scales[0] == pytest.approx(lo, rel=1e-3)
    # a face as tall as the short side fits the learnt band at the last factor
    assert min(h, w) * scales[-1] <= hi * (1 + 1e-3)
    # consecutive bands overlap: every face between them falls inside some [lo/s, hi/s]
    assert all(a / b <= hi / lo + 1e-6 for a, b in zip(scales, scales[1:]))


def test_pyramid_examples_and_bad_sizes():
    assert pyramid_scales(512, 512) == (1.6, 0.8, 0.4, 0.2)
    assert pyramid_scales(3000, 4000)[0] == 1.0
    assert pyramid_scales(20, 20) == (1.6,)
    for bad in ((0, 10), (10, -1)):
        with pytest.raises(ValueError):
            pyramid_scales(*bad)
    with pytest.raises(ValueError):
        pyramid_scales(100, 100, learnt=(64, 16))


def test_scales_for_and_the_named_protocols():
    assert scales_for(512, 512, None) == pyramid_scales(512, 512)
    assert scales_for(512, 512, 2) == (2.0,) and scales_for(512, 512, [1, 0.5]) == (1.0, 0.5)
    for bad in (0.0, (), (1.0, -2.0), float("nan"), "x"):
        with pytest.raises(ValueError, match="scale"):
            scales_for(10, 10, bad)
    # the quick recipe's SynthFace val figures use the protocol named after SynthFace, unchanged
    assert train_config("quick").test_time == {"scale": (1.5, 2.0, 2.5), "flip": True, "vote_iou": 0.4}
    assert PROTOCOLS["synthface"].keywords["scale"] == (1.5, 2.0, 2.5)
    assert PROTOCOLS["real"].keywords == {"scale": None, "flip": False, "vote_iou": None, "max_size": None}


def test_detect_defaults_to_the_pyramid_of_the_image_size():
    from test_detection_model import _OneFace

    from facelearn.detection.postprocess import detect

    model = _OneFace()
    image = np.zeros((96, 160, 3), np.uint8)
    det = detect(model, image)
    want = [(round(96 * s), round(160 * s)) for s in pyramid_scales(96, 160)]
    assert model.sizes == want and len(det) == 1


def test_each_pass_keeps_the_boxes_of_a_learnt_size():
    lo, hi = LEARNT_FACES
    boxes = torch.tensor([[0, 0, 10, lo - 0.5], [0, 0, 10, lo], [5, 5, 50, 5 + hi], [0, 0, 10, hi + 1]])
    assert in_band(boxes).tolist() == [False, True, True, False]
    from test_detection_model import _OneFace

    from facelearn.detection.postprocess import detect

    # the stand-in's face is half the input's height: 320 and 160 px at the first two passes of a 400 x 400
    # image (out of the band), 80 and 40 px at the last two; the box comes back once (NMS joins the two)
    model = _OneFace()
    det = detect(model, np.zeros((400, 400, 3), np.uint8))
    assert model.sizes == [(640, 640), (320, 320), (160, 160), (80, 80)] and len(det) == 1
    assert torch.allclose(det.boxes[0], torch.tensor([100.0, 120.0, 280.0, 320.0]), atol=1e-3)
    # an 18 x 18 image has one pass, at 1.6: the face is 14.4 px there, below the band, so it is dropped;
    # with the factor given explicitly nothing is filtered
    assert pyramid_scales(18, 18) == (1.6,) and len(detect(model, np.zeros((18, 18, 3), np.uint8))) == 0
    assert len(detect(model, np.zeros((18, 18, 3), np.uint8), scale=1.6)) == 1
