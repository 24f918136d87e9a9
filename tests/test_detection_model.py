"""RetinaFace model, heads, loss with OHEM, post-processing (chapters "Context and detection modules" and
"Training and evaluating RetinaFace")."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from facelearn.detection import retinaface
from facelearn.detection.anchors import anchor_config, generate_anchors
from facelearn.detection.box_coding import cxcywh_to_xyxy, encode_boxes, encode_landmarks
from facelearn.detection.heads import TaskHead
from facelearn.detection.loss import LossConfig, MultiTaskLoss, ohem_mask
from facelearn.detection.postprocess import Detections, detect, postprocess
from facelearn.detection.ssh import SSH, receptive_field
from facelearn.models import count_parameters
from benchmark_module import benchmark


@pytest.mark.parametrize("name, expected", [("retinaface-mobilenet0.25", 426_608), ("retinaface-resnet50", 27_293_600)])
def test_parameter_counts_of_common_implementation(name, expected):
    assert count_parameters(retinaface.build(name)) == expected


def test_ssh_channel_split_and_receptive_field():
    ssh = SSH(16, 32)
    assert ssh.conv3[0].out_channels == 16 and ssh.conv5_2[0].out_channels == 8 and ssh.conv7_3[0].out_channels == 8
    assert [receptive_field([3] * n) for n in (1, 2, 3)] == [3, 5, 7]
    # empirical receptive field of the 7×7 branch: a single changed input pixel reaches ±3 cells
    torch.manual_seed(0)
    ssh.eval()
    x = torch.zeros(1, 16, 15, 15)
    base = ssh(x)
    x[0, :, 7, 7] = 1.0
    changed = (ssh(x) - base).abs().sum(dim=(0, 1)) > 0
    rows = changed.any(dim=1).nonzero().squeeze(1)
    assert rows.min() == 4 and rows.max() == 10


def test_ssh_rejects_bad_width():
    with pytest.raises(ValueError):
        SSH(8, 30)


@pytest.mark.parametrize("name", ["retinaface-mobilenet0.25", "retinaface-mobilenet0.25-paper"])
@pytest.mark.parametrize("hw", [(64, 64), (72, 100)])
def test_output_shapes_match_anchors(name, hw):
    model = retinaface.build(name).eval()
    out = model(torch.rand(2, 3, *hw))
    a = model.anchors(hw)
    assert out["cls"].shape == (2, len(a), 2) and out["box"].shape == (2, len(a), 4)
    assert out["landmarks"].shape == (2, len(a), 10)


def test_head_order_matches_anchor_order():
    # a head whose conv copies the position: output value for anchor (level, i, j, k) must equal the anchor's
    cfg = anchor_config("common")
    hw = (40, 56)
    head = TaskHead(2, cfg.anchors_per_location, 2)
    feats = []
    for (fh, fw), stride in zip(cfg.feature_sizes(hw), cfg.strides):
        ys, xs = torch.meshgrid(torch.arange(fh) + 0.5, torch.arange(fw) + 0.5, indexing="ij")
        feats.append(torch.stack([xs * stride, ys * stride])[None].float())
    for conv in head.convs:  # k copies of (x, y)
        conv.weight.data = torch.eye(2).repeat(conv.out_channels // 2, 1)[:, :, None, None]
        conv.bias.data.zero_()
    got = head(feats)[0]
    assert torch.allclose(got, generate_anchors(cfg, hw)[:, :2])


def test_fourth_task_head_is_one_entry():
    model = retinaface.build("retinaface-mobilenet0.25")
    model.heads["dense"] = TaskHead(64, model.anchor_config.anchors_per_location, 7)
    out = model(torch.rand(1, 3, 64, 64))
    assert out["dense"].shape == (1, len(model.anchors((64, 64))), 7)


def _reference_loss(outputs, anchors, boxes, landmarks, has, cfg):
    """The loss by direct loops over images and anchors (independent of the vectorised matcher)."""
    corners = cxcywh_to_xyxy(anchors)
    cls_sum, box_sum, pts_sum, n_pos, n_pts = 0.0, 0.0, 0.0, 0, 0
    for b in range(len(boxes)):
        labels, ces, face_of = [], [], []
        iou = box_iou(boxes[b], corners) if len(boxes[b]) else torch.zeros(0, len(anchors))
        forced = {int(iou[f].argmax()): f for f in range(len(boxes[b]))}
        for a in range(len(anchors)):
            best = float(iou[:, a].max()) if len(boxes[b]) else 0.0
            f = int(iou[:, a].argmax()) if len(boxes[b]) else 0
            label = 1 if best >= cfg.positive_iou else (0 if best < cfg.negative_iou else -1)
            if a in forced:
                label, f = 1, forced[a]
            labels.append(label)
            face_of.append(f)
            ces.append(float(F.cross_entropy(outputs["cls"][b, a][None], torch.tensor([int(label == 1)]))))
        pos = [a for a in range(len(anchors)) if labels[a] == 1]
        negs = sorted([a for a in range(len(anchors)) if labels[a] == 0], key=lambda a: -ces[a])
        if cfg.neg_pos_ratio is not None:
            k = max(int(np.ceil(len(pos) * cfg.neg_pos_ratio)), cfg.min_negatives)
            negs = negs[:k]
        cls_sum += sum(ces[a] for a in pos + negs)
        for a in pos:
            f = face_of[a]
            t = encode_boxes(boxes[b][f], anchors[a])
            box_sum += float(F.smooth_l1_loss(outputs["box"][b, a], t, reduction="sum"))
            if has[b][f]:
                t = encode_landmarks(landmarks[b][f], anchors[a])
                pts_sum += float(F.smooth_l1_loss(outputs["landmarks"][b, a], t, reduction="sum"))
                n_pts += 1
        n_pos += len(pos)
    n = max(n_pos, 1)
    return cls_sum / n + cfg.box_weight * box_sum / n + cfg.landmark_weight * pts_sum / max(n_pts, 1)


@pytest.mark.parametrize("ratio", [None, 3.0, 7.0])
def test_loss_matches_direct_loop(ratio):
    torch.manual_seed(1)
    anchors = generate_anchors(anchor_config("common"), (48, 48))  # 6·6·2 + 3·3·2 + 2·2·2 = 98 anchors
    a = len(anchors)
    outputs = {"cls": torch.randn(3, a, 2), "box": torch.randn(3, a, 4) * 0.5, "landmarks": torch.randn(3, a, 10)}
    boxes = [torch.tensor([[4.0, 6.0, 20.0, 24.0], [20.0, 10.0, 46.0, 40.0]]), torch.zeros(0, 4),
             torch.tensor([[0.0, 0.0, 47.0, 47.0]])]
    landmarks = [torch.rand(len(b), 5, 2) * 40 for b in boxes]
    has = [torch.tensor([True, False]), torch.zeros(0, dtype=torch.bool), torch.tensor([True])]
    cfg = LossConfig(neg_pos_ratio=ratio, min_negatives=4)
    loss, logs = MultiTaskLoss(cfg)(outputs, anchors, boxes, landmarks, has)
    assert float(loss) == pytest.approx(_reference_loss(outputs, anchors, boxes, landmarks, has, cfg), rel=1e-4)
    assert logs["positives"] > 0


def test_landmark_term_masked_without_landmarks():
    torch.manual_seed(2)
    anchors = generate_anchors(anchor_config("common"), (48, 48))
    outputs = {"cls": torch.randn(1, len(anchors), 2), "box": torch.randn(1, len(anchors), 4),
               "landmarks": torch.randn(1, len(anchors), 10, requires_grad=True)}
    boxes = [torch.tensor([[4.0, 6.0, 20.0, 24.0]])]
    loss, logs = MultiTaskLoss()(outputs, anchors, boxes, [torch.full((1, 5, 2), -1.0)], [torch.tensor([False])])
    loss.backward()
    assert logs["landmarks"] == 0.0 and float(outputs["landmarks"].grad.abs().sum()) == 0.0


@pytest.mark.parametrize("ratio", [1.0, 3.0, 7.0])
def test_ohem_keeps_ratio_of_hardest_negatives(ratio):
    torch.manual_seed(3)
    labels = torch.zeros(2, 500, dtype=torch.long)
    labels[0, :10] = 1
    labels[1, :4] = 1
    labels[:, 10:30] = -1
    loss = torch.rand(2, 500)
    used = ohem_mask(loss, labels, ratio, min_negatives=0)
    for b, p in enumerate((10, 4)):
        negs = used[b] & (labels[b] == 0)
        assert int(negs.sum()) == int(np.ceil(p * ratio))
        assert not (used[b] & (labels[b] == -1)).any() and used[b][labels[b] == 1].all()
        # the kept negatives are the hardest ones
        assert float(loss[b][negs].min()) >= float(loss[b][(labels[b] == 0) & ~negs].max())
    assert torch.equal(ohem_mask(loss, labels, None), labels >= 0)


def test_ohem_min_negatives_without_faces():
    labels = torch.zeros(1, 50, dtype=torch.long)
    assert int(ohem_mask(torch.rand(1, 50), labels, 3.0, min_negatives=5).sum()) == 5


def _former_ohem():
    """The former ``ohem_mask`` (two full argsorts): the baseline kept in benchmarks/retinaface_speed.py."""
    return benchmark("retinaface_speed").ohem_by_two_sorts


@pytest.mark.parametrize("levels", [None, 2, 5, 40])
def test_ohem_selects_exactly_as_the_two_argsorts_did_ties_included(levels):
    former = _former_ohem()
    gen = torch.Generator().manual_seed(levels or 0)
    for trial in range(60):
        b, a = 1 + trial % 5, int(torch.randint(1, 3000, (1,), generator=gen))
        labels = torch.randint(-1, 2, (b, a), generator=gen)
        labels[labels == 1] = torch.where(torch.rand(int((labels == 1).sum()), generator=gen) < 0.05, 1, 0)
        loss = torch.rand(b, a, generator=gen)
        if levels:  # few distinct values: ties everywhere, across the cut too
            loss = torch.floor(loss * levels) / levels
        if trial % 7 == 0:
            loss[0, torch.randint(0, a, (3,), generator=gen)] = float("nan")
        ratio = [None, 1.0, 3.0, 7.5][trial % 4]
        min_neg = [0, 8, 100][trial % 3]
        got, want = ohem_mask(loss, labels, ratio, min_neg), former(loss, labels, ratio, min_neg)
        assert torch.equal(got, want), (levels, trial)


def test_postprocess_recovers_encoded_faces():
    anchors = generate_anchors(anchor_config("common"), (64, 64))
    a = len(anchors)
    faces = torch.tensor([[10.0, 12.0, 30.0, 34.0], [34.0, 30.0, 60.0, 62.0]])
    cls = torch.full((1, a, 2), 0.0)
    cls[..., 0] = 5.0  # background everywhere …
    box = torch.zeros(1, a, 4)
    lm = torch.zeros(1, a, 10)
    pts = torch.rand(2, 5, 2) * 30 + 10
    for f, idx in enumerate((3, 40)):  # … except two anchors that predict the faces exactly
        cls[0, idx] = torch.tensor([0.0, 5.0])
        box[0, idx] = encode_boxes(faces[f], anchors[idx])
        lm[0, idx] = encode_landmarks(pts[f], anchors[idx])
    det = postprocess({"cls": cls, "box": box, "landmarks": lm}, anchors, score_threshold=0.5)[0]
    assert len(det) == 2
    order = det.boxes[:, 0].argsort()
    assert torch.allclose(det.boxes[order], faces, atol=1e-4)
    assert torch.allclose(det.landmarks[order], pts, atol=1e-4)


def test_detect_any_size_returns_image_coordinates(tmp_path):
    torch.manual_seed(0)
    model = retinaface.build("retinaface-mobilenet0.25")
    image = (np.random.default_rng(0).random((70, 123, 3)) * 255).astype(np.uint8)
    det = detect(model, image, score_threshold=0.0, max_size=64)
    assert len(det) > 0 and det.boxes.shape[1] == 4 and det.landmarks.shape[1:] == (5, 2)
    assert float(det.boxes[:, 0::2].max()) <= 123 and float(det.boxes[:, 1::2].max()) <= 70
    assert bool((det.scores[:-1] >= det.scores[1:]).all())
    with pytest.raises(ValueError):
        detect(model, np.zeros((10, 10)))


class _OneFace(torch.nn.Module):
    """A stand-in detector that sees one face covering the middle of whatever input it is given (its box
    and landmarks fixed as fractions of the input side), predicted by the anchor nearest to it."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.sizes = []

    def anchors(self, size, device=None):
        return generate_anchors(anchor_config("common"), size)

    def preprocess(self, images):
        return images  # it reads the [0, 1] images as they are

    def forward(self, x):
        h, w = x.shape[-2:]
        self.sizes.append((h, w))
        anchors = self.anchors((h, w))
        face = torch.tensor([0.25 * w, 0.3 * h, 0.7 * w, 0.8 * h])
        pts = torch.tensor([[0.4 * w, 0.45 * h]]).repeat(5, 1)
        idx = int(box_iou(face[None], cxcywh_to_xyxy(anchors)).argmax())
        cls = torch.zeros(1, len(anchors), 2)
        cls[..., 0] = 5.0
        cls[0, idx] = torch.tensor([0.0, 5.0])
        box = torch.zeros(1, len(anchors), 4)
        lm = torch.zeros(1, len(anchors), 10)
        box[0, idx] = encode_boxes(face, anchors[idx])
        lm[0, idx] = encode_landmarks(pts, anchors[idx])
        return {"cls": cls, "box": box, "landmarks": lm}


