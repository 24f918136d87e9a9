"""The shipped GPU training-speed record (``runtime.gpu_training_record``) matches today's recipes."""

import math

from facelearn import runtime
from facelearn.data.synthface.export import PRESETS as SIZES
from facelearn.detection.training import train_config
from facelearn.landmarks import recipe as R
from facelearn.recognition.training import MS1MV2_SIZE, RecognitionRecipe


def test_record_steps_are_those_of_the_current_recipes():
    """A recipe whose epochs or batch changed makes the record's cost figures stale: re-run the benchmark."""
    rec = runtime.gpu_training_record()["recipes"]
    wider = SIZES["full"].widerface[0]
    for name in ("full", "full-resnet50"):
        cfg = train_config(name)
        line = rec[f"{cfg.model} {cfg.image_size}px"]
        assert (line["batch"], line["recipe_steps"]) == (cfg.batch_size, cfg.epochs * math.ceil(wider / cfg.batch_size))
    arc = RecognitionRecipe.full()
    line = rec["arcface iresnet50 112px, 85,742 classes"]
    steps = arc.epochs * math.ceil(MS1MV2_SIZE[1] / arc.batch_size)
    assert (line["batch"], line["recipe_steps"]) == (arc.batch_size, steps)
    for name, size in (("full", SIZES["full"].wflw[0]), ("quick", R.recipe("quick").synth_train)):
        r = R.recipe(name)
        line = rec[f"pfld {r.model.width}X ({name} recipe)"]
        assert (line["batch"], line["recipe_steps"]) == (r.batch_size, r.epochs * math.ceil(size / r.batch_size))


def test_record_figures_are_consistent():
    record = runtime.gpu_training_record()
    assert record["device"] and record["date"] and record["steps"] > 0
    for name, line in record["recipes"].items():
        for precision in ("amp", "fp32"):
            fig = line[precision]
            assert fig["ms_per_step"] > 0 and fig["peak_gib"] > 0
            assert math.isclose(fig["images_per_s"], line["batch"] / fig["ms_per_step"] * 1e3, rel_tol=1e-9), name
        assert math.isclose(line["recipe_hours"], line["recipe_steps"] * line["amp"]["ms_per_step"] / 3.6e6,
                            rel_tol=1e-9), name
