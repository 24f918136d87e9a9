"""``--runtime onnxruntime``: detect, embed and landmarks from the exported graphs agree with PyTorch."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

onnxruntime = pytest.importorskip("onnxruntime", reason="the ONNX Runtime path needs the test extra (onnx, onnxruntime)")

from facelearn import pipeline as P  # noqa: E402
from facelearn.cli import main  # noqa: E402
from facelearn.data.synthface.people import render_people_scene, sample_people  # noqa: E402
from facelearn.detection.evaluation import read_prediction_file  # noqa: E402
from facelearn.onnx_export import OnnxRuntimeModel, with_runtime  # noqa: E402

PACKAGE = Path(__file__).resolve().parents[1] / "facelearn"
DETECTOR = str(PACKAGE / "detection/checkpoints/retinaface_mnet025_quick.pt")
ARCFACE = str(PACKAGE / "recognition/checkpoints/quick-arcface.pt")
PFLD = str(PACKAGE / "landmarks/checkpoints/pfld-quick.pt")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(5)
    people = sample_people(rng, 4)
    for name, who in (("a.jpg", [0, 1, 2]), ("b.jpg", [3])):
        cv2.imwrite(str(root / name), render_people_scene(rng, people, who)[0])
    return root


def test_the_runtime_model_gives_the_eager_outputs_in_the_same_structure():
    detector, _ = P.load_model("detection", DETECTOR)
    ort = with_runtime(detector, "detection", None, "onnxruntime")
    assert isinstance(ort, OnnxRuntimeModel) and with_runtime(detector, "detection", None, "torch") is detector
    x = torch.rand(1, 3, 100, 140, generator=torch.Generator().manual_seed(0))
    eager, graph = detector(x), ort(x)
    assert list(graph) == list(eager) and all((graph[k] - eager[k].detach()).abs().max() < 1e-4 for k in eager)
    assert torch.equal(ort.anchors((100, 140)), detector.anchors((100, 140)))
    pfld, size = P.load_model("landmarks", PFLD)
    crops = torch.rand(2, 3, size, size)
    assert all((a - b.detach()).abs().max() < 1e-4 for a, b in zip(with_runtime(pfld, "landmarks", size, "onnxruntime")(crops),
                                                                    pfld(crops)))
    with pytest.raises(ValueError, match="unknown runtime"):
        with_runtime(pfld, "landmarks", size, "tensorrt")


def test_the_session_runs_every_optimisation_with_the_threads_asked_for():
    pfld, size = P.load_model("landmarks", PFLD)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)  # the default follows PyTorch's thread count
            options = with_runtime(pfld, "landmarks", size, "onnxruntime").session.get_session_options()
            assert options.intra_op_num_threads == threads
    finally:
        torch.set_num_threads(before)
    options = with_runtime(pfld, "landmarks", size, "onnxruntime", threads=3).session.get_session_options()
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_train_and_eval_leave_the_stand_in_model_and_the_graph_in_eval_mode():
    detector, _ = P.load_model("detection", DETECTOR)
    ort = with_runtime(detector, "detection", None, "onnxruntime")
    x = detector.preprocess(torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(2)))
    assert ort.train() is ort and ort.training
    assert not detector.training and not any(m.training for m in detector.modules())
    eager, graph = detector(x), ort(x)  # the graph is the eval-mode network whatever the flag
    assert all((graph[k] - eager[k].detach()).abs().max() < 1e-4 for k in eager)
    assert ort.eval() is ort and not ort.training and not detector.training


def _run(argv):
    assert main(argv + ["--quiet"]) == 0


def test_detect_embed_landmarks_agree_with_pytorch_within_1e_4(scenes, tmp_path):
    results = {}
    for rt in ("torch", "onnxruntime"):
        out = tmp_path / rt
        _run(["detect", str(scenes), "--checkpoint", DETECTOR, "--out", str(out), "--threshold", "0.3", "--runtime", rt])
        _run(["embed", str(scenes), "--detect", DETECTOR, "--checkpoint", ARCFACE, "--out", str(out / "E.npy"),
              "--runtime", rt])
        _run(["landmarks", str(scenes), "--detect", DETECTOR, "--checkpoint", PFLD, "--out", str(out / "L.json"),
              "--runtime", rt])
        results[rt] = ({n: read_prediction_file(out / scenes.name / f"{n}.txt") for n in ("a", "b")},
                       np.load(out / "E.npy"), json.loads((out / "L.json").read_text()))
    (det_t, emb_t, lm_t), (det_o, emb_o, lm_o) = results["torch"], results["onnxruntime"]
    for n in det_t:  # boxes are written with 3 decimals, scores with 6
        assert det_t[n].shape == det_o[n].shape and len(det_t[n]) > 0
        assert np.abs(det_t[n][:, :4] - det_o[n][:, :4]).max() <= 1.1e-3 and np.abs(det_t[n][:, 4] - det_o[n][:, 4]).max() < 1e-4
    assert emb_t.shape == emb_o.shape == (4, emb_t.shape[1]) and np.abs(emb_t - emb_o).max() < 1e-4
    assert len(lm_t) == len(lm_o) == 4
    assert max(np.abs(np.array(a["landmarks"]) - np.array(b["landmarks"])).max() for a, b in zip(lm_t, lm_o)) <= 0.011
