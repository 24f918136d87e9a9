"""``facelearn train pfld`` and ``facelearn eval landmarks`` end to end on a tiny WFLW folder, and prediction with
the mirrored crop (chapter "PFLD")."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facelearn.cli import main
from facelearn.data.wflw import LandmarkRecord, read_wflw, wflw_files, write_wflw
from facelearn.engine import load_checkpoint
from facelearn.landmarks import recipe as R
from test_landmarks_data import make_wflw


def test_eval_predictions_file(tmp_path, capsys):
    root = make_wflw(tmp_path, n_train=2, n_test=5)
    gt_file = wflw_files(root)["test"]
    gt = read_wflw(gt_file)
    rng = np.random.default_rng(0)
    pred = [LandmarkRecord(g.landmarks + rng.normal(0, 1, g.landmarks.shape).astype(np.float32), g.box,
                           g.attributes, g.image) for g in gt]
    write_wflw(pred, tmp_path / "pred.txt")
    assert main(["eval", "landmarks", "--pred", str(tmp_path / "pred.txt"), "--gt", str(gt_file), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    d = np.array([np.linalg.norm(g.landmarks[60] - g.landmarks[72]) for g in gt])
    want = np.mean([np.linalg.norm(p.landmarks - g.landmarks, axis=1).mean() / di for p, g, di in zip(pred, gt, d)])
    assert out["all"]["n"] == 5 and out["all"]["nme"] == pytest.approx(want, rel=1e-5)


def test_eval_bad_input_is_one_line_exit_2(tmp_path, capsys):
    root = make_wflw(tmp_path, n_train=2, n_test=3)
    gt_file = wflw_files(root)["test"]
    lines = gt_file.read_text().splitlines()
    (tmp_path / "short.txt").write_text("\n".join(lines[:2]) + "\n")
    assert main(["eval", "landmarks", "--pred", str(tmp_path / "short.txt"), "--gt", str(gt_file)]) == 2
    assert "2 faces but" in capsys.readouterr().err
    (tmp_path / "bad.txt").write_text(lines[0] + "\n" + lines[1][:-30] + "\n")
    assert main(["eval", "landmarks", "--pred", str(tmp_path / "bad.txt"), "--gt", str(gt_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.txt:2:" in err and len(err.splitlines()) == 1
    assert main(["eval", "landmarks", "--json"]) == 2


def test_train_then_eval_checkpoint(tmp_path, capsys):
    torch.set_num_threads(1)
    root = make_wflw(tmp_path / "data", n_train=8, n_test=3)
    out = tmp_path / "m.pt"
    resume = tmp_path / "trainer.pt"
    assert main(["train", "pfld", "--data", str(root), "--out", str(out), "--epochs", "2", "--device", "cpu",
                 "--resume", str(resume)]) == 0
    assert "test NME" in capsys.readouterr().out
    model = R.load(out)
    assert model.config.width == 0.25 and model.config.n_points == 98
    assert R.load(resume).config.width == 0.25 and not out.with_suffix(".trainer.pt").exists()
    assert main(["eval", "landmarks", "--checkpoint", str(out), "--data", str(root), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    records, images = R.load_split(root, "test")
    errors, again = R.evaluate(model, records, images)
    assert summary["all"]["nme"] == pytest.approx(float(errors.mean()))
    assert main(["eval", "landmarks", "--checkpoint", str(out), "--data", str(root), "--flip", "--json"]) == 0
    flipped = json.loads(capsys.readouterr().out)
    assert flipped["all"]["nme"] == pytest.approx(float(R.evaluate(model, records, images, flip=True)[0].mean()))
    assert main(["train", "pfld", "--data", str(root), "--out", str(out), "--epochs", "0"]) == 2


def test_train_records_how_the_attribute_weight_was_applied(tmp_path):
    torch.set_num_threads(1)
    root = make_wflw(tmp_path / "data", n_train=8, n_test=3)
    for attributes, level in (("loss", "zero"), ("sampling", "median")):
        out = tmp_path / f"{attributes}.pt"
        assert main(["train", "pfld", "--data", str(root), "--out", str(out), "--epochs", "1", "--device", "cpu",
                     "--attributes", attributes, "--level-pitch", level]) == 0
        state = load_checkpoint(out)
        assert (state["loss"], state["attributes"], state["level_pitch"]) == ("weighted", attributes, level)


def test_help_has_examples(capsys):
    for argv in (["train", "pfld", "--help"], ["eval", "landmarks", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "example:" in capsys.readouterr().out


class _FixedShape(torch.nn.Module):
    """A stand-in PFLD that predicts the same crop landmarks (in [0, 1]) for every input."""

    def __init__(self, points):
        super().__init__()
        self.points = torch.nn.Parameter(torch.as_tensor(points, dtype=torch.float32).reshape(1, -1))

    def preprocess(self, crops):
        return crops

    def forward(self, x):
        return self.points.expand(len(x), -1), None


def test_predict_with_flip_averages_the_mirrored_prediction(tmp_path):
    """The mirrored crop's prediction is mapped back by x → size − 1 − x and the mirror permutation (written
    out here from the WFLW point layout), then averaged with the plain one."""
    from facelearn.data.wflw import WFLW_FLIP
    from facelearn.landmarks.crops import apply_affine, invert_affine

    root = make_wflw(tmp_path, n_train=1, n_test=3)
    records, images = R.load_split(root, "test")
    data = R.LandmarkCrops(records, images, augment=False)
    points = np.random.default_rng(0).uniform(0.1, 0.9, (98, 2))
    model = _FixedShape(points)
    size = data.config.size
    mirrored = np.empty_like(points)
    for i in range(98):  # point i of the mirrored face is point WFLW_FLIP[i] of the original, reflected
        mirrored[i] = [(size - 1) / size - points[WFLW_FLIP[i], 0], points[WFLW_FLIP[i], 1]]
    plain, flipped = R.predict(model, data), R.predict(model, data, flip=True)
    for k in range(len(records)):
        to_image = invert_affine(data[k]["matrix"].numpy().astype(np.float64))
        assert np.allclose(plain[k], apply_affine(to_image, points * size), atol=1e-3)
        assert np.allclose(flipped[k], apply_affine(to_image, (points + mirrored) / 2 * size), atol=1e-3)
    assert np.allclose(WFLW_FLIP[WFLW_FLIP], np.arange(98)) and WFLW_FLIP[60] == 72 and WFLW_FLIP[96] == 97
