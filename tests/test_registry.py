"""The model registry, the preprocessing records and self-describing checkpoints (facelearn.registry,
facelearn.weights)."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import facelearn
from facelearn import registry
from facelearn.engine import Trainer, save_checkpoint
from facelearn.errors import DataError
from facelearn.models import PRESETS, count_parameters
from facelearn.weights import BGR_MEAN_SUBTRACTED, BGR_UNIT_112, IMAGENET, SIGNED, UNIT, Preprocess, Weights

SMALL = [p.name for p in PRESETS if p.name not in ("retinaface-resnet152-paper", "iresnet100")]


def _example(name: str) -> torch.Tensor:
    c, h, w = registry.preset(name).input_size
    h, w = (64, 64) if registry.preset(name).task == "detection" and name != "mesh-decoder" else (h, w)
    return torch.rand((2, c, h, w) if name != "mesh-decoder" else (2, w), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", SMALL)
def test_every_preset_saves_and_loads_back_with_no_other_argument(tmp_path, name):
    torch.manual_seed(0)
    model = facelearn.get_model(name).eval()
    path = registry.save(model, tmp_path / "m.pt", name, recipe="test")
    loaded = facelearn.load(path)
    assert type(loaded) is type(model) and not loaded.training
    x = _example(name)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert all(torch.equal(u, v) for u, v in zip(_tensors(a), _tensors(b)))


def _tensors(out) -> list:
    """A model's output as a list of tensors (a dict of heads, a tuple, or one tensor)."""
    return list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, tuple) else [out]


def test_list_models_is_the_model_table():
    assert facelearn.list_models() == [p.name for p in PRESETS]
    assert "retinaface-mobilenet0.25" in facelearn.list_models("detection")
    assert set(facelearn.list_models("recognition")) >= {"iresnet18", "iresnet34", "iresnet50", "iresnet100"}
    assert count_parameters(facelearn.get_model("retinaface-mobilenet0.25")) == 426_608


@pytest.mark.parametrize("name", [n for n, *_ in registry.SHIPPED])
def test_shipped_weights_are_registry_entries(name):
    w = facelearn.get_weights(name)
    assert w.path().is_file() and w.metrics, w
    model = facelearn.get_model(w.model, weights=name)
    assert not model.training
    own = {"detection": IMAGENET, "landmarks": UNIT, "recognition": SIGNED}[w.task]
    assert w.transforms() == w.preprocess == (own if own.size is None else replace(own, size=w.preprocess.size))
    record = model.config.input if hasattr(model, "config") else model.input  # recognition: the backbone's own
    assert record == w.preprocess  # every model carries the same record
    size = w.preprocess.size or ((96, 128) if w.task == "detection" else facelearn.models.preset(w.model).input_size[1:])
    images = np.random.default_rng(0).integers(0, 256, (2, *size, 3), dtype=np.uint8)
    with torch.no_grad():
        model(w.transforms()(images))  # the crops the weights were trained on go through the model as they are
    if w.task == "detection":
        assert w.preprocess == IMAGENET and w.measured_on.startswith("synthface")


def test_shipped_detector_reads_imagenet_normalised_rgb_bit_for_bit():
    """The input convention is data, applied by ``preprocess`` outside ``forward`` (which normalises nothing
    more); the shipped detector computes exactly what it computed before."""
    model = facelearn.get_model("retinaface-mobilenet0.25", weights="retinaface-mobilenet0.25.quick")
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    with torch.no_grad():
        c = model.body((x - mean) / std)
        feats = [m(p) for m, p in zip(model.ssh, model.fpn([c[k] for k in model.levels]))]
        by_hand = {task: head(feats) for task, head in model.heads.items()}
        out = model(model.preprocess(x))
        pixels = model(model.preprocess((x * 255).round().to(torch.uint8)))
        unit = model(model.preprocess((x * 255).round() / 255))
    assert all(torch.equal(out[k], by_hand[k]) for k in out)
    assert all(torch.equal(pixels[k], unit[k]) for k in out)  # uint8 pixels and [0, 1] give the same input


