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
    edges = [[0.0, -0.0, 0.0005, 0.0015], [1e-7, 999.9995, 12.3456785, 2.5]]  # signed zero, halfway digits
    boxes = np.concatenate([rng.normal(0, 300, (200, 4)), edges])
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
def test_detect_gives_the_former_detections_bit_for_bit(scene, runtime, tmp_path):
    """Eager, and ONNX Runtime with its enlarged passes resized by PyTorch (``enlarge=False``), as the former
    ``detect`` ran them; with ONNX Runtime's own resizing, the eager detections within 1e-4."""
    model = P.load_model("detection", DETECTOR)[0]
    if runtime == "onnxruntime":
        pytest.importorskip("onnxruntime", reason="the ONNX Runtime path needs the test extra (onnx, onnxruntime)")
        from facelearn.onnx_export import OnnxRuntimeModel, example_input, export_onnx

        path = export_onnx(model, "detection", model.preprocess(example_input(None)), tmp_path / "detector.onnx")
        eager, model, enlarging = model, OnnxRuntimeModel(model, path, enlarge=False), OnnxRuntimeModel(model, path)
        assert model.enlarged_input(torch.rand(3, 4, 5), (8, 10)) is None
    for keywords in ({"score_threshold": 0.02}, {"score_threshold": 0.5},
                     {"score_threshold": 0.3, "scale": (1.0, 1.5), "flip": True, "vote_iou": 0.4}):
        got, want = detect(model, scene, **keywords), BENCH.former_detect(model, scene, **keywords)
        assert len(got) > 0
        _same(got, want)
        if runtime == "onnxruntime":
            a, b = detect(enlarging, scene, **keywords), detect(eager, scene, **keywords)
            assert len(a) == len(b)
            assert (a.scores - b.scores).abs().max() < 1e-5  # pixels: 1e-4 and a few float32 steps more
            assert torch.allclose(a.boxes, b.boxes, rtol=1e-6, atol=1e-4)
            assert torch.allclose(a.landmarks, b.landmarks, rtol=1e-6, atol=1e-4)


def test_onnx_runtime_enlarges_and_preprocesses_as_pytorch(tmp_path):
    pytest.importorskip("onnxruntime", reason="the ONNX Runtime path needs the test extra (onnx, onnxruntime)")
    import torch.nn.functional as F

    from facelearn.detection import retinaface
    from facelearn.onnx_export import OnnxRuntimeModel, example_input, export_onnx
    from facelearn.weights import BGR_MEAN_SUBTRACTED

    g = torch.Generator().manual_seed(0)
    for record in (None, BGR_MEAN_SUBTRACTED):  # facelearn's ImageNet RGB, and biubug6's BGR minus a mean, unscaled
        model = retinaface.build("retinaface-mobilenet0.25", **({"input": record} if record else {})).eval()
        path = export_onnx(model, "detection", model.preprocess(example_input(None)), tmp_path / "d.onnx")
        ort = OnnxRuntimeModel(model, path)
        for (h, w), size in (((30, 41), (48, 66)), ((97, 64), (155, 102)), ((20, 20), (20, 20))):
            x = (torch.randint(0, 256, (3, h, w), generator=g) / 255.0).float()
            want = model.preprocess(F.interpolate(x[None], size=size, mode="bilinear", align_corners=False))
            got = ort.enlarged_input(x, size)
            assert got.shape == want.shape == (1, 3, *size) and got.dtype == torch.float32
            assert (got - want).abs().max() < 1e-4 * max(1.0, float(want.abs().max()))


def test_read_rgb_gives_the_reversed_channels_of_read_bgr(scene, tmp_path):
    import cv2

    from facelearn.data.files import read_bgr, read_rgb
    from facelearn.errors import DataError

    for name in ("a.jpg", "a.png"):
        cv2.imwrite(str(tmp_path / name), scene)
        got = read_rgb(tmp_path / name)
        assert got.dtype == np.uint8 and got.flags["C_CONTIGUOUS"]
        assert np.array_equal(got, read_bgr(tmp_path / name)[:, :, ::-1])
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.jpg"):
        read_rgb(tmp_path / "bad.jpg")
