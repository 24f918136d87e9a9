"""ONNX export of every task's network, checked against PyTorch with ONNX Runtime."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="the ONNX export tests need the test extra (onnx, onnxruntime)")
pytest.importorskip("onnxruntime", reason="the ONNX export tests need the test extra (onnx, onnxruntime)")

import onnx  # noqa: E402

from facelearn.cli import main  # noqa: E402
from facelearn.onnx_export import export_onnx, largest_difference, load_for_export, run_onnx  # noqa: E402

PACKAGE = Path(__file__).resolve().parents[1] / "facelearn"
SHIPPED = {"detection": "detection/checkpoints/retinaface_mnet025_quick.pt",
           "recognition": "recognition/checkpoints/quick-arcface.pt",
           "landmarks": "landmarks/checkpoints/pfld-quick.pt",
           "mesh": "detection/checkpoints/mesh_decoder_quick.pt"}


@pytest.mark.parametrize("task", sorted(SHIPPED))
def test_export_matches_pytorch_within_1e_4(task, tmp_path):
    found, model, example = load_for_export(PACKAGE / SHIPPED[task])
    path = export_onnx(model, task, example, tmp_path / f"{task}.onnx")
    assert found == task
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["task"] == task and meta["input"]
    if task in ("detection", "landmarks"):  # the preprocessing outside the graph, as data
        assert json.loads(meta["preprocess"])["mean"] == list(model.config.input.mean)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, *example.shape[1:], generator=g) if task == "mesh" else torch.rand(3, *example.shape[1:], generator=g)
    assert largest_difference(model, path, x) < 1e-4  # a batch of 3 through a graph traced on 1


def test_one_detector_graph_serves_every_image_size(tmp_path):
    _, model, example = load_for_export(PACKAGE / SHIPPED["detection"])
    path = export_onnx(model, "detection", example, tmp_path / "d.onnx")
    for h, w in ((64, 64), (200, 296), (333, 127)):
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h))
        out = run_onnx(path, x)
        assert out[0].shape[1] == model.anchors((h, w)).shape[0]
        assert largest_difference(model, path, x) < 1e-4


def test_the_mesh_decoder_exports_its_laplacian_dense(tmp_path):
    _, decoder, example = load_for_export(PACKAGE / SHIPPED["mesh"])
    assert decoder.laplacian.is_sparse
    path = export_onnx(decoder, "mesh", example, tmp_path / "m.onnx")
    assert decoder.laplacian.is_sparse  # the model itself is left as it was
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "MatMul" in ops and not any("Sparse" in op for op in ops)


def test_export_command_and_its_bad_input(tmp_path, capsys):
    out = tmp_path / "pfld.onnx"
    assert main(["export", "onnx", "--checkpoint", str(PACKAGE / SHIPPED["landmarks"]), "--out", str(out), "--check"]) == 0
    assert out.is_file() and "max difference" in capsys.readouterr().out
    assert main(["export", "onnx", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
    [err] = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("facelearn export") and str(tmp_path / "missing.pt") in err and "no such" in err
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    assert main(["export", "onnx", "--checkpoint", str(other), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"facelearn export: error: {other}: holds ")
    with pytest.raises(ValueError, match="unknown task"):
        export_onnx(torch.nn.Linear(2, 2), "speech", torch.zeros(1, 2), tmp_path / "x.onnx")


REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "reference_models"


@pytest.mark.skipif(not (REFERENCE / "biubug6_mobilenet025").is_dir(),
                    reason="the reference-model fixtures (a shared folder beside the checkout) are absent")
def test_a_released_detector_exports_like_our_own(tmp_path):
    release = REFERENCE / "biubug6_mobilenet025" / "mobilenet0.25_like.pth"
    task, model, example = load_for_export(release)
    path = export_onnx(model, task, example, tmp_path / "biubug6.onnx")
    assert task == "detection"
    # the graph reads what the release's weights read (BGR − mean), named in its metadata; preprocess gives it
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["preprocess"]) == {"channels": "BGR", "divisor": 1.0, "mean": [104.0, 117.0, 123.0],
                                              "std": [1.0, 1.0, 1.0], "size": None}
    x = model.preprocess(torch.rand(1, 3, 120, 200, generator=torch.Generator().manual_seed(3)))
    assert largest_difference(model, path, x) < 1e-4
