import json
import subprocess
import sys

import pytest

from facelearn import __version__
from facelearn.cli import build_parser, main


def run(*args):
    return subprocess.run([sys.executable, "-m", "facelearn.cli", *args], capture_output=True, text=True)


def test_version():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"facelearn {__version__}"


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["facelearn"] == __version__ and report["profile"] == "quick"


def test_models_json_lists_parameter_counts(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    # counted by hand: six 3x3 conv (no bias) + BN (2c) + PReLU (c) layers, then Linear(64*2*2 -> 2) at 16 px
    convs = [(1, 16), (16, 16), (16, 32), (32, 32), (32, 64), (64, 64)]
    by_hand = sum(9 * i * o + 3 * o for i, o in convs) + 64 * 2 * 2 * 2 + 2
    assert rows["digits-cnn-2d"]["parameters"] == by_hand == 72_754
    assert all(r["parameters"] > 0 and len(r["input_size"]) == 3 for r in rows.values())


def _all_parsers(parser, path=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield path + (name,), sub
                yield from _all_parsers(sub, path + (name,))


def test_every_subcommand_has_help_with_an_example():
    for path, sub in _all_parsers(build_parser()):
        text = sub.format_help()
        if any(a.__class__.__name__ == "_SubParsersAction" for a in sub._actions):
            continue  # a group: its members carry the examples
        assert "example:" in text and "facelearn " + path[0] in text, f"facelearn {' '.join(path)} --help lacks an example"


def test_bad_input_exits_nonzero_with_one_line(monkeypatch, capsys):
    monkeypatch.setenv("FACELEARN_PROFILE", "turbo")
    assert main(["info"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["facelearn info: error: unknown profile 'turbo': expected one of quick, full"]


def test_unknown_command_is_rejected():
    r = run("frobnicate")
    assert r.returncode == 2 and "invalid choice" in r.stderr
