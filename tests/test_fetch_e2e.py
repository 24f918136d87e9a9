"""Each chapter's ``full`` data path, end to end and offline: the ``facelearn fetch`` command the chapter's text
gives runs against a local mirror serving SynthFace packed as the real archives (with the registry's hashes
replaced by those archives' own, as a mirror of the real files would match the real ones), the ``full``
loaders read what it unpacked, and a few optimiser steps of the ``full`` recipe run on it (not its length)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shlex
from pathlib import Path

import pytest
from fetch_server import Mirror

from facelearn import cli, runtime
from facelearn.data import download
from facelearn.data.download import sha256_of
from facelearn.data.synthface import export_identities, export_wflw, export_widerface
from facelearn.data.synthface.archives import pack_identities, pack_wflw, pack_widerface

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    export_widerface(root / "w", n_train=2, n_val=2, image_size=160, seed=5, progress=False)
    export_wflw(root / "l", n_train=8, n_test=4, seed=5, progress=False)
    export_identities(root / "i", n_identities=2, images_per_identity=2, n_test_identities=20, image_size=112,
                      seed=5, progress=False)
    files = {**pack_widerface(root / "w", root / "m"), **pack_wflw(root / "l", root / "m"),
             **pack_identities(root / "i", root / "m")}
    return root / "m", files


@pytest.fixture
def mirror(served, tmp_path, monkeypatch):
    monkeypatch.setenv("FACELEARN_HOME", str(tmp_path / "home"))
    for res in download.REGISTRY.values():  # a mirror of the real files has the registry's hashes
        if res.sha256 is not None and res.filename in served[1]:
            monkeypatch.setitem(download.REGISTRY, res.name,
                                dataclasses.replace(res, sha256=sha256_of(served[1][res.filename]), md5=None))
    with Mirror(served[0], lifetime_s=300) as m:
        yield m, served[1]


def _fetch_command(notebook: str) -> list[str]:
    """The ``facelearn fetch …`` line of the chapter's ``full`` instructions (a markdown cell)."""
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    lines = re.findall(r"^facelearn fetch .*$", text, flags=re.M)
    assert lines, f"{notebook} names no `facelearn fetch` command"
    return shlex.split(lines[0])[1:]


def _run_fetch(notebook: str, mirror, files) -> None:
    argv = _fetch_command(notebook)
    if "--file" in argv:  # the archive a reader requested and downloaded: here, the mirror's copy
        i = argv.index("--file") + 1
        argv[i] = str(files[Path(argv[i]).name])
    assert cli.main(argv + ["--mirror", mirror.url, "--no-progress"]) == 0


def test_chapter_12_retinaface_full(mirror):
    from facelearn.data.widerface import find_val_ground_truth, read_val_ground_truth
    from facelearn.detection import training

    _run_fetch("12_training_retinaface.ipynb", *mirror)
    root = runtime.data_dir() / "widerface"
    assert find_val_ground_truth() == root / "wider_face_split"
    assert len(read_val_ground_truth(root / "wider_face_split").files) > 0
    cfg = training.train_config("full", epochs=1, batch_size=2, warmup_steps=0)
    history = training.train(cfg, root, device="cpu", progress=False).history
    assert len(history) == 1 and math.isfinite(history[0]["loss"])


def test_chapter_22_arcface_full(mirror):
    from facelearn.recognition import commands, training

    _run_fetch("22_cosface_arcface.ipynb", *mirror)
    root = runtime.data_dir() / "faces_emore"
    dataset, n_classes = commands.load_training_set(root / "train.rec", 112, progress=False)
    images, issame = commands.load_verification_set(root / "lfw.bin", 112, progress=False)
    assert (len(dataset), n_classes) == (4, 2) and images.shape[0] == 2 * len(issame)
    recipe = dataclasses.replace(training.RecognitionRecipe.full(), epochs=1, batch_size=4)  # one step of iResNet-50
    history = training.train(recipe, dataset, n_classes, device="cpu", progress=False).history
    assert len(history) == 1 and math.isfinite(history[0]["loss"])


def test_chapter_30_pfld_full(mirror):
    from facelearn.landmarks import recipe as R

    _run_fetch("30_pfld.ipynb", *mirror)
    root = runtime.data_dir() / "WFLW"
    records, images = R.load_split(root, "train")
    assert len(records) == 8 and images == root / "WFLW_images"
    # the full recipe with a batch these 8 faces fill, its crops made in this process (a GPU machine uses 4 workers)
    rec = dataclasses.replace(R.recipe("full"), epochs=1, batch_size=4, workers=0)
    history = R.train(rec, root, device="cpu", progress=False).history
    assert len(history) == 1 and math.isfinite(history[0]["loss"])
