"""``facelearn train … --amp/--channels-last/--compile``: each train subcommand hands the Trainer's speed
switches to its recipe, and leaves the recipe's own values when none is given."""

import pytest

from facelearn.cli import build_parser, main, trainer_switches


class Captured(Exception):
    """Raised by the stand-in ``train`` with the recipe it was given."""


def _capture(*args, **kwargs):
    raise Captured(args[0])


def _recipe(argv: list[str]):
    args = build_parser().parse_args(argv)
    with pytest.raises(Captured) as caught:
        args.func(args)
    return caught.value.args[0]


@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    """Each task's ``train`` replaced by :func:`_capture`, and the data each command reads before it."""
    from facelearn.detection import training as detection
    from facelearn.landmarks import recipe as landmarks
    from facelearn.recognition import commands as recognition_commands
    from facelearn.recognition import training as recognition

    for module in (detection, landmarks, recognition):
        monkeypatch.setattr(module, "train", _capture)
    monkeypatch.setattr(recognition_commands, "load_training_set", lambda *a, **k: ([], 2))
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "label.txt").write_text("")
    return {"retinaface": ["train", "retinaface", "--no-eval", "--data", str(tmp_path)],
            "pfld": ["train", "pfld", "--out", str(tmp_path / "p.pt"), "--data", str(tmp_path)],
            "recognition": ["train", "recognition", "--out", str(tmp_path / "r.pt"), "--data", str(tmp_path)]}


@pytest.mark.parametrize("command", ["retinaface", "pfld", "recognition"])
def test_train_passes_the_speed_switches_to_the_recipe(stand_ins, command):
    default = _recipe(stand_ins[command])
    assert (default.amp, default.channels_last, default.compile) == (True, False, False)
    fast = _recipe(stand_ins[command] + ["--amp", "bf16", "--channels-last", "--compile"])
    assert (fast.amp, fast.channels_last, fast.compile) == ("bf16", True, True)
    assert fast.with_(amp=True, channels_last=False, compile=False) == default
    assert _recipe(stand_ins[command] + ["--amp", "off"]).amp is False
    assert _recipe(stand_ins[command] + ["--amp", "auto"]).amp is True


def test_no_switch_changes_nothing():
    args = build_parser().parse_args(["train", "pfld", "--out", "x.pt"])
    assert trainer_switches(args) == {}


def test_an_unknown_amp_is_refused_in_one_line(capsys):
    assert main(["train", "pfld", "--out", "x.pt", "--amp", "fp8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--amp" in err and "bf16" in err
