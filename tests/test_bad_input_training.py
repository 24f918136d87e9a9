"""Training state under bad input: non-finite gradients and weights, killed writes, foreign checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from nonfinite import NanGradient

from facelearn.engine import Trainer, load_checkpoint, make_loader, save_checkpoint
from facelearn.engine.checkpoint import check_resumable, first_nonfinite, remove_stale_temporaries, sync_log
from facelearn.errors import DataError, TrainingStopped


def _data(n: int = 8) -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(0)
    return torch.utils.data.TensorDataset(torch.randn(n, 3, generator=g), torch.arange(n, dtype=torch.float32))


def _trainer(checkpoint, nan_at: int | None = None, model: nn.Module | None = None) -> Trainer:
    """A linear regression whose gradients become NaN at its iteration ``nan_at`` (counted in this run)."""
    model = model or nn.Linear(3, 1)
    calls = {"n": 0}

    def loss_fn(m: nn.Module, batch):
        x, y = batch
        out = m(x).squeeze(1)
        if calls["n"] == nan_at:
            out = NanGradient.apply(out)
        calls["n"] += 1
        return ((out - y) ** 2).mean(), {}

    return Trainer(model, torch.optim.SGD(model.parameters(), lr=0.01), loss_fn, device="cpu", checkpoint=checkpoint)


def test_nan_gradient_on_the_last_batch_never_reaches_the_checkpoint(tmp_path):
    ck = tmp_path / "t.pt"
    loader = make_loader(_data(8), 4, seed=0)  # two iterations per epoch
    _trainer(ck).fit(loader, 1, progress=False)
    good = load_checkpoint(ck)["model"]
    trainer = _trainer(ck, nan_at=1)  # resumed at epoch 1; its second (last) batch has NaN gradients
    with pytest.raises(TrainingStopped, match="gradients are not finite at iteration 3"):
        trainer.fit(loader, 2, progress=False)
    state = load_checkpoint(ck)
    assert state["epoch"] == 1 and first_nonfinite(state) is None
    assert all(torch.equal(good[k], state["model"][k]) for k in good)
    assert not list(tmp_path.glob("*.tmp"))


def test_save_checkpoint_refuses_non_finite_state(tmp_path):
    state = {"model": {"w": torch.ones(3)}, "optimizer": {"state": {0: {"exp_avg": torch.tensor([1.0, float("inf")])}}}}
    with pytest.raises(TrainingStopped, match="optimizer.state.0.exp_avg holds NaN or infinite values"):
        save_checkpoint(state, tmp_path / "c.pt")
    assert not (tmp_path / "c.pt").exists() and not list(tmp_path.iterdir())
    assert first_nonfinite({"rng": torch.tensor([255], dtype=torch.uint8), "w": [torch.zeros(2)]}) is None


def test_stale_temporary_files_are_removed_on_the_next_start(tmp_path):
    ck = tmp_path / "t.pt"
    stale = [tmp_path / "t.pt.abc123.tmp", tmp_path / "t.pt.x.tmp"]
    for f in stale:
        f.write_bytes(b"\0" * 4096)  # what a kill during torch.save leaves behind
    keep = tmp_path / "other.pt.abc.tmp"
    keep.write_bytes(b"")
    _trainer(ck)
    assert not any(f.exists() for f in stale) and keep.exists()
    assert remove_stale_temporaries(tmp_path / "missing" / "x.pt") == []


def test_epoch_log_has_no_gap_after_a_kill_between_checkpoint_and_log(tmp_path):
    ck, log = tmp_path / "t.pt", tmp_path / "t.log.jsonl"
    loader = make_loader(_data(8), 4, seed=0)
    _trainer(ck).fit(loader, 2, progress=False)
    lines = log.read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    log.write_text(lines[0] + "\n" + lines[1][:7])  # killed after the rename, in the middle of the log line
    _trainer(ck).fit(loader, 2, progress=False)  # nothing left to train: the log is repaired at the start
    assert [json.loads(line)["epoch"] for line in log.read_text().splitlines()] == [1, 2]
    log.write_text(lines[0] + "\n")  # killed before the log line
    _trainer(ck).fit(loader, 3, progress=False)
    assert [json.loads(line)["epoch"] for line in log.read_text().splitlines()] == [1, 2, 3]


def test_sync_log_keeps_complete_lines_and_drops_garbage(tmp_path):
    log = tmp_path / "a.log.jsonl"
    records = [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.4}]
    log.write_text('{"epoch": 1, "loss": 0.5, "extra": 1}\nnot json\n')
    sync_log(log, records)
    assert [json.loads(line) for line in log.read_text().splitlines()] == [{"epoch": 1, "loss": 0.5, "extra": 1}, records[1]]


def test_checkpoint_of_another_model_or_kind_is_refused(tmp_path):
    ck = tmp_path / "t.pt"
    _trainer(ck).fit(make_loader(_data(4), 4), 1, progress=False)
    with pytest.raises(DataError, match=r"t\.pt: holds a Trainer checkpoint .* of another model \(weight weight has "
                                        r"shape \(1, 3\), this model \(2, 3\)\)"):
        _trainer(ck, model=nn.Linear(3, 2))
    with pytest.raises(DataError, match="missing"):
        _trainer(ck, model=nn.Sequential(nn.Linear(3, 1)))
    export = tmp_path / "export.pt"
    save_checkpoint({"state_dict": {"w": torch.ones(1)}, "facelearn": {"model": "pfld-1x", "task": "landmarks"}}, export)
    with pytest.raises(DataError, match=r"export\.pt: holds an inference checkpoint of pfld-1x \(landmarks\); "
                                        r"expected a Trainer checkpoint of resnet"):
        check_resumable(load_checkpoint(export), export, nn.Linear(3, 1), {"model": "resnet"})
    state = load_checkpoint(ck)
    state["facelearn"] = {"model": "pfld-1x", "task": "landmarks"}
    with pytest.raises(DataError, match="holds a Trainer checkpoint of pfld-1x .*expected a Trainer checkpoint of "
                                        "retinaface"):
        check_resumable(state, ck, nn.Linear(3, 1), {"model": "retinaface"})
