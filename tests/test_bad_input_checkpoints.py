"""Checkpoints of another task or another model through the ``facelearn`` commands: refused with one line
naming the file, what it holds and what was expected."""

from __future__ import annotations

import pytest
import torch
from test_bad_input_cli import ARCFACE, DETECTOR, PFLD, TRAIN_R, _one_line, tiny_bin, wider  # noqa: F401 (fixtures)

from facelearn.cli import main


@pytest.mark.parametrize("command,checkpoint,held", [
    ("verification", DETECTOR, "detection"), ("verification", PFLD, "landmarks"),
    ("landmarks", DETECTOR, "detection"), ("landmarks", ARCFACE, "recognition"),
    ("detect", ARCFACE, "recognition"), ("detect", PFLD, "landmarks")])
def test_foreign_checkpoint_is_refused_in_one_line(tmp_path, tiny_bin, capsys, command, checkpoint, held):
    (tmp_path / "wflw").mkdir()
    argv = {"verification": ["eval", "verification", "--data", str(tiny_bin), "--checkpoint", str(checkpoint)],
            "landmarks": ["eval", "landmarks", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "wflw")],
            "detect": ["detect", str(tmp_path / "face.jpg"), "--checkpoint", str(checkpoint), "--out",
                       str(tmp_path / "o")]}[command]
    assert main(argv) == 2
    _one_line(capsys, checkpoint.name, held, "expected")


def test_trainer_checkpoint_of_another_model_is_refused(tmp_path, wider, capsys):
    from facelearn.engine import Trainer, make_loader

    other = tmp_path / "linear.pt"
    model = torch.nn.Linear(3, 2)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda m, b: (m(b[0]).sum(), {}),
                      checkpoint=other, device="cpu")
    trainer.fit(make_loader(torch.utils.data.TensorDataset(torch.ones(4, 3)), 2), 1, progress=False)
    assert main(TRAIN_R + ["--data", str(wider), "--resume", str(other)]) == 2
    _one_line(capsys, "linear.pt", "holds a Trainer checkpoint", "expected a Trainer checkpoint of retinaface")
    assert main(TRAIN_R + ["--data", str(wider), "--resume", str(DETECTOR)]) == 2
    _one_line(capsys, DETECTOR.name, "holds an inference checkpoint of retinaface", "expected a Trainer checkpoint")
