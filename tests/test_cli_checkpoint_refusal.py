"""Every command that reads a model checkpoint, given a checkpoint of each other task: one line on stderr naming
the file, what it holds and what was expected, exit status 2 (no ``KeyError`` or ``AttributeError``
traceback). The checkpoints are tiny untrained ones written here through the registry."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import facelearn
from facelearn import registry
from facelearn.cli import main

#: task → the small model preset whose checkpoint stands for that task
MODELS = {"detection": "retinaface-mobilenet0.25", "recognition": "synthface-cnn", "landmarks": "pfld-0.25x"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """task → an inference checkpoint (registry save) of that task's small model."""
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    return {task: registry.save(facelearn.get_model(name), folder / f"{task}.pt", name)
            for task, name in MODELS.items()}


#: (command, task it expects): the argv given the checkpoint, the folder of inputs and the output folder
COMMANDS = {
    "detect": ("detection", lambda c, d, o: ["detect", str(d / "face.jpg"), "--checkpoint", str(c), "--out", str(o)]),
    "eval verification": ("recognition", lambda c, d, o: ["eval", "verification", "--data", str(d / "face.jpg"),
                                                          "--checkpoint", str(c)]),
    "eval landmarks": ("landmarks", lambda c, d, o: ["eval", "landmarks", "--checkpoint", str(c), "--data", str(d)]),
    "embed": ("recognition", lambda c, d, o: ["embed", str(d), "--checkpoint", str(c), "--out", str(o / "E.npy")]),
    "landmarks": ("landmarks", lambda c, d, o: ["landmarks", str(d), "--checkpoint", str(c), "--out",
                                                str(o / "L.json")]),
}


def _inputs(tmp_path):
    data = tmp_path / "in"
    data.mkdir()
    cv2.imwrite(str(data / "face.jpg"), np.full((64, 64, 3), 128, np.uint8))
    return data, tmp_path / "out"


def _refusal(capsys, path, held: str, wanted: str) -> None:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"{path}: holds a {held} model ({MODELS[held]}); expected a {wanted} model" in lines[0], lines[0]


@pytest.mark.parametrize("command,held", [(c, t) for c in sorted(COMMANDS) for t in MODELS if t != COMMANDS[c][0]])
def test_checkpoint_of_another_task_is_refused_in_one_line(tmp_path, capsys, checkpoints, command, held):
    wanted, argv = COMMANDS[command]
    data, out = _inputs(tmp_path)
    assert main(argv(checkpoints[held], data, out)) == 2
    _refusal(capsys, checkpoints[held], held, wanted)


@pytest.mark.parametrize("command", ["embed", "landmarks"])
@pytest.mark.parametrize("held", ["recognition", "landmarks"])
def test_detector_option_refuses_another_task(tmp_path, capsys, checkpoints, command, held):
    """``--detect`` reads a detector: a recognition or landmark checkpoint there is refused the same way."""
    own = checkpoints["recognition" if command == "embed" else "landmarks"]
    data, out = _inputs(tmp_path)
    assert main([command, str(data), "--checkpoint", str(own), "--detect", str(checkpoints[held]),
                 "--out", str(out / "x")]) == 2
    _refusal(capsys, checkpoints[held], held, "detection")


def _trainer_checkpoint(path, task: str):
    """A Trainer checkpoint of ``task``'s small model (its description stored as every trainer stores it)."""
    from facelearn.engine import Trainer

    model = facelearn.get_model(MODELS[task])
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda m, b: (m(b).sum(), {}),
                      device="cpu", meta=registry.metadata(model, MODELS[task]))
    return trainer.save(path)


#: train subcommand → (its task, the model its trainer checkpoints describe)
TRAIN = {"retinaface": ("detection", "retinaface-mobilenet0.25"), "recognition": ("recognition", "synthface-cnn"),
         "pfld": ("landmarks", "pfld-0.25x")}


@pytest.mark.parametrize("command", sorted(TRAIN))
def test_resume_from_another_task_is_refused_in_one_line(tmp_path, capsys, command):
    """``--resume`` in every ``train`` subcommand: a Trainer checkpoint of another task's model is refused."""
    from test_bad_input_cli import FACE, _jpeg
    from test_landmarks_data import make_wflw

    task, model = TRAIN[command]
    other = next(t for t in MODELS if t != task)
    resume = _trainer_checkpoint(tmp_path / f"{other}-trainer.pt", other)
    if command == "retinaface":
        data = tmp_path / "wider"
        for i in range(2):
            _jpeg(data / "WIDER_train" / "images" / "0--A" / f"{i}.jpg")
        (data / "train").mkdir()
        (data / "train" / "label.txt").write_text("".join(f"# 0--A/{i}.jpg\n{FACE}\n" for i in range(2)))
        extra = ["--no-eval", "--image-size", "64", "--batch-size", "2"]
    elif command == "recognition":
        data = tmp_path / "ids"
        for i in range(4):
            _jpeg(data / f"id{i % 2}" / f"{i}.jpg", 64)
        extra = ["--out", str(tmp_path / "m.pt"), "--batch-size", "2"]
    else:
        data = make_wflw(tmp_path / "wflw", n_train=4, n_test=1)
        extra = ["--out", str(tmp_path / "m.pt")]
    assert main(["train", command, "--data", str(data), "--resume", str(resume), "--epochs", "1", "--device", "cpu",
                 *extra]) == 2
    err = capsys.readouterr().err  # the data set's loading bar, then the refusal
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "it/s]" not in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"{resume}: holds" in lines[0] and MODELS[other] in lines[0], lines[0]
    assert f"expected a Trainer checkpoint of {model} to resume" in lines[0], lines[0]
