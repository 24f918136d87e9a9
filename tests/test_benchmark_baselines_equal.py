"""The baselines that benchmarks/{pfld_speed,render_speed,widerface_eval_speed,recognition_heads,suppression_speed}.py
time the library against compute what the library computes (each benchmark checks it again before timing)."""

from __future__ import annotations

import pytest
import torch

from benchmark_module import benchmark
from facelearn.landmarks.pfld import PFLDConfig, pfld_pair
from facelearn.weights import IMAGENET


@pytest.mark.parametrize("training", [False, True])
def test_pfld_former_forward_converting_inside_is_preprocess_then_forward(training):
    """ImageNet's convention, so that the conversion is not the identity that PFLD's own convention is."""
    bench = benchmark("pfld_speed")
    torch.manual_seed(0)
    pair = pfld_pair(PFLDConfig(0.25, input=IMAGENET))
    crops = torch.rand(3, 3, 112, 112)
    x = pair["pfld"].preprocess(crops)
    bench.check_same(pair, crops, x, training=training)  # raises if they differ
    with pytest.raises(AssertionError, match="differ"):
        bench.check_same(pair, crops, crops, training=training)  # the crops themselves are not the input


def test_dense_rasteriser_gives_the_librarys_image_silhouette_and_pairs():
    bench = benchmark("render_speed")
    from facelearn.data.synthface import TOPOLOGY
    from facelearn.detection.mesh.render import project, rasterize, shade, vertex_normals

    faces = torch.from_numpy(TOPOLOGY.triangles).long()
    mesh, camera, light = bench.batch_of_faces(2)
    cam, pts = project(mesh[..., :3], camera, 24)
    colours = shade(mesh[..., 3:], cam, vertex_normals(cam, faces), light)
    library = rasterize(pts, cam[..., 2], colours, faces, 24)
    dense = bench.rasterize_dense(pts, cam[..., 2], colours, faces, 24)
    assert dense.pairs == library.pairs > 0
    assert library.alpha.amax() > 0.5  # a face is drawn
    torch.testing.assert_close(dense.image, library.image, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dense.alpha, library.alpha, rtol=1e-4, atol=1e-5)


def test_evaluation_m_loop_gives_the_evaluators_pr_counts_and_ap():
    bench = benchmark("widerface_eval_speed")
    from facelearn.data.widerface import find_val_ground_truth, read_val_ground_truth
    from facelearn.detection.evaluation import evaluate

    gt = read_val_ground_truth(find_val_ground_truth())
    small = bench.subset(gt, list(gt.boxes)[::300])
    preds = {k: v for k, v in bench.synthetic_predictions(gt).items() if k in small.boxes}
    ap = bench.check_same(preds, small)  # raises if the counts or AP differ
    assert ap == evaluate(preds, small).ap and all(0 < a < 1 for a in ap.values())


def test_arcface_step_equals_the_one_hot_baseline_and_the_check_can_fail():
    bench = benchmark("recognition_heads")
    from facelearn.recognition.margins import ArcFaceHead

    torch.manual_seed(0)
    head = ArcFaceHead(16, 50)
    x = torch.randn(9, 16, requires_grad=True)
    labels = torch.randint(0, 50, (9,))
    bench.check_same(head, x, labels)
    head.s = 48.0  # not a power of two: the folded scale rounds differently, no longer bit for bit
    with pytest.raises(AssertionError, match="differ"):
        bench.check_same(head, x, labels)


def test_suppression_benchmark_pools_are_detects_and_torchvision_keeps_what_greedy_nms_keeps():
    bench = benchmark("suppression_speed")
    pools = bench.pools()
    assert len(pools) == 2
    for boxes, scores, iou in pools.values():
        assert len(boxes) > 1000 and iou == 0.4  # detect's NMS IoU, the evaluation threshold's thousands
        assert torch.equal(bench.greedy_nms(boxes, scores, iou), bench.nms(boxes, scores, iou))