def test_preprocess_call_and_from_unit_agree_exactly():
    images = np.random.default_rng(0).integers(0, 256, (2, 9, 7, 3), dtype=np.uint8)
    unit = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    for pre in (IMAGENET, UNIT, Preprocess("RGB", 255.0, (0.5,) * 3, (0.5,) * 3), BGR_MEAN_SUBTRACTED):
        assert torch.equal(pre(images), pre.from_unit(unit)), pre
    bgr = torch.from_numpy(images[..., ::-1].copy()).permute(0, 3, 1, 2).float()
    assert torch.equal(BGR_MEAN_SUBTRACTED(images), bgr - torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1))
    assert torch.equal(Preprocess("RGB", 255.0, (0.5,) * 3, (0.5,) * 3)(list(images)), unit.sub(0.5).div(0.5))
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2)
    for pre in (IMAGENET, UNIT, BGR_MEAN_SUBTRACTED, BGR_UNIT_112.__class__("BGR", 255.0)):
        assert torch.equal(pre(tensor), pre(images)) and torch.equal(pre(tensor.float() / 255), pre(images)), pre
        assert torch.equal(pre(tensor[0]), pre(images[:1]))  # one (3, H, W) image
    with pytest.raises(ValueError, match="112×112"):
        BGR_UNIT_112(images)
    with pytest.raises(ValueError, match="112×112"):
        BGR_UNIT_112(tensor)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\) uint8 or float"):
        IMAGENET(tensor.long())
    with pytest.raises(ValueError, match="uint8 RGB"):
        IMAGENET(images.astype(np.float32))
    with pytest.raises(ValueError, match="channels"):
        Preprocess("GBR")


def test_trainer_checkpoint_describes_itself(tmp_path):
    from facelearn.landmarks.pfld import PFLDConfig, pfld_pair

    model = pfld_pair(PFLDConfig(0.25))
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda m, b: (m["pfld"](b)[0].sum(), {}),
                      device="cpu", meta=registry.metadata(model["pfld"], "pfld-0.25x", prefix="pfld."))
    trainer.save(tmp_path / "t.pt")
    loaded = facelearn.load(tmp_path / "t.pt")
    x = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(loaded(x)[0], model["pfld"].eval()(x)[0])


def test_checkpoint_of_another_task_is_refused_in_one_line():
    shipped = {task: facelearn.get_weights(name).path() for name, *_ in registry.SHIPPED
               for task in [registry.preset(facelearn.get_weights(name).model).task]}
    for held, path in shipped.items():
        for wanted in set(shipped) - {held}:
            with pytest.raises(DataError) as err:
                facelearn.load(path, task=wanted)
            model = registry.get_weights(next(n for n, m, f, _ in registry.SHIPPED if f in str(path))).model
            assert str(err.value) == f"{path}: holds a {held} model ({model}); expected a {wanted} model"


def test_file_without_a_description_is_refused(tmp_path):
    path = save_checkpoint({"model": {}, "preset": "retinaface-mobilenet0.25"}, tmp_path / "old.pt")
    with pytest.raises(DataError, match=r"old.pt: holds no facelearn model \(keys: model, preset\); expected "
                                        r"a facelearn model$"):
        facelearn.load(path)
    with pytest.raises(DataError, match="old.pt: not a readable"):
        (tmp_path / "old.pt").write_bytes(b"garbage")
        facelearn.load(path)


def test_nothing_is_downloaded_without_a_hash():
    w = Weights("x", "pfld-1x", "landmarks", BGR_UNIT_112, url="https://example.invalid/checkpoint.pth.tar")
    with pytest.raises(DataError, match="no SHA-256; pass sha256="):
        facelearn.get_model("pfld-1x", weights=w)
    w = facelearn.get_weights("biubug6-mobilenet0.25")
    with pytest.raises(DataError, match="download it by hand"):
        facelearn.get_model("retinaface-mobilenet0.25", weights=w, sha256="0" * 64)
    with pytest.raises(DataError, match="are for retinaface-mobilenet0.25, not retinaface-resnet50"):
        facelearn.get_model("retinaface-resnet50", weights=w)


def test_every_release_entry_is_described():
    from facelearn.releases import RELEASES

    for w in RELEASES:
        assert w.url and w.licence and w.format != "facelearn" and w.model in facelearn.list_models(), w
        assert w.preprocess in (BGR_MEAN_SUBTRACTED, SIGNED, BGR_UNIT_112)


def test_models_command_lists_the_weights(capsys):
    from facelearn.cli import main

    assert main(["models", "--weights", "--json", "--task", "detection"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == facelearn.list_weights("retinaface-mobilenet0.25") + \
        facelearn.list_weights("retinaface-resnet50")
    assert all(r["task"] == "detection" and r["source"] and r["licence"] for r in rows)