def test_detect_scale_resizes_the_input_and_maps_detections_back():
    model = _OneFace()
    image = np.zeros((96, 160, 3), np.uint8)
    want = torch.tensor([[0.25 * 160, 0.3 * 96, 0.7 * 160, 0.8 * 96]])
    for scale, size in ((1.0, (96, 160)), (2.0, (192, 320)), (0.5, (48, 80))):
        det = detect(model, image, scale=scale)
        assert model.sizes[-1] == size and len(det) == 1
        assert torch.allclose(det.boxes, want, atol=1e-3)
        assert torch.allclose(det.landmarks[0, 0], torch.tensor([64.0, 43.2]), atol=1e-3)
    detect(model, image, scale=2.0, max_size=200)  # the long side is capped after resizing
    assert model.sizes[-1] == (120, 200)
    det = detect(model, image, scale=(1.0, 1.5, 2.0))  # a pyramid: three passes, one face after joint NMS
    assert model.sizes[-3:] == [(96, 160), (144, 240), (192, 320)]
    assert len(det) == 1 and torch.allclose(det.boxes, want, atol=1e-3)
    for bad in (0.0, (), (1.0, -2.0)):
        with pytest.raises(ValueError, match="scale"):
            detect(model, image, scale=bad)


def test_detect_flip_mirrors_back_and_box_voting_averages():
    """The stand-in sees its face at the same fractions of the mirrored input, i.e. at x ↦ W − x of the
    original: the two passes overlap at IoU 0.8, NMS keeps one box, and voting at 0.4 averages the two (equal
    scores) — boxes and landmarks alike; the mirrored landmarks come back at W − x."""
    model = _OneFace()
    image = np.zeros((96, 160, 3), np.uint8)
    plain = torch.tensor([40.0, 28.8, 112.0, 76.8])
    mirrored = torch.tensor([48.0, 28.8, 120.0, 76.8])
    det = detect(model, image, scale=1.0, flip=True)
    assert model.sizes[-2:] == [(96, 160), (96, 160)] and len(det) == 1
    assert any(torch.allclose(det.boxes[0], b, atol=1e-3) for b in (plain, mirrored))
    det = detect(model, image, scale=1.0, flip=True, vote_iou=0.4)
    assert len(det) == 1 and torch.allclose(det.boxes[0], (plain + mirrored) / 2, atol=1e-3)
    assert torch.allclose(det.landmarks[0], torch.tensor([80.0, 43.2]).expand(5, 2), atol=1e-3)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="vote_iou"):
            detect(model, image, vote_iou=bad)


