"""The shipped GPU training-speed record (``runtime.gpu_training_record``) matches today's recipes, and the
reader refuses a record that lacks what the chapters read."""

import json
import math

import pytest

from facelearn import runtime
from facelearn.data.synthface.export import PRESETS as SIZES
from facelearn.detection.training import train_config
from facelearn.landmarks import recipe as R
from facelearn.recognition.training import MS1MV2_SIZE, RecognitionRecipe


def recipe_lines() -> dict[str, tuple[int, int]]:
    """The record's line names for today's recipes, with each recipe's (batch, epochs × ⌈training set / batch⌉)."""
    wider = SIZES["full"].widerface[0]
    lines = {}
    for name in ("full", "full-resnet50"):
        cfg = train_config(name)
        lines[f"{cfg.model} {cfg.image_size}px"] = (cfg.batch_size, cfg.epochs * math.ceil(wider / cfg.batch_size))
    arc = RecognitionRecipe.full()
    lines["arcface iresnet50 112px, 85,742 classes"] = (arc.batch_size,
                                                        arc.epochs * math.ceil(MS1MV2_SIZE[1] / arc.batch_size))
    for name, size in (("full", SIZES["full"].wflw[0]), ("quick", R.recipe("quick").synth_train)):
        r = R.recipe(name)
        lines[f"pfld {r.model.width}X ({name} recipe)"] = (r.batch_size, r.epochs * math.ceil(size / r.batch_size))
    return lines


def check_consistent(record: dict) -> None:
    """images/s = batch / step time, and the recipe's hours = its steps × the AMP step time."""
    assert record["device"] and record["date"] and record["steps"] > 0
    for name, line in record["recipes"].items():
        for precision in ("amp", "fp32"):
            fig = line[precision]
            assert fig["ms_per_step"] > 0
            assert math.isclose(fig["images_per_s"], line["batch"] / fig["ms_per_step"] * 1e3, rel_tol=1e-9), name
        assert math.isclose(line["recipe_hours"], line["recipe_steps"] * line["amp"]["ms_per_step"] / 3.6e6,
                            rel_tol=1e-9), name


def test_record_steps_are_those_of_the_current_recipes():
    """A recipe whose epochs or batch changed makes the record's cost figures stale: re-run the benchmark."""
    rec = runtime.gpu_training_record()["recipes"]
    for name, (batch, steps) in recipe_lines().items():
        assert (rec[name]["batch"], rec[name]["recipe_steps"]) == (batch, steps), name


def test_record_figures_are_consistent():
    record = runtime.gpu_training_record()
    check_consistent(record)
    for line in record["recipes"].values():
        assert line["amp"]["peak_gib"] > 0 and line["fp32"]["peak_gib"] > 0  # the shipped one was measured on CUDA


def _shipped() -> dict:
    return json.loads(json.dumps(runtime.gpu_training_record()))


@pytest.mark.parametrize("damage, where", [
    (lambda r: r.pop("date"), "the record has no 'date'"),
    (lambda r: r["recipes"]["pfld 0.25X (quick recipe)"]["amp"].pop("ms_per_step"),
     "recipes['pfld 0.25X (quick recipe)']['amp'] has no 'ms_per_step'"),
    (lambda r: r["recipes"]["pfld 1.0X (full recipe)"]["fp32"].update(images_per_s=0),
     "recipes['pfld 1.0X (full recipe)']['fp32']['images_per_s'] must be a positive number, got 0"),
    (lambda r: r["recipes"]["retinaface-resnet50 840px"]["loader_samples_per_s"].update({"4": "fast"}),
     "recipes['retinaface-resnet50 840px']['loader_samples_per_s']['4'] must be a positive number"),
    (lambda r: r.update(recipes=[]), "'recipes' must map recipe names"),
])
def test_reader_refuses_a_record_without_what_the_chapters_read(tmp_path, damage, where):
    record = _shipped()
    damage(record)
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=rf"^{path}: .*") as err:
        runtime.gpu_training_record(path)
    assert where in str(err.value)


def test_reader_names_the_line_of_broken_json(tmp_path):
    path = tmp_path / "gpu.json"
    path.write_text('{\n "device": "x",\n "steps": NaN oops\n}')
    with pytest.raises(ValueError, match=rf"^{path}:3: not a JSON record"):
        runtime.gpu_training_record(path)


def test_reader_reads_another_record_and_allows_no_peak_off_cuda(tmp_path):
    record = _shipped()
    for line in record["recipes"].values():
        line["amp"]["peak_gib"] = None  # a CPU run measures no device memory
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(record))
    assert runtime.gpu_training_record(path) == record
