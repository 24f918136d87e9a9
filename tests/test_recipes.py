"""One recipe protocol for the three tasks (facelearn.engine.recipe, facelearn.recipes): presets, the shared
optimiser, warm-up in steps, ``facelearn recipes``."""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from torch import nn

import facelearn
from facelearn import recipes, registry
from facelearn.cli import main
from facelearn.engine.recipe import Recipe, TrainResult, build_optimizer, parameter_groups

ALL = [(task, name) for task in recipes.TASKS for name in recipes.recipes(task)]


def test_every_task_keeps_its_presets_in_one_registry():
    assert facelearn.list_recipes() == [f"{t}/{n}" for t, n in ALL]
    for task, name in ALL:
        recipe = facelearn.get_recipe(task, name)
        assert isinstance(recipe, Recipe) and recipe.task == task and recipe.name == name
        assert recipe.model_name in facelearn.list_models(task)
        assert facelearn.get_recipe(task, name, epochs=3).epochs == 3 and recipe.epochs != 0
    with pytest.raises(ValueError, match=r"unknown landmarks recipe 'paper'; known: quick, full"):
        facelearn.get_recipe("landmarks", "paper")
    with pytest.raises(ValueError, match="unknown task"):
        facelearn.get_recipe("pose", "quick")


def test_the_task_modules_lookups_are_the_registry():
    from facelearn.detection.training import train_config
    from facelearn.landmarks.recipe import recipe
    from facelearn.recognition.training import RecognitionRecipe

    assert train_config("quick-dense", epochs=2) == facelearn.get_recipe("detection", "quick-dense", epochs=2)
    assert recipe("full") == facelearn.get_recipe("landmarks", "full")
    assert RecognitionRecipe.quick(loss="cosface") == facelearn.get_recipe("recognition", "quick", loss="cosface")
    assert RecognitionRecipe.full() == facelearn.get_recipe("recognition", "full")


@pytest.mark.parametrize("task,name", ALL)
def test_every_recipe_model_saves_and_loads_back_with_no_other_argument(tmp_path, task, name):
    recipe = facelearn.get_recipe(task, name)
    torch.manual_seed(0)
    model = facelearn.get_model(recipe.model_name).eval()
    path = registry.save(model, tmp_path / "m.pt", recipe.model_name, recipe=name)
    loaded = facelearn.load(path, task=task)
    c, h, w = registry.preset(recipe.model_name).input_size
    x = torch.rand(2, c, 64 if task == "detection" else h, 64 if task == "detection" else w)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    a, b = (list(v.values()) if isinstance(v, dict) else list(v) if isinstance(v, tuple) else [v] for v in (a, b))
    assert type(loaded) is type(model) and all(torch.equal(u, v) for u, v in zip(a, b))


