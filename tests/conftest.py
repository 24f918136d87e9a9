"""Shared test settings: every test runs on the CPU with its own FACELEARN_HOME."""

import os

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FACELEARN_HOME", str(tmp_path_factory.getbasetemp() / "facelearn_home"))
    monkeypatch.delenv("FACELEARN_DEVICE", raising=False)
    monkeypatch.delenv("FACELEARN_PROFILE", raising=False)
    yield


def pytest_collection_modifyitems(config, items):
    # The browser check needs the built book; `make test` runs it after the build (-m book).
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
