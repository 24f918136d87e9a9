"""greedy_nms keeps torchvision's boxes in torchvision's order, element for element: compiled and as the Python
function it is compiled from, on random sets made to be hard (ties, duplicates, touching edges, boxes of no or
negative size, one box covering all) and on the pool ``detect`` suppresses for a group photo; and it falls back
to torchvision where the grid cannot hold (non-finite boxes, a negative threshold)."""

import numpy as np
import pytest
import torch
from torchvision.ops import nms

from facelearn.detection import suppression
from facelearn.detection.suppression import greedy_nms


def _hard_sets(count: int, seed: int):
    """(boxes, scores, threshold) triples: sizes 1…300, ties in scores, rounded corners (duplicates and shared
    edges), a quarter of the boxes of negative width in some sets, one large box in others."""
    g = torch.Generator().manual_seed(seed)
    for trial in range(count):
        n = int(torch.randint(1, 300, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * 100
        wh = torch.rand(n, 2, generator=g) * (30.0 if trial % 2 else 3.0)
        if trial % 5 == 0:
            wh[: n // 4, trial % 2] *= -1
        boxes = torch.cat([xy, xy + wh], 1)
        if trial % 3 == 0:
            boxes = boxes.round()
        if trial % 7 == 0:
            boxes[0] = torch.tensor([-5.0, -5.0, 120.0, 120.0])
        levels = 10 if trial % 4 == 0 else 1_000_000
        scores = (torch.rand(n, generator=g) * levels).floor() / levels
        yield boxes, scores, [0.0, 0.3, 0.4, 0.7, 1.0][trial % 5]


def _python(boxes, scores, threshold, grid=suppression.GRID):
    """The uncompiled rule, as greedy_nms calls the compiled one."""
    order = scores.sort(stable=True, descending=True)[1]
    x1, y1, x2, y2 = (boxes[:, k].contiguous().numpy() for k in range(4))
    return torch.from_numpy(suppression._suppress(x1, y1, x2, y2, (x2 - x1) * (y2 - y1), order.numpy(),
                                                  threshold, grid))


def test_compiled_greedy_nms_keeps_torchvisions_boxes():
    pytest.importorskip("numba")
    for boxes, scores, t in _hard_sets(600, seed=0):
        assert torch.equal(greedy_nms(boxes, scores, t), nms(boxes, scores, t))
        doubles = boxes.double(), scores.double()
        assert torch.equal(greedy_nms(*doubles, t), nms(*doubles, t))


@pytest.mark.parametrize("grid", [1, 3, 8])
def test_python_rule_keeps_torchvisions_boxes_on_any_grid(grid):
    for boxes, scores, t in _hard_sets(60, seed=grid):
        assert torch.equal(_python(boxes, scores, t, grid), nms(boxes, scores, t))


def test_detects_pool_of_a_group_photo_is_suppressed_as_torchvision_does(monkeypatch):
    from pathlib import Path

    from facelearn import pipeline
    from facelearn.data.synthface.people import render_people_scene, sample_people
    from facelearn.detection import postprocess

    model, _ = pipeline.load_model("detection", Path(postprocess.__file__).parent / "checkpoints" /
                                   "retinaface_mnet025_quick.pt")
    rng = np.random.default_rng(0)
    scene, _ = render_people_scene(rng, sample_people(rng, 6), list(range(6)), width=640, height=480)
    pools = []
    monkeypatch.setattr(postprocess, "greedy_nms", lambda b, s, t: pools.append((b, s, t)) or nms(b, s, t))
    postprocess.detect(model, scene[:, :, ::-1].copy(), score_threshold=0.02)
    (boxes, scores, t), = pools
    assert len(boxes) > 2000  # the evaluation threshold's pool: thousands of candidates, hundreds kept
    kept = nms(boxes, scores, t)
    assert len(kept) > 300
    assert torch.equal(greedy_nms(boxes, scores, t), kept)
    assert torch.equal(_python(boxes, scores, t), kept)


def test_grid_cannot_hold_falls_back_to_torchvision(monkeypatch):
    calls = []
    monkeypatch.setattr(suppression, "nms", lambda *a: calls.append(a) or nms(*a))
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0], [1.0, 1.0, 11.0, 11.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert greedy_nms(boxes, scores, -0.1).tolist() == [0]  # every later box "overlaps" more than −0.1
    inf = boxes.clone()
    inf[1, 2] = float("inf")
    assert torch.equal(greedy_nms(inf, scores, 0.4), nms(inf, scores, 0.4))
    assert greedy_nms(boxes[:0], scores[:0], 0.4).tolist() == []
    assert len(calls) == 3
    if suppression._compiled() is not None:
        assert greedy_nms(boxes, scores, 0.4).tolist() == [0, 1] and len(calls) == 3


def test_without_numba_it_is_torchvisions_nms(monkeypatch):
    calls = []
    monkeypatch.setattr(suppression, "_COMPILED", None)
    monkeypatch.setattr(suppression, "nms", lambda *a: calls.append(a) or nms(*a))
    boxes, scores, t = next(_hard_sets(1, seed=5))
    assert torch.equal(greedy_nms(boxes, scores, t), nms(boxes, scores, t)) and len(calls) == 1
