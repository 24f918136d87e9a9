"""Nonsense options, damaged files and foreign checkpoints through every ``facelearn`` command, in-process:
each ends with exit status 2 (1 when training stopped) and one line on stderr, never a traceback."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facelearn.cli import main

PACKAGE = Path(__file__).resolve().parents[1] / "facelearn"
DETECTOR = PACKAGE / "detection" / "checkpoints" / "retinaface_mnet025_quick.pt"
ARCFACE = PACKAGE / "recognition" / "checkpoints" / "quick-arcface.pt"
PFLD = PACKAGE / "landmarks" / "checkpoints" / "pfld-quick.pt"
FACE = "20 20 40 40 30 35 0 50 35 0 40 45 0 32 55 0 48 55 0 0.5"


def _one_line(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith(("training", "epoch"))]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _jpeg(path: Path, size: int = 96) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())
    return buf.tobytes()


@pytest.fixture
def wider(tmp_path) -> Path:
    """A four-image WIDER FACE training folder."""
    root = tmp_path / "wider"
    for i in range(4):
        _jpeg(root / "WIDER_train" / "images" / "0--A" / f"{i}.jpg")
    (root / "train").mkdir()
    (root / "train" / "label.txt").write_text("".join(f"# 0--A/{i}.jpg\n{FACE}\n" for i in range(4)))
    return root


TRAIN_R = ["train", "retinaface", "--no-eval", "--epochs", "1", "--batch-size", "2", "--image-size", "64"]

# (argv, the option the one-line message must name)
NONSENSE = [
    (["train", "retinaface", "--epochs", "-1"], "--epochs"),
    (["train", "retinaface", "--epochs", "two"], "--epochs"),
    (["train", "retinaface", "--image-size", "0"], "--image-size"),
    (["train", "retinaface", "--image-size", "16"], "--image-size"),
    (["train", "retinaface", "--batch-size", "0"], "--batch-size"),
    (["train", "retinaface", "--lr", "-0.1"], "--lr"),
    (["train", "retinaface", "--lr", "nan"], "--lr"),
    (["train", "retinaface", "--seed", "-3"], "--seed"),
    (["train", "retinaface", "--device", "tpu"], "--device"),
    (["train", "retinaface", "--data", "/no/such/folder"], "--data"),
    (["train", "recognition", "--out", "x.pt", "--epochs", "0"], "--epochs"),
    (["train", "recognition", "--out", "x.pt", "--s", "0"], "--s"),
    (["train", "recognition", "--out", "x.pt", "--m", "-0.5"], "--m"),
    (["train", "recognition", "--out", "x.pt", "--lr", "inf"], "--lr"),
    (["train", "recognition", "--out", "x.pt", "--val", "/no/such/pairs.txt"], "--val"),
    (["train", "pfld", "--out", "x.pt", "--epochs", "0"], "--epochs"),
    (["train", "pfld", "--out", "x.pt", "--data", "/no/such/wflw"], "--data"),
    (["train", "mesh-decoder", "--out", "x.pt", "--n-train", "0"], "--n-train"),
    (["eval", "verification", "--folds", "0"], "--folds"),
    (["eval", "verification", "--folds", "1"], "--folds"),
    (["eval", "verification", "--embeddings", "/no/such/E.npy"], "--embeddings"),
    (["eval", "verification", "--checkpoint", "/no/such/model.pt"], "--checkpoint"),
    (["eval", "widerface", "--pred", "/no/such/predictions"], "--pred"),
    (["eval", "widerface", "--pred", ".", "--gt", "/no/such/gt"], "--gt"),
    (["eval", "landmarks", "--pred", "/no/such/pred.txt"], "--pred"),
    (["detect", "/no/such/image.jpg", "--checkpoint", str(DETECTOR), "--out", "o"], "target"),
    (["detect", ".", "--checkpoint", "/no/such.pt", "--out", "o"], "--checkpoint"),
    (["detect", ".", "--checkpoint", str(DETECTOR), "--out", "o", "--max-size", "1"], "--max-size"),
    (["detect", ".", "--checkpoint", str(DETECTOR), "--out", "o", "--scale", "two"], "--scale"),
    (["detect", ".", "--checkpoint", str(DETECTOR), "--out", "o", "--threshold", "2"], "--threshold"),
    (["detect", ".", "--checkpoint", str(DETECTOR), "--out", "o", "--nms", "-1"], "--nms"),
    (["detect", ".", "--checkpoint", str(DETECTOR), "--out", "o", "--vote", "x"], "--vote"),
    (["synth", "widerface", "--out", "s", "--n-train", "0"], "--n-train"),
    (["synth", "widerface", "--out", "s", "--image-size", "-64"], "--image-size"),
    (["synth", "wflw", "--out", "s", "--n-test", "0"], "--n-test"),
    (["synth", "identities", "--out", "s", "--images-per-identity", "1"], "--images-per-identity"),
    (["embed", ".", "--checkpoint", str(ARCFACE), "--out", "E.npy", "--threshold", "-1"], "--threshold"),
    (["fetch", "wider_val", "--file", "/no/such/archive.zip"], "--file"),
    (["models", "--task", "detections"], "--task"),
]


@pytest.mark.parametrize("argv,option", NONSENSE, ids=[" ".join(a[:2] + [o]) for a, o in NONSENSE])
def test_nonsense_option_exits_2_naming_it(capsys, argv, option):
    assert main(argv) == 2
    _one_line(capsys, "error: argument", option)


@pytest.mark.parametrize("argv", [["info"], ["detect", ".", "--checkpoint", str(DETECTOR), "--out", "o"]])
def test_unknown_device_in_the_environment(monkeypatch, capsys, argv):
    monkeypatch.setenv("FACELEARN_DEVICE", "tpu")
    assert main(argv) == 2
    _one_line(capsys, "'tpu'", "FACELEARN_DEVICE")


@pytest.fixture
def tiny_bin(tmp_path) -> Path:
    jpg = _jpeg(tmp_path / "face.jpg", 32)
    path = tmp_path / "set.bin"
    path.write_bytes(pickle.dumps(([jpg] * 4, [True, False]), protocol=4))
    return path


def test_huge_learning_rate_ends_in_the_trainer_message(tmp_path, wider, capsys):
    checkpoint = tmp_path / "r.pt"
    assert main(TRAIN_R + ["--data", str(wider), "--resume", str(checkpoint), "--lr", "1e30"]) == 1
    _one_line(capsys, "training stopped", "not finite at iteration 0")
    assert not checkpoint.exists()


def test_bad_label_file_through_train(tmp_path, wider, capsys):
    (wider / "train" / "label.txt").write_text(f"# 0--A/0.jpg\n{FACE.replace('40', 'nan', 1)}\n")
    assert main(TRAIN_R + ["--data", str(wider), "--resume", str(tmp_path / "r.pt")]) == 2
    _one_line(capsys, "label.txt:2:", "finite")


def test_truncated_jpeg_through_detect(tmp_path, capsys):
    data = _jpeg(tmp_path / "img" / "0--A" / "a.jpg")
    (tmp_path / "img" / "0--A" / "a.jpg").write_bytes(data[: len(data) // 2])
    assert main(["detect", str(tmp_path / "img"), "--checkpoint", str(DETECTOR), "--out", str(tmp_path / "o"),
                 "--quiet"]) == 2
    _one_line(capsys, "a.jpg", "truncated JPEG")


def test_damaged_inputs_through_eval(tmp_path, tiny_bin, capsys):
    tiny_bin.write_bytes(pickle.dumps((5, [True]), protocol=4))
    assert main(["eval", "verification", "--data", str(tiny_bin), "--checkpoint", str(ARCFACE)]) == 2
    _one_line(capsys, "set.bin", "list of encoded images")
    from test_bad_input_readers import _write_gt  # the tiny val ground truth: event 0--A, images a and b

    (tmp_path / "gt").mkdir()
    _write_gt(tmp_path / "gt")
    (tmp_path / "pred" / "0--A").mkdir(parents=True)
    (tmp_path / "pred" / "0--A" / "b.txt").write_text("b\n1\n1 2 -3 4 0.9\n")
    assert main(["eval", "widerface", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--json"]) == 2
    _one_line(capsys, "b.txt:3:", "negative box size")


def test_non_finite_landmark_predictions_through_eval(tmp_path, capsys):
    tokens = [f"{10 + i % 50}.5" for i in range(196)] + ["5", "6", "90", "95"] + ["0"] * 6 + ["x/1.jpg"]
    gt = tmp_path / "gt.txt"
    gt.write_text(" ".join(tokens) + "\n")
    tokens[7] = "nan"
    pred = tmp_path / "pred.txt"
    pred.write_text(" ".join(tokens) + "\n")
    assert main(["eval", "landmarks", "--pred", str(pred), "--gt", str(gt)]) == 2
    _one_line(capsys, "pred.txt:1:", "finite")


def test_truncated_recordio_through_train(tmp_path, capsys):
    from facelearn.data import identities

    jpg = _jpeg(tmp_path / "f.jpg", 32)
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    identities.write_recordio(rec, idx, [identities.pack_record([1e10, 1e10], b"")]
                              + [identities.pack_record(i % 2, jpg, i + 1) for i in range(4)])
    assert main(["train", "recognition", "--data", str(rec), "--out", str(tmp_path / "m.pt"), "--epochs", "1"]) == 2
    _one_line(capsys, "train.rec", "header record says")


def test_damaged_embeddings_through_eval(tmp_path, capsys):
    same = tmp_path / "S.npy"
    np.save(same, np.array([True, False] * 10))
    cases = [(np.full((40, 4), np.nan), "E.npy", "NaN or infinite"), (np.array(["a"] * 40), "E.npy", "numeric"),
             (np.random.default_rng(0).normal(size=(38, 4)), "E.npy", "expected (40, D) embeddings")]
    for emb, name, message in cases:
        np.save(tmp_path / "E.npy", emb)
        assert main(["eval", "verification", "--embeddings", str(tmp_path / "E.npy"), "--issame", str(same)]) == 2
        _one_line(capsys, name, message)
    np.save(tmp_path / "E.npy", np.random.default_rng(0).normal(size=(40, 4)))
    for bad, message in [(np.arange(20) + 5, "expected (P,) booleans"), (b"", "not a plain .npy"),
                         (b"\x93NUMPY junk", "not a plain .npy")]:
        if isinstance(bad, bytes):
            same.write_bytes(bad)
        else:
            np.save(same, bad)
        assert main(["eval", "verification", "--embeddings", str(tmp_path / "E.npy"), "--issame", str(same)]) == 2
        _one_line(capsys, "S.npy", message)