def test_warm_up_and_clipping_keep_the_figures_the_recipes_had():
    """Warm-up counted in steps is one epoch of each quick recipe's SynthFace set (five of WIDER FACE for the
    detection recipes on it), and each task clips gradients where its trainer always did."""
    from facelearn.recognition.training import SynthFaceIdentities

    det, rec, lmk = (facelearn.get_recipe(t, "quick") for t in ("detection", "recognition", "landmarks"))
    assert det.warmup_steps == det.synth_train // det.batch_size == 125
    ids = SynthFaceIdentities()
    assert rec.warmup_steps == ids.n_identities * ids.images_per_identity // rec.batch_size == 312
    assert lmk.warmup_steps == 50 and facelearn.get_recipe("recognition", "full").warmup_steps == 0
    assert facelearn.get_recipe("detection", "full").warmup_steps == 5 * (12880 // 32)
    assert facelearn.get_recipe("detection", "full-resnet50").warmup_steps == 5 * (12880 // 24)
    assert {t: facelearn.get_recipe(t, "quick").grad_clip for t in recipes.TASKS} == \
        {"detection": 10.0, "recognition": 5.0, "landmarks": 10.0}
    assert rec.with_warmup_epochs(1, 3000).warmup_steps == 46 and det.with_warmup_epochs(0.5, 400).warmup_steps == 12


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.PReLU(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def _steps(model: nn.Module, opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("task,name", ALL)
def test_build_optimizer_is_each_tasks_optimiser_as_it_was(task, name):
    """The shared optimiser gives the same weights, step for step, as the optimiser each task built itself:
    detection without decay on norms and biases, recognition (insightface) and PFLD decaying everything."""
    recipe = facelearn.get_recipe(task, name)
    model = _net()
    params = list(model.parameters())
    if task == "detection":
        groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": recipe.weight_decay},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
        reference = (torch.optim.SGD(groups, lr=recipe.lr, momentum=0.9) if recipe.optimizer == "sgd" else
                     torch.optim.AdamW(groups, lr=recipe.lr))
    elif task == "recognition":
        reference = (torch.optim.SGD(params, lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay)
                     if recipe.optimizer == "sgd" else
                     torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay))
    else:
        reference = torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    expected = _steps(model, reference)
    model = _net()
    assert all(torch.equal(a, b) for a, b in zip(_steps(model, build_optimizer(recipe, model)), expected))


def test_no_decay_on_norms_and_biases_unless_asked():
    model = _net()
    model[0].weight.requires_grad_(False)
    decay, free = parameter_groups(model, 0.1)
    assert [tuple(p.shape) for p in decay["params"]] == [(3, 144)] and decay["weight_decay"] == 0.1
    assert {tuple(p.shape) for p in free["params"]} == {(4,), (3,)} and free["weight_decay"] == 0.0
    (everything,) = parameter_groups(model, 0.1, decay_all=True)
    assert len(everything["params"]) == len([p for p in model.parameters() if p.requires_grad])
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        build_optimizer(facelearn.get_recipe("landmarks", "quick", optimizer="lion"), model)


def test_every_task_trains_with_one_signature_and_one_result():
    from facelearn.engine import Trainer

    options = facelearn.get_recipe("detection", "quick", channels_last=True).trainer_options()
    assert options == {"amp": True, "grad_clip": 10.0, "channels_last": True, "compile": False}
    assert set(options) <= set(inspect.signature(Trainer).parameters)
    for task in recipes.TASKS:
        train = recipes._module(task).train
        sig = inspect.signature(train)
        assert sig.return_annotation in (TrainResult, "TrainResult"), task
        assert {"checkpoint", "device", "seed", "progress", "callbacks"} <= set(sig.parameters), task
        assert list(sig.parameters)[:2][0] in ("cfg", "recipe", "rec")


def test_recipes_command_lists_every_preset_and_what_differs(capsys):
    assert main(["recipes", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert set(table) == set(recipes.TASKS)
    for task, entry in table.items():
        assert list(entry["presets"]) == list(recipes.recipes(task))
    assert table["detection"]["differences"]["warmup_steps"]["quick"] == 125
    assert table["detection"]["differences"]["loss.neg_pos_ratio"] == {
        "quick": 3.0, "quick-no-landmarks": 3.0, "quick-dense": 3.0, "full": 7.0, "full-resnet50": 7.0, "paper": 3.0}
    assert "grad_clip" not in table["detection"]["differences"]
    assert table["landmarks"]["differences"]["model.width"] == {"quick": 0.25, "full": 1.0}
    assert main(["recipes", "--task", "recognition"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("recognition: quick, full") and any(line.split()[:3] == ["lr", "0.003", "0.1"]
                                                                 for line in out)


def test_preset_choices_come_from_the_registry(capsys):
    for command, task in (("retinaface", "detection"), ("recognition", "recognition"), ("pfld", "landmarks")):
        with pytest.raises(SystemExit):
            main(["train", command, "--help"])
        assert "{" + ",".join(recipes.recipes(task)) + "}" in capsys.readouterr().out.replace("\n", "").replace(" ", "")