def _random_detections(gen: torch.Generator, n: int, width: float = 100.0) -> Detections:
    xy = torch.rand(n, 2, generator=gen) * width * 0.6
    wh = 5 + torch.rand(n, 2, generator=gen) * width * 0.3
    return Detections(torch.cat([xy, xy + wh], 1), torch.rand(n, generator=gen).sort(descending=True).values,
                      torch.rand(n, 5, 2, generator=gen) * width)


def test_mirrored_twice_is_the_identity_and_swaps_the_eyes():
    d = _random_detections(torch.Generator().manual_seed(0), 20)
    m = d.mirrored(100.0)
    assert bool((m.boxes[:, 2] > m.boxes[:, 0]).all())
    assert torch.allclose(m.landmarks[:, 0, 0], 100.0 - d.landmarks[:, 1, 0])  # left eye ← mirrored right eye
    again = m.mirrored(100.0)
    assert torch.allclose(again.boxes, d.boxes) and torch.allclose(again.landmarks, d.landmarks)
    absent = Detections(d.boxes, d.scores, torch.full_like(d.landmarks, -1.0))
    assert bool((absent.mirrored(100.0).landmarks == -1).all())


def test_box_vote_against_a_loop():
    from facelearn.detection.postprocess import box_vote

    pool = _random_detections(torch.Generator().manual_seed(1), 60)
    kept = pool.suppressed(0.4, 750)
    voted = box_vote(kept, pool, 0.4)
    assert torch.equal(voted.scores, kept.scores)
    for k in range(len(kept)):
        num, pts, den = torch.zeros(4), torch.zeros(5, 2), 0.0
        for j in range(len(pool)):
            if float(box_iou(kept.boxes[k:k + 1], pool.boxes[j:j + 1])) >= 0.4:
                num += pool.scores[j] * pool.boxes[j]
                pts += pool.scores[j] * pool.landmarks[j]
                den += float(pool.scores[j])
        assert torch.allclose(voted.boxes[k], num / den, atol=1e-4)
        assert torch.allclose(voted.landmarks[k], pts / den, atol=1e-4)
    assert len(box_vote(Detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 5, 2)), pool, 0.4)) == 0


