"""The code both runtimes share around the detector's network (candidates, anchors, the prediction file) computes
what its former implementation computed, bit for bit; the former versions are benchmarks/onnx_runtime_speed.py's
baselines."""

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark_module import benchmark
from facelearn import pipeline as P
from facelearn.data.synthface.people import render_people_scene, sample_people
from facelearn.detection.anchors import anchor_config, generate_anchors
from facelearn.detection.postprocess import candidates, detect
from facelearn.detection.predictions import write_prediction_file

BENCH = benchmark("onnx_runtime_speed")
DETECTOR = str(Path(__file__).resolve().parents[1] / "facelearn/detection/checkpoints/retinaface_mnet025_quick.pt")


def _same(a, b):
    assert len(a) == len(b)
    for x, y in ((a.boxes, b.boxes), (a.scores, b.scores), (a.landmarks, b.landmarks)):
        assert x.dtype == y.dtype and torch.equal(x, y)


@pytest.mark.parametrize("threshold", [0.0, 1e-6, 0.02, 0.5, 0.9, 0.985, 0.99, 0.999, 1.0, -0.5])
def test_candidates_are_the_former_ones_bit_for_bit(threshold):
    g = torch.Generator().manual_seed(int(abs(threshold) * 1000))
    for trial in range(6):
        a = int(torch.randint(1, 5000, (1,), generator=g))
        spread = [0.5, 3.0, 12.0][trial % 3]
        outputs = {"cls": torch.randn(2, a, 2, generator=g) * spread, "box": torch.randn(2, a, 4, generator=g),
                   "landmarks": torch.randn(2, a, 10, generator=g)}
        if trial == 4:  # non-finite logits, and logits near the threshold's logit
            outputs["cls"][0, :20] = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e30])[
                torch.arange(40) % 4].view(20, 2)
            if 0 < threshold < 1:
                edge = torch.log(torch.tensor(threshold / (1 - threshold)))
                outputs["cls"][1, :, 1] = outputs["cls"][1, :, 0] + edge + torch.randn(a, generator=g) * 1e-6
        if trial == 5:
            del outputs["landmarks"]
        anchors = torch.rand(a, 4, generator=g) * 100 + 1
        got = candidates(outputs, anchors, score_threshold=threshold, pre_nms_top_k=300)
        want = BENCH.former_candidates(outputs, anchors, score_threshold=threshold, pre_nms_top_k=300)
        for d, e in zip(got, want):
            _same(d, e)
    three = {"cls": torch.randn(1, 50, 3, generator=g), "box": torch.randn(1, 50, 4, generator=g)}  # no prefilter
    _same(candidates(three, anchors[:50], score_threshold=0.3)[0],
          BENCH.former_candidates(three, anchors[:50], score_threshold=0.3)[0])


def test_generate_anchors_is_the_former_computation_and_returns_a_copy():
    for name in ("common", "paper"):
        config = anchor_config(name)
        for size in ((64, 64), (97, 130), (768, 1024), (97, 130)):
            got = generate_anchors(config, size)
            assert torch.equal(got, BENCH.former_generate_anchors(config, size))
            got += 1  # the caller owns its copy: the next call is untouched
            assert torch.equal(generate_anchors(config, torch.Size(size)), BENCH.former_generate_anchors(config, size))


def test_the_prediction_file_has_the_former_bytes(tmp_path):
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.normal(0, 300, (200, 4)), [[0.0, -0.0, 0.0005, 0.0015], [1e-7, 999.9995, 12.3456785, 2.5]]])
    scores = np.concatenate([rng.random(200), [0.0000005, 1.0]]).astype(np.float32)
    for n in (0, 1, len(boxes)):
        write_prediction_file(tmp_path / "new.txt", "img", boxes[:n], scores[:n])
        BENCH.former_write_prediction_file(tmp_path / "old.txt", "img", boxes[:n], scores[:n])
        assert (tmp_path / "new.txt").read_bytes() == (tmp_path / "old.txt").read_bytes()


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(3)
    image, _ = render_people_scene(rng, sample_people(rng, 5), list(range(5)), width=400, height=300)
    return image[..., ::-1].copy()  # BGR as rendered → RGB


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_detect_gives_the_former_detections_bit_for_bit(scene, runtime):
    if runtime == "onnxruntime":
        pytest.importorskip("onnxruntime", reason="the ONNX Runtime path needs the test extra (onnx, onnxruntime)")
    from facelearn.onnx_export import with_runtime

    model = with_runtime(P.load_model("detection", DETECTOR)[0], "detection", None, runtime)
    for keywords in ({"score_threshold": 0.02}, {"score_threshold": 0.5},
                     {"score_threshold": 0.3, "scale": (1.0, 1.5), "flip": True, "vote_iou": 0.4}):
        got, want = detect(model, scene, **keywords), BENCH.former_detect(model, scene, **keywords)
        assert len(got) > 0
        _same(got, want)
