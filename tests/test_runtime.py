import random

import numpy as np
import pytest
import torch

from facelearn import runtime


def test_profile_default_env_and_override(monkeypatch):
    assert runtime.profile() == "quick"
    monkeypatch.setenv("FACELEARN_PROFILE", "full")
    assert runtime.profile() == "full"
    assert runtime.profile("quick") == "quick"
    monkeypatch.setenv("FACELEARN_PROFILE", "fast")
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        runtime.profile()


def test_device_choice_and_override(monkeypatch):
    expected = "cuda" if torch.cuda.is_available() else ("mps" if runtime._mps_available() else "cpu")
    assert runtime.device().type == expected
    monkeypatch.setenv("FACELEARN_DEVICE", "cpu")
    assert runtime.device() == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            runtime.device("cuda")


def test_amp_dtype_is_none_on_cpu():
    assert runtime.amp_dtype(torch.device("cpu")) is None


def test_seed_everything_repeats_all_generators():
    runtime.seed_everything(123)
    a = (random.random(), np.random.rand(), torch.rand(3))
    runtime.seed_everything(123)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_folders_follow_facelearn_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELEARN_HOME", str(tmp_path / "fh"))
    assert runtime.home() == tmp_path / "fh"
    assert runtime.data_dir() == tmp_path / "fh" / "data" and runtime.data_dir().is_dir()
    assert runtime.cache_dir() == tmp_path / "fh" / "cache" and runtime.cache_dir().is_dir()
    monkeypatch.delenv("FACELEARN_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runtime.home() == tmp_path / "xdg" / "facelearn"


def test_info_reports_versions_device_profile_folders():
    report = runtime.info()
    for key in ("facelearn", "torch", "torchvision", "numpy", "device", "profile", "home", "data_dir", "cache_dir"):
        assert report[key]
    assert report["torch"] == torch.__version__