def test_detections_scaled():
    d = Detections(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([0.9]), torch.ones(1, 5, 2))
    s = d.scaled(2.0, 3.0)
    assert s.boxes.tolist() == [[2.0, 6.0, 6.0, 12.0]] and s.landmarks[0, 0].tolist() == [2.0, 3.0]


def test_branch_footprints_and_effective_receptive_field():
    from facelearn.detection.ssh import branch_footprints, effective_receptive_field

    feet = branch_footprints(SSH(8, 16), size=11)
    assert {k: int(v.any(dim=1).sum()) for k, v in feet.items()} == {"3x3": 3, "5x5": 5, "7x7": 7}
    model = retinaface.build("retinaface-mobilenet0.25")
    erf = effective_receptive_field(model.features, (64, 64), 0)
    assert erf.shape == (64, 64) and float(erf.max()) == 1.0 and float(erf[32, 32]) > 0


def test_loss_balance_counts():
    from facelearn.detection.loss import loss_balance

    torch.manual_seed(0)
    anchors = generate_anchors(anchor_config("common"), (64, 64))
    outputs = {"cls": torch.randn(1, len(anchors), 2)}
    rows = loss_balance(outputs, anchors, [torch.tensor([[8.0, 8.0, 40.0, 40.0]])], [None, 3.0])
    assert rows[0]["positives"] == rows[1]["positives"] > 0
    assert rows[1]["negatives"] == 3 * rows[1]["positives"] < rows[0]["negatives"]
    assert rows[1]["negative_loss"] < rows[0]["negative_loss"]


def test_coverage_p2_reaches_small_faces():
    from facelearn.detection.anchors import coverage

    paper = coverage(anchor_config("paper"), [16.0, 10.0], (128, 128), samples=50)
    common = coverage(anchor_config("common"), [16.0], (128, 128), samples=50)
    assert paper["matchable"][0] == 1.0 and paper["matchable"][1] == 0.0  # 10 px < 16 px anchor: IoU ≤ 0.39
    assert common["matchable"][0] < 1.0  # stride 8 leaves 16-px faces off-centre


def test_the_benchmarks_former_in_forward_normalisation_is_preprocess_then_forward_bit_for_bit():
    """benchmarks/retinaface_speed.py times the former forward (ImageNet normalisation inside) against the
    library's (preprocessed input): both compute the same numbers."""
    bench = benchmark("retinaface_speed")
    torch.manual_seed(0)
    model = retinaface.build("retinaface-mobilenet0.25").eval()
    images = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        former, library = bench.forward_normalising_inside(model, images), model(model.preprocess(images))
        assert all(torch.equal(former[k], library[k]) for k in former)
        assert not torch.equal(model(images)["cls"], library["cls"])  # forward itself normalises nothing
