"""Anchors, box/landmark coding, IoU and matching (chapter "Anchors, pyramids and tiny faces")."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import box_iou

from facelearn.detection.anchors import anchor_config, anchor_levels, best_anchor_iou, generate_anchors
from facelearn.detection.box_coding import (cxcywh_to_xyxy, decode_boxes, decode_landmarks, encode_boxes,
                                            encode_landmarks, xyxy_to_cxcywh)
from facelearn.detection.matching import IGNORE, NEGATIVE, POSITIVE, gather_targets, match, pad_boxes

coord = st.floats(0, 600, allow_nan=False, width=32)
size = st.floats(2, 400, allow_nan=False, width=32)


@st.composite
def xyxy(draw):
    x, y, w, h = draw(coord), draw(coord), draw(size), draw(size)
    return torch.tensor([x, y, x + w, y + h], dtype=torch.float64)


def test_common_anchor_count_640():
    cfg = anchor_config("common")
    assert cfg.count((640, 640)) == 16800
    assert generate_anchors(cfg, (640, 640)).shape == (16800, 4)


def test_paper_anchor_sizes_and_count():
    cfg = anchor_config("paper")
    sizes = [s for level in cfg.sizes for s in level]
    assert sizes[0] == 16 and 400 < sizes[-1] < 410
    ratios = [b / a for a, b in zip(sizes, sizes[1:])]
    assert all(r == pytest.approx(2 ** (1 / 3)) for r in ratios)  # one geometric ladder across levels
    assert cfg.count((640, 640)) == 3 * (160**2 + 80**2 + 40**2 + 20**2 + 10**2) == 102300


@pytest.mark.parametrize("hw", [(640, 480), (33, 97), (1, 1)])
def test_anchor_grid_positions(hw):
    cfg = anchor_config("common")
    a = generate_anchors(cfg, hw)
    assert len(a) == cfg.count(hw)
    levels = anchor_levels(cfg, hw)
    first = a[levels == 0]
    fh, fw = cfg.feature_sizes(hw)[0]
    assert (fh, fw) == (math.ceil(hw[0] / 8), math.ceil(hw[1] / 8))
    # anchor order: row, column, size — the first two share the centre of cell (0, 0)
    assert torch.equal(first[0], torch.tensor([4.0, 4.0, 16.0, 16.0]))
    assert torch.equal(first[1], torch.tensor([4.0, 4.0, 32.0, 32.0]))
    if fw > 1:
        assert torch.equal(first[2, :2], torch.tensor([12.0, 4.0]))


@given(xyxy())
def test_cxcywh_round_trip(b):
    assert torch.allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(b)), b, atol=1e-9)


@given(xyxy(), xyxy())
@settings(max_examples=200)
def test_encode_decode_round_trip(box, anchor_box):
    anchor = xyxy_to_cxcywh(anchor_box)
    t = encode_boxes(box, anchor)
    assert torch.allclose(decode_boxes(t, anchor), box, rtol=1e-9, atol=1e-7)
    pts = torch.stack([box[:2] + (box[2:] - box[:2]) * f for f in torch.linspace(0, 1, 5, dtype=torch.float64)])
    lt = encode_landmarks(pts, anchor)
    assert lt.shape == (10,)
    assert torch.allclose(decode_landmarks(lt, anchor), pts, rtol=1e-9, atol=1e-7)


def test_encode_matches_formula():
    anchor = torch.tensor([100.0, 50.0, 20.0, 40.0])
    box = torch.tensor([95.0, 40.0, 125.0, 80.0])  # centre (110, 60), size 30 x 40
    t = encode_boxes(box, anchor)
    expected = torch.tensor([(110 - 100) / (0.1 * 20), (60 - 50) / (0.1 * 40), math.log(30 / 20) / 0.2, 0.0])
    assert torch.allclose(t, expected)


@given(xyxy(), xyxy())
def test_iou_symmetric_and_bounded(a, b):
    ab, ba = box_iou(a[None], b[None]), box_iou(b[None], a[None])
    assert torch.allclose(ab, ba)
    assert 0 <= float(ab) <= 1 + 1e-12
    assert float(box_iou(a[None], a[None])) == pytest.approx(1.0)


def test_best_anchor_iou_exact_anchor():
    cfg = anchor_config("common")
    anchors = generate_anchors(cfg, (64, 64))
    face = cxcywh_to_xyxy(anchors[5:6])
    assert float(best_anchor_iou(face, anchors)[0]) == pytest.approx(1.0)


def _anchors(*rows):
    return xyxy_to_cxcywh(torch.tensor(rows, dtype=torch.float32))


def test_match_hand_case():
    # anchors as x1 y1 x2 y2: exact face, 0.4-overlap, far away, small inside
    anchors = _anchors([0, 0, 10, 10], [0, 0, 10, 14], [50, 50, 60, 60], [40, 40, 42, 42])
    face_a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    face_b = torch.tensor([[40.0, 40.0, 52.0, 52.0]])  # best anchor is [40,40,42,42] (IoU 4/144) → forced
    boxes, valid = pad_boxes([torch.cat([face_a, face_b]), torch.zeros(0, 4)])
    m = match(anchors, boxes, valid, positive_iou=0.5, negative_iou=0.3)
    # image 0: anchor0 IoU 1 → pos (face 0); anchor1 IoU 100/140 = .71 → pos; anchor2: IoU with face_b
    # 4/(144+100-4) = .017 → neg; anchor3 forced positive for face 1
    assert m.labels[0].tolist() == [POSITIVE, POSITIVE, NEGATIVE, POSITIVE]
    assert m.matched[0, [0, 1, 3]].tolist() == [0, 0, 1]
    assert m.labels[1].tolist() == [NEGATIVE] * 4  # image without faces: all negative


def test_match_forces_the_first_of_tied_best_anchors():
    # the face overlaps anchors 1 and 2 equally (IoU 25/125 = 0.2, a negative): the first one is forced
    anchors = _anchors([50, 50, 60, 60], [0, 0, 10, 10], [10, 0, 20, 10], [0, 0, 10, 10.5])
    boxes, valid = pad_boxes([torch.tensor([[5.0, 0.0, 15.0, 5.0]])])
    iou = box_iou(boxes[0], cxcywh_to_xyxy(anchors))[0]
    assert iou[1] == iou[2] > iou[3]
    assert match(anchors, boxes, valid).labels[0].tolist() == [NEGATIVE, POSITIVE, NEGATIVE, NEGATIVE]


def test_match_ignore_band():
    anchors = _anchors([0, 0, 10, 10], [0, 0, 10, 25])
    boxes, valid = pad_boxes([torch.tensor([[0.0, 0.0, 10.0, 10.0]])])
    m = match(anchors, boxes, valid, positive_iou=0.5, negative_iou=0.3)
    assert m.labels[0].tolist() == [POSITIVE, IGNORE]  # IoU 100/250 = 0.4 lies in [0.3, 0.5)
    m = match(anchors, boxes, valid, positive_iou=0.5, negative_iou=0.45)
    assert m.labels[0].tolist() == [POSITIVE, NEGATIVE]
    m = match(anchors, boxes, valid, positive_iou=0.4, negative_iou=0.3)
    assert m.labels[0].tolist() == [POSITIVE, POSITIVE]


def test_match_batch_equals_per_image():
    torch.manual_seed(0)
    anchors = generate_anchors(anchor_config("common"), (96, 96))
    faces = []
    for n in (3, 0, 5):
        xy = torch.rand(n, 2) * 70
        faces.append(torch.cat([xy, xy + 8 + torch.rand(n, 2) * 40], dim=1))
    boxes, valid = pad_boxes(faces)
    m = match(anchors, boxes, valid)
    for i, f in enumerate(faces):
        b1, v1 = pad_boxes([f])
        single = match(anchors, b1, v1)
        assert torch.equal(single.labels[0], m.labels[i])
        pos = m.labels[i] == POSITIVE
        assert torch.equal(single.matched[0][pos], m.matched[i][pos])
        assert pos.sum() >= len(f)  # every face keeps at least its best anchor


def test_gather_targets():
    values = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)
    matched = torch.tensor([[2, 0], [1, 1]])
    got = gather_targets(values, matched)
    assert torch.equal(got[0, 0], values[0, 2]) and torch.equal(got[1, 1], values[1, 1])


def test_match_min_best_iou_drops_faces_too_small_for_any_anchor():
    anchors = _anchors([0, 0, 10, 10], [40, 40, 42, 42])
    boxes, valid = pad_boxes([torch.tensor([[0.0, 0.0, 10.0, 10.0], [40.0, 40.0, 52.0, 52.0]])])
    assert match(anchors, boxes, valid).labels[0].tolist() == [POSITIVE, POSITIVE]  # paper: best anchor kept
    m = match(anchors, boxes, valid, min_best_iou=0.2)  # common implementation: IoU 4/144 < 0.2 → dropped
    assert m.labels[0].tolist() == [POSITIVE, NEGATIVE]
