"""benchmarks/gpu_training.py: its smoke setting runs end to end on a CPU and writes a record the book's reader
(``runtime.gpu_training_record``) accepts, with the shipped record's lines and fields; its timing excludes the
warm-up and stops at its deadline; a record it rewrites keeps the lines it did not measure."""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from facelearn import runtime
from benchmark_module import benchmark
from test_gpu_record import check_consistent, recipe_lines

ROOT = Path(__file__).resolve().parents[1]


bench = benchmark("gpu_training")


def _paths(obj, prefix=()):
    """Every key path of a nested dict (the values' own keys included), as tuples."""
    if not isinstance(obj, dict):
        return set()
    out = set()
    for k, v in obj.items():
        out.add(prefix + (k,))
        out |= _paths(v, prefix + (k,))
    return out


def _run(*args, timeout=900):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_training.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_smoke_run_writes_a_record_the_book_reads(tmp_path):
    out = tmp_path / "gpu.json"
    proc = _run("--device", "cpu", "--small", "--steps", "2", "--json", str(out), "--data", str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = runtime.gpu_training_record(out)  # the reader the chapters use
    shipped = runtime.gpu_training_record()
    assert set(record["recipes"]) == set(shipped["recipes"]) == set(recipe_lines())
    missing = {p for p in _paths(shipped) - _paths(record) if p[-1] != "peak_gib"}
    assert not missing, sorted(missing)
    check_consistent(record)
    assert record["small"] is True and record["device"] == bench.device_name(torch.device("cpu"))
    for name, line in record["recipes"].items():
        measured = line["measured"]
        assert (measured["device"], measured["date"]) == (record["device"], record["date"])
        assert measured["steps"] == line["amp"]["steps"] == 2 and measured["warmup"] == 1
        assert line["recipe_steps"] == recipe_lines()[name][1]  # the real recipe's cost, whatever the batch
        assert line["batch"] < recipe_lines()[name][0]  # the small setting shrank it
        assert line["amp"]["peak_gib"] is None  # memory is measured on CUDA only
        assert math.isfinite(line["amp"]["final_loss"])
        if not name.startswith("arcface"):
            assert set(line["loader_samples_per_s"]) == {"1", "4"}
    assert "goal pfld 0.25X (quick recipe): <= 8 ms per step" in proc.stdout
    assert "not comparable" in proc.stdout


def test_small_record_is_never_written_into_the_package_records():
    proc = _run("--device", "cpu", "--small", "--json", str(bench.RECORDS / "gpu_training_smoke.json"), timeout=120)
    assert proc.returncode == 2 and "not writing it into" in proc.stderr
    assert not (bench.RECORDS / "gpu_training_smoke.json").exists()


def test_default_record_is_named_after_the_gpu():
    assert bench.default_record("NVIDIA H200") == ROOT / "facelearn" / "records" / "gpu_training_h200.json"
    assert bench.default_record("NVIDIA GeForce RTX 4090").name == "gpu_training_geforce_rtx_4090.json"


def _case(calls):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))

    def loss_fn(model, batch):
        calls.append(1)
        x, y = batch
        return nn.functional.mse_loss(model(x), y), {}

    batches = [(torch.randn(4, 8), torch.randn(4, 1)) for _ in range(2)]
    return bench.Case("tiny", model, lambda m: torch.optim.SGD(m.parameters(), lr=0.1), loss_fn, batches, 4, 10, {})


def test_time_steps_excludes_the_warmup_and_restores_the_weights():
    calls = []
    case = _case(calls)
    before = {k: v.clone() for k, v in case.model.state_dict().items()}
    f = bench.time_steps(case, torch.device("cpu"), False, steps=5, warmup=3)
    assert len(calls) == 8 and f["steps"] == 5
    assert math.isclose(f["images_per_s"], 4 / f["ms_per_step"] * 1e3)
    assert math.isclose(f["steps_per_s"] * f["ms_per_step"], 1e3)
    assert f["peak_gib"] is None
    assert all(torch.equal(before[k], v) for k, v in case.model.state_dict().items())


def test_time_steps_stops_at_its_deadline_after_one_timed_step():
    calls = []
    f = bench.time_steps(_case(calls), torch.device("cpu"), False, steps=50, warmup=2, deadline=time.perf_counter())
    assert f["steps"] == 1 and len(calls) == 3


def test_loader_rate_stops_at_its_deadline_after_two_batches():
    from torch.utils.data import TensorDataset
    from facelearn.engine import make_loader

    loader = make_loader(TensorDataset(torch.zeros(8, 3)), 2, shuffle=True)
    assert bench.loader_rate(loader, 0, batches=20, deadline=0.0) > 0


def _line(ms, date="2026-01-01"):
    fig = {"ms_per_step": ms, "images_per_s": 2e3 / ms, "peak_gib": 1.0}
    return {"batch": 2, "amp": fig, "fp32": fig, "recipe_steps": 10, "recipe_hours": 10 * ms / 3.6e6,
            "loader_samples_per_s": {}, "measured": {"date": date}}


def test_rewritten_record_keeps_the_lines_not_measured_and_marks_them(tmp_path):
    path = tmp_path / "gpu.json"
    old = {"device": "GPU", "torch": "1", "date": "2026-01-01", "steps": 60,
           "recipes": {"a": _line(5.0), "b": _line(6.0)}}
    del old["recipes"]["b"]["measured"]  # a record from before the lines carried their own
    bench.write_record(path, old)
    new = {"device": "GPU", "torch": "2", "date": "2026-02-02", "steps": 200, "small": False,
           "recipes": {"a": _line(4.0, "2026-02-02")}}
    both = bench.merged(path, new)
    assert both["recipes"]["a"]["amp"]["ms_per_step"] == 4.0 and both["date"] == "2026-02-02"
    assert both["recipes"]["b"]["measured"] == {"device": "GPU", "date": "2026-01-01", "torch": "1", "steps": 60}
    bench.write_record(path, both)
    assert runtime.gpu_training_record(path) == json.loads(path.read_text()) == both
    other = {**new, "device": "another GPU"}
    assert set(bench.merged(path, other)["recipes"]) == {"a"}  # another device's lines are not mixed in


def test_record_with_a_nan_is_not_written(tmp_path):
    with pytest.raises(ValueError):
        bench.write_record(tmp_path / "gpu.json", {"steps": float("nan")})
    assert not (tmp_path / "gpu.json").exists()
