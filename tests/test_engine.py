import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from facelearn import runtime
from facelearn.engine import Trainer, cosine_schedule, load_checkpoint, make_loader, save_checkpoint
from facelearn.errors import DataError


def _problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 5, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorDataset(x, y)


def _step(model, batch):
    x, y = batch
    out = nn.functional.dropout(model(x), 0.2)  # uses the global torch generator: resume must restore it
    return nn.functional.cross_entropy(out, y), {"acc": float((out.argmax(1) == y).float().mean())}


def _trainer(checkpoint=None):
    runtime.seed_everything(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = cosine_schedule(opt, total_steps=4 * 6, warmup_steps=3)
    return Trainer(model, opt, _step, device="cpu", scheduler=sched, checkpoint=checkpoint, seed=7)


def test_training_reduces_the_loss():
    trainer = _trainer()
    history = trainer.fit(make_loader(_problem(), 16, seed=7), 4, progress=False)
    assert len(history) == 4 and trainer.step == 24
    assert history[-1]["loss"] < history[0]["loss"]


def test_resume_is_exact(tmp_path):
    straight = _trainer()
    straight.fit(make_loader(_problem(), 16, seed=7), 4, progress=False)

    ckpt = tmp_path / "run.pt"
    first = _trainer(ckpt)
    first.fit(make_loader(_problem(), 16, seed=7), 2, progress=False)
    torch.manual_seed(999)  # disturb the global generator: resume must restore it
    resumed = _trainer(ckpt)
    assert resumed.epoch == 2 and resumed.step == 12
    resumed.fit(make_loader(_problem(), 16, seed=7), 4, progress=False)

    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]
    assert (tmp_path / "run.log.jsonl").read_text().count("\n") == 4


def test_checkpoint_is_atomic_and_plain(tmp_path):
    path = save_checkpoint({"w": torch.ones(2), "epoch": 3}, tmp_path / "a" / "c.pt")
    assert load_checkpoint(path)["epoch"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]  # no temporary file left behind


def test_checkpoint_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("open('%s', 'w').write('pwned')" % (tmp_path / "pwned"),))

    bad = tmp_path / "bad.pt"
    torch.save({"x": Evil()}, bad)
    with pytest.raises(DataError, match="bad.pt: not a readable facelearn checkpoint"):
        load_checkpoint(bad)
    assert not (tmp_path / "pwned").exists()


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.pt: no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "trunc.pt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match="trunc.pt: not a readable"):
        load_checkpoint(tmp_path / "trunc.pt")


def test_non_finite_loss_stops_training():
    model = nn.Linear(2, 1)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                      lambda m, b: (m(b[0]).sum() * float("nan"), {}), device="cpu")
    with pytest.raises(FloatingPointError, match="loss is nan at iteration 0"):
        trainer.train_step((torch.ones(3, 2),))


def test_cosine_schedule_shape():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = cosine_schedule(opt, total_steps=10, warmup_steps=2)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:])) and lrs[-1] < 0.05


def test_weighted_loader_draws_in_proportion_and_reproducibly():
    data = torch.utils.data.TensorDataset(torch.arange(400))
    weights = torch.tensor([1.0, 0.0, 3.0, 4.0]).repeat(100)     # item i weighs weights[i % 4]
    loader = make_loader(data, 400, seed=3, weights=weights)
    counts = torch.zeros(4)
    for _ in range(100):
        (batch,) = next(iter(loader))
        counts += torch.bincount(batch % 4, minlength=4)
    assert counts[1] == 0
    assert (counts / counts.sum()).tolist() == pytest.approx([1 / 8, 0, 3 / 8, 4 / 8], abs=0.01)
    loader.generator.manual_seed(3)
    first = next(iter(loader))[0]
    loader.generator.manual_seed(3)
    assert torch.equal(next(iter(loader))[0], first)
    for bad in (torch.ones(3), -weights, torch.zeros(400)):
        with pytest.raises(ValueError, match="non-negative"):
            make_loader(data, 2, weights=bad)
