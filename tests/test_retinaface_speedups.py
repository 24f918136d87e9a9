"""The in-place SSH ReLU, the in-place FPN sum and the heads' single copy compute what the former forwards
(kept in benchmarks/retinaface_speed.py as the training step's baseline) computed, bit for bit: outputs, loss
and every gradient (chapter "Context and detection modules")."""

import pytest
import torch

from facelearn.detection import retinaface
from facelearn.detection.loss import MultiTaskLoss

from benchmark_module import benchmark


def _faces(n: int, size: int):
    g = torch.Generator().manual_seed(3)
    boxes, points, has = [], [], []
    for _ in range(n):
        xy = torch.rand(4, 2, generator=g) * size * 0.6
        wh = 8 + torch.rand(4, 1, generator=g) * size * 0.3
        b = torch.cat([xy, xy + wh], dim=1)
        boxes.append(b)
        points.append(b[:, None, :2] + wh[:, None] * torch.rand(4, 5, 2, generator=g))
        has.append(torch.tensor([True, True, False, True]))
    return boxes, points, has


def _step(model, images, anchors, faces):
    model.zero_grad(set_to_none=True)
    outputs = model(model.preprocess(images))
    loss, _ = MultiTaskLoss()(outputs, anchors, *faces)
    loss.backward()
    return outputs, loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("preset", ["retinaface-mobilenet0.25", "retinaface-mobilenet0.25-paper"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_training_step_equals_the_former_forwards_bit_for_bit(preset, channels_last):
    torch.manual_seed(0)
    model = retinaface.build(preset).train()
    former = benchmark("retinaface_speed").former_modules(model)
    images = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    if channels_last:
        model, former = (m.to(memory_format=torch.channels_last) for m in (model, former))
        images = images.contiguous(memory_format=torch.channels_last)
    anchors, faces = model.anchors((128, 128)), _faces(2, 128)
    out_a, loss_a, grads_a = _step(former, images, anchors, faces)
    out_b, loss_b, grads_b = _step(model, images, anchors, faces)
    assert out_a.keys() == out_b.keys()
    for k in out_a:
        assert out_b[k].shape == out_a[k].shape and out_b[k].is_contiguous()
        assert torch.equal(out_b[k], out_a[k]), k
    assert torch.equal(loss_b, loss_a) and bool(torch.isfinite(loss_b))
    assert len(grads_a) == len(grads_b) and all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))
    assert any(bool(g.abs().sum() > 0) for g in grads_b)


def test_heads_with_a_different_anchor_count_per_level_keep_the_anchor_order():
    from facelearn.detection.heads import TaskHead

    torch.manual_seed(0)
    head = TaskHead(8, (2, 3), 4)
    former = benchmark("retinaface_speed").former_head_forward
    feats = [torch.randn(2, 8, 6, 5), torch.randn(2, 8, 3, 2)]
    got = head(feats)
    assert got.shape == (2, 6 * 5 * 2 + 3 * 2 * 3, 4)
    assert torch.equal(got, former(head, feats))
    # position-major, anchor-minor: anchor 1 of cell (0, 1) of level 0 is row 1 * 2 + 1
    assert torch.equal(got[:, 3], head.convs[0](feats[0])[:, 4:8, 0, 1])
