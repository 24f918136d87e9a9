"""The batched matching and multi-task loss against plain per-image loops, against the loss as it was, and
without host waits (chapters "Anchors, pyramids and tiny faces" and "Context and detection modules")."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision.ops import box_iou

from facelearn.detection import retinaface
from facelearn.detection.anchors import anchor_config, generate_anchors
from facelearn.detection.box_coding import cxcywh_to_xyxy
from facelearn.detection.loss import LossConfig, MultiTaskLoss, ohem_mask
from facelearn.detection.matching import IGNORE, NEGATIVE, POSITIVE, anchor_iou, match, pad_boxes
from facelearn.detection.training import make_loss_fn
from facelearn.engine import Trainer
from benchmark_module import benchmark
from host_reads import host_reads


def _faces(gen: torch.Generator, n: int, size: float, degenerate: bool) -> torch.Tensor:
    """n random boxes x1 y1 x2 y2 in a size × size image, some of them (with ``degenerate``) of zero width,
    zero height or a single point, or duplicated, or sticking out of the image."""
    xy = torch.rand(n, 2, generator=gen) * size * 0.9
    wh = 2 + torch.rand(n, 2, generator=gen) * size * 0.5
    boxes = torch.cat([xy, xy + wh], dim=1)
    if degenerate and n:
        kind = torch.randint(0, 5, (n,), generator=gen)
        boxes[kind == 0, 2] = boxes[kind == 0, 0]  # zero width
        boxes[kind == 1, 3] = boxes[kind == 1, 1]  # zero height
        boxes[kind == 2, 2:] = boxes[kind == 2, :2]  # a point
        boxes[kind == 3, :2] -= size * 0.3  # partly outside the image
        if n > 1:
            boxes[-1] = boxes[0]  # two faces on the same box: both want the same best anchor
    return boxes


def _batch(seed: int, anchors_hw: int = 96, degenerate: bool = True):
    """A random batch: images with no face, one face and many faces."""
    gen = torch.Generator().manual_seed(seed)
    counts = [0, 1, int(torch.randint(2, 14, (1,), generator=gen)), int(torch.randint(0, 4, (1,), generator=gen))]
    boxes = [_faces(gen, n, anchors_hw, degenerate) for n in counts]
    landmarks = [b[:, None, :2] + torch.rand(len(b), 5, 2, generator=gen) * 20 for b in boxes]
    has = [torch.rand(len(b), generator=gen) < 0.7 for b in boxes]
    return boxes, landmarks, has


def _match_by_loops(anchors, faces, positive_iou, negative_iou, min_best_iou):
    """One image, face by face and anchor by anchor: labels, matched face, best IoU (lists). The thresholds
    are compared as float32 numbers, as a float32 tensor compares with a Python float."""
    positive_iou, negative_iou, min_best_iou = torch.tensor([positive_iou, negative_iou, min_best_iou]).tolist()
    iou = box_iou(faces, cxcywh_to_xyxy(anchors)) if len(faces) else torch.zeros(0, len(anchors))
    labels, matched, best = [], [], []
    for a in range(len(anchors)):
        column = iou[:, a].tolist()
        top = max(column) if column else -1.0
        face = column.index(top) if column else 0  # the first face of the highest IoU
        labels.append(POSITIVE if top >= positive_iou else NEGATIVE if top < negative_iou else IGNORE)
        matched.append(face)
        best.append(max(top, 0.0))
    for f in range(len(faces)):  # each face keeps its best anchor (the first of equals); a later face wins
        row = iou[f].tolist()
        a = row.index(max(row))
        if row[a] >= min_best_iou:
            labels[a], matched[a], best[a] = POSITIVE, f, row[a]
    return labels, matched, best


@pytest.mark.parametrize("seed", range(12))
def test_anchor_iou_is_torchvisions_box_iou_bit_for_bit(seed):
    anchors = generate_anchors(anchor_config("paper"), (96, 96))
    boxes, valid = pad_boxes(_batch(seed)[0])
    got = anchor_iou(boxes, anchors)
    for b in range(len(boxes)):
        assert torch.equal(got[b], box_iou(boxes[b], cxcywh_to_xyxy(anchors)))


@pytest.mark.parametrize("seed", range(16))
def test_match_equals_the_per_image_loops(seed):
    anchors = generate_anchors(anchor_config(["common", "paper"][seed % 2]), (96, 96))
    faces = _batch(seed)[0]
    positive_iou, negative_iou = [(0.5, 0.3), (0.35, 0.35), (0.6, 0.2)][seed % 3]
    min_best_iou = [0.0, 0.2][seed % 2]
    m = match(anchors, *pad_boxes(faces), positive_iou=positive_iou, negative_iou=negative_iou,
              min_best_iou=min_best_iou)
    for b, f in enumerate(faces):
        labels, matched, best = _match_by_loops(anchors, f, positive_iou, negative_iou, min_best_iou)
        assert m.labels[b].tolist() == labels
        pos = m.labels[b] == POSITIVE
        assert m.matched[b][pos].tolist() == torch.tensor(matched)[pos].tolist()
        assert torch.equal(m.iou[b], torch.tensor(best))


def test_match_without_keep_best_is_the_thresholds_alone():
    anchors = generate_anchors(anchor_config("common"), (96, 96))
    boxes, valid = pad_boxes(_batch(3, degenerate=False)[0])
    m = match(anchors, boxes, valid, keep_best=False)
    iou = anchor_iou(boxes, anchors).masked_fill(~valid[..., None], -1.0).amax(dim=1)
    assert torch.equal(m.labels, torch.where(iou >= 0.5, POSITIVE, torch.where(iou < 0.3, NEGATIVE, IGNORE)))


def _loss_by_loops(outputs, anchors, boxes, landmarks, has, cfg):
    """The multi-task loss image by image: positives and OHEM's negatives picked by Python loops over the
    anchors, targets written out from box_coding eq. (1), (2) for each positive. Returns the loss and the
    terms and counts it logs; differentiable in ``outputs``."""
    v0, v1 = cfg.variances
    cls_sum = box_sum = pts_sum = 0.0
    n_pos = n_pts = n_neg = 0
    for b in range(len(boxes)):
        labels, matched, _ = _match_by_loops(anchors, boxes[b], cfg.positive_iou, cfg.negative_iou, cfg.min_best_iou)
        pos = [a for a in range(len(anchors)) if labels[a] == POSITIVE]
        ce = F.cross_entropy(outputs["cls"][b], torch.tensor([int(lab == POSITIVE) for lab in labels]),
                             reduction="none")
        negs = sorted((a for a in range(len(anchors)) if labels[a] == NEGATIVE), key=lambda a: -float(ce[a].detach()))
        if cfg.neg_pos_ratio is not None:
            negs = negs[:max(math.ceil(len(pos) * cfg.neg_pos_ratio), cfg.min_negatives)]
        cls_sum = cls_sum + ce[pos + negs].sum()
        n_neg += len(negs)
        for a in pos:
            acx, acy, aw, ah = anchors[a]
            x1, y1, x2, y2 = boxes[b][matched[a]]
            t = torch.stack([((x1 + x2) / 2 - acx) / (v0 * aw), ((y1 + y2) / 2 - acy) / (v0 * ah),
                             torch.log((x2 - x1) / aw) / v1, torch.log((y2 - y1) / ah) / v1])
            box_sum = box_sum + F.smooth_l1_loss(outputs["box"][b, a], t, reduction="sum")
            if has[b][matched[a]]:
                p = landmarks[b][matched[a]]
                t = torch.stack([(p[:, 0] - acx) / (v0 * aw), (p[:, 1] - acy) / (v0 * ah)], dim=1).flatten()
                pts_sum = pts_sum + F.smooth_l1_loss(outputs["landmarks"][b, a], t, reduction="sum")
                n_pts += 1
        n_pos += len(pos)
    loss_cls, loss_box = cls_sum / max(n_pos, 1), box_sum / max(n_pos, 1)
    loss_pts = pts_sum / max(n_pts, 1)
    loss = loss_cls + cfg.box_weight * loss_box + cfg.landmark_weight * loss_pts
    value = lambda t: float(t.detach()) if torch.is_tensor(t) else float(t)  # noqa: E731
    return loss, {"cls": value(loss_cls), "box": value(loss_box), "landmarks": value(loss_pts),
                  "positives": n_pos / len(boxes), "negatives": n_neg / len(boxes)}


def _outputs(gen: torch.Generator, b: int, a: int) -> dict[str, torch.Tensor]:
    return {k: (torch.randn(b, a, c, generator=gen) * s).requires_grad_()
            for k, c, s in (("cls", 2, 1.0), ("box", 4, 0.5), ("landmarks", 10, 1.0))}


@pytest.mark.parametrize("seed", range(8))
def test_loss_equals_the_per_image_loops(seed):
    anchors = generate_anchors(anchor_config("common"), (96, 96))
    boxes, landmarks, has = _batch(seed)
    # faces too small for any anchor are dropped (min_best_iou), so the degenerate ones never get a positive
    cfg = LossConfig(neg_pos_ratio=[3.0, 7.0, None][seed % 3], min_negatives=[8, 0][seed % 2], min_best_iou=0.2)
    outputs = _outputs(torch.Generator().manual_seed(100 + seed), len(boxes), len(anchors))
    loss, logs = MultiTaskLoss(cfg)(outputs, anchors, boxes, landmarks, has)
    want, want_logs = _loss_by_loops(outputs, anchors, boxes, landmarks, has, cfg)
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    for key, value in want_logs.items():
        assert float(logs[key]) == pytest.approx(value, rel=1e-6, abs=1e-12), key
    assert logs["positives"] > 0
    got_grads = torch.autograd.grad(loss, list(outputs.values()))
    want_grads = torch.autograd.grad(want, list(outputs.values()), allow_unused=True)
    for g, w in zip(got_grads, want_grads):  # the gradient of each term does not depend on the order of the sums
        torch.testing.assert_close(g, torch.zeros_like(g) if w is None else w, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("seed", range(40))
def test_loss_is_the_former_loss_gradients_bit_for_bit(seed):
    """Against the loss as it was (kept in the benchmark): the same classification term, counts and gradients
    bit for bit; the box and landmark sums, now taken over every anchor (zero where not positive), to the
    float32 rounding of a sum in another order."""
    former = benchmark("retinaface_speed").former_loss  # the loss as it was, its baseline
    gen = torch.Generator().manual_seed(seed)
    hw = [64, 96, 160][seed % 3]
    anchors = generate_anchors(anchor_config(["common", "paper"][seed % 2]), (hw, hw))
    boxes, landmarks, has = _batch(seed, hw, degenerate=seed % 4 == 0)
    if seed % 5 == 0:  # a batch without any face, and one where no face has landmarks
        boxes, landmarks, has = [b[:0] for b in boxes], [p[:0] for p in landmarks], [h[:0] for h in has]
    if seed % 5 == 1:
        has = [torch.zeros_like(h) for h in has]
    cfg = LossConfig(neg_pos_ratio=[3.0, 7.0, None, 1.0][seed % 4], min_negatives=[8, 0, 100][seed % 3],
                     min_best_iou=0.2 if seed % 4 == 0 else [0.0, 0.2][seed % 2])
    outputs = _outputs(gen, len(boxes), len(anchors))
    loss, logs = MultiTaskLoss(cfg)(outputs, anchors, boxes, landmarks, has)
    want, want_logs = former(outputs, anchors, boxes, landmarks, has, cfg)
    assert float(logs["cls"]) == want_logs["cls"]
    assert float(logs["positives"]) == want_logs["positives"] and float(logs["negatives"]) == want_logs["negatives"]
    for key in ("box", "landmarks"):
        assert float(logs[key]) == pytest.approx(want_logs[key], rel=1e-6, abs=0.0), key
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    for g, w in zip(torch.autograd.grad(loss, list(outputs.values())),
                    torch.autograd.grad(want, list(outputs.values()))):
        assert torch.equal(g, w)


def test_ohem_ranks_by_the_inverse_permutation_of_one_sort():
    gen = torch.Generator().manual_seed(0)
    loss = torch.rand(3, 500, generator=gen)
    labels = torch.randint(-1, 2, (3, 500), generator=gen)
    used = ohem_mask(loss, labels, 2.0, min_negatives=5)
    for b in range(3):
        negs = sorted((a for a in range(500) if labels[b, a] == NEGATIVE), key=lambda a: -float(loss[b, a]))
        k = min(max(2 * int((labels[b] == POSITIVE).sum()), 5), len(negs))
        assert sorted(negs[:k] + (labels[b] == POSITIVE).nonzero().flatten().tolist()) == \
            used[b].nonzero().flatten().tolist()


@pytest.fixture
def reads(monkeypatch):
    with host_reads(monkeypatch) as calls:
        yield calls


def test_the_counter_sees_host_reads(reads):
    x = torch.rand(5)
    float(x[0]), bool(x.any()), x[x > 0.5], x.nonzero(), x.tolist()
    assert {k: reads[k] for k in ("__float__", "__bool__", "__getitem__[bool]", "nonzero", "tolist")} == \
        dict.fromkeys(("__float__", "__bool__", "__getitem__[bool]", "nonzero", "tolist"), 1)


@pytest.mark.parametrize("faces", ["some", "none", "no landmarks"])
def test_the_loss_never_waits_for_the_device(reads, faces):
    anchors = generate_anchors(anchor_config("common"), (96, 96))
    boxes, landmarks, has = _batch(1, degenerate=False)
    if faces == "none":
        boxes, landmarks, has = [b[:0] for b in boxes], [p[:0] for p in landmarks], [h[:0] for h in has]
    if faces == "no landmarks":
        has = [torch.zeros_like(h) for h in has]
    outputs = _outputs(torch.Generator().manual_seed(0), len(boxes), len(anchors))
    reads.clear()
    loss, logs = MultiTaskLoss()(outputs, anchors, boxes, landmarks, has)
    loss.backward()
    assert sum(reads.values()) == 0, dict(reads)
    for key, value in logs.items():  # detached 0-d tensors on the outputs' device
        assert torch.is_tensor(value) and value.ndim == 0 and not value.requires_grad, key


def test_trainer_history_is_what_the_float_logs_gave():
    """A short run with the loss's tensor logs against the same run with them read to floats, as they were."""
    batches = []
    gen = torch.Generator().manual_seed(0)
    for i in range(3):
        boxes, landmarks, has = _batch(i, 64, degenerate=False)
        targets = [{"boxes": b, "landmarks": p, "landmark_mask": h} for b, p, h in zip(boxes, landmarks, has)]
        batches.append((torch.rand(len(boxes), 3, 64, 64, generator=gen), targets))
    loss_fn = make_loss_fn(LossConfig(min_best_iou=0.2))

    def floated(model, batch):
        loss, logs = loss_fn(model, batch)
        return loss, {k: float(v) for k, v in logs.items()}

    histories = []
    for fn in (loss_fn, floated):
        torch.manual_seed(0)
        model = retinaface.build("retinaface-mobilenet0.25")
        trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9), fn, device="cpu",
                          seed=0)
        history = trainer.fit(DataLoader(batches, batch_size=None), 2, progress=False)
        histories.append([{k: v for k, v in r.items() if k != "seconds"} for r in history])
    assert histories[0] == histories[1]
    assert set(histories[0][0]) >= {"loss", "cls", "box", "landmarks", "positives", "negatives"}
