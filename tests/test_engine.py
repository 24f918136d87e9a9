import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset
from nonfinite import NanGradient

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


# -- logs on the device, exact finiteness check ------------------------------------------------------------
def _tensor_logs(model, batch):
    x, y = batch
    out = model(x)
    return nn.functional.cross_entropy(out, y), {"acc": (out.argmax(1) == y).float().mean(), "rows": float(len(y))}


def test_history_is_the_mean_of_the_per_step_logs():
    runtime.seed_everything(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
    seen = []
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), _tensor_logs, device="cpu", log_every=4,
                      callbacks=[lambda t, logs: seen.append({k: float(v) for k, v in logs.items()})])
    loader = make_loader(_problem(), 20, seed=7)  # 5 iterations per epoch: the waits fall inside epochs
    history = trainer.fit(loader, 2, progress=False)
    assert len(seen) == 10 and torch.is_tensor(trainer.train_step(next(iter(loader)))["acc"])
    for epoch, record in enumerate(history):
        steps = seen[5 * epoch:5 * epoch + 5]
        for key in ("loss", "acc", "rows"):
            assert record[key] == pytest.approx(sum(s[key] for s in steps) / 5, rel=1e-12), key
    assert history[1]["rows"] == pytest.approx((4 * 20 + 16) / 5)


def _optimizer(kind, params):
    if kind == "adam-fused":
        return torch.optim.Adam(params, lr=0.01, fused=True)
    return torch.optim.SGD(params, lr=0.1, momentum=0.9, fused=kind == "sgd-fused")


@pytest.mark.parametrize("kind", ["sgd", "sgd-fused", "adam-fused"])
@pytest.mark.parametrize("log_every", [1, 3, 50])
@pytest.mark.parametrize("what", ["loss", "gradients"])
def test_a_non_finite_step_stops_at_that_step_before_its_update(kind, log_every, what):
    import copy

    bad = 4  # of the 6 iterations of the first epoch: found at the wait after iteration 4, 5 or the epoch's end
    runtime.seed_everything(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))

    def loss_fn(m, batch):
        loss, logs = _tensor_logs(m, batch)
        if trainer.step == bad:
            loss = loss * float("nan") if what == "loss" else NanGradient.apply(loss)
        return loss, logs

    states = {}
    trainer = Trainer(model, _optimizer(kind, model.parameters()), loss_fn, device="cpu", log_every=log_every,
                      callbacks=[lambda t, logs: states.__setitem__(t.step, copy.deepcopy(
                          (t.model.state_dict(), t.optimizer.state_dict()["state"])))])
    assert trainer._deferred == kind.endswith("fused")
    message = "loss is nan at iteration 4;" if what == "loss" else "gradients are not finite at iteration 4 "
    with pytest.raises(FloatingPointError, match=message):
        trainer.fit(make_loader(_problem(), 16, seed=7), 2, progress=False)
    waited = {1: bad, 3: 5, 50: 6}[log_every] if trainer._deferred else bad  # the last iteration's callback
    assert trainer.step == bad and max(states) == waited
    weights, moments = states[bad]  # as the callback saw them after iteration bad - 1
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, weights[name]), name
    for i, state in trainer.optimizer.state_dict()["state"].items():
        for key, value in state.items():
            assert torch.equal(value, moments[i][key]), (i, key)


def test_log_every_must_be_positive():
    model = nn.Linear(2, 1)
    with pytest.raises(ValueError, match="log_every must be a positive number of iterations, got 0"):
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), _tensor_logs, device="cpu", log_every=0)


def test_fusing_a_default_optimizer_keeps_its_steps():
    from facelearn.engine.trainer import _fuse

    for make in (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
                 lambda p: torch.optim.AdamW(p, lr=0.01)):
        runs = []
        for fuse in (False, True):
            torch.manual_seed(0)
            model = nn.Linear(5, 3)
            opt = make(model.parameters())
            assert not fuse or _fuse(opt)
            for _ in range(3):
                opt.zero_grad()
                model(torch.randn(4, 5)).square().mean().backward()
                opt.step()
            runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        torch.testing.assert_close(runs[1], runs[0], rtol=1e-6, atol=1e-7)
    p = [nn.Parameter(torch.ones(2))]
    assert not _fuse(torch.optim.SGD(p, lr=0.1, foreach=True)) and not _fuse(torch.optim.RMSprop(p))


def _conv_step(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y), {}


def _conv_run(**switches):
    runtime.seed_everything(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), _conv_step, device="cpu",
                      **switches)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(6, 3, 16, 16, generator=g), torch.randint(0, 4, (6,), generator=g)) for _ in range(3)]
    return [float(trainer.train_step(b)["loss"]) for b in batches], trainer.model


def test_channels_last_trains_the_same_model():
    plain, _ = _conv_run()
    losses, model = _conv_run(channels_last=True)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert losses == pytest.approx(plain, abs=1e-5)


@pytest.mark.slow
def test_compile_trains_the_same_model():
    plain, _ = _conv_run()
    try:
        losses, model = _conv_run(compile=True)
    except RuntimeError as err:  # the switch's one-line refusal where torch.compile cannot run
        if not str(err).startswith("compile=True: "):
            raise
        pytest.skip(str(err))
    assert losses == pytest.approx(plain, abs=1e-5)
    assert set(model.state_dict()) == {f"{i}.{k}" for i, k in [(0, "weight"), (0, "bias"), (1, "weight"), (1, "bias"),
                                                               (1, "running_mean"), (1, "running_var"),
                                                               (1, "num_batches_tracked"), (3, "weight"), (3, "bias")]}


def test_a_fused_run_resumes_exactly_and_saves_the_optimiser_as_built(tmp_path):
    """What the Trainer does on CUDA (fuse torch's default optimiser), done by hand on the CPU."""
    from facelearn.engine.trainer import _fuse

    def fused(checkpoint=None):
        runtime.seed_everything(0)
        model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
        trainer = Trainer(model, torch.optim.Adam(model.parameters(), lr=0.01), _tensor_logs, device="cpu", seed=7)
        trainer._fused = _fuse(trainer.optimizer)
        trainer._deferred = True
        if checkpoint is not None:
            trainer.load_state_dict(load_checkpoint(checkpoint))
        return trainer

    straight = fused()
    straight.fit(make_loader(_problem(), 16, seed=7), 2, progress=False)
    first = fused()
    first.fit(make_loader(_problem(), 16, seed=7), 1, progress=False)
    state = first.state_dict()
    assert [g["fused"] for g in state["optimizer"]["param_groups"]] == [None]
    assert first.optimizer.param_groups[0]["fused"] is True
    save_checkpoint(state, tmp_path / "run.pt")
    resumed = fused(tmp_path / "run.pt")
    assert resumed.optimizer.param_groups[0]["fused"] is True
    resumed.fit(make_loader(_problem(), 16, seed=7), 2, progress=False)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]


def test_batch_size_of_a_loader_or_its_batch_sampler():
    from torch.utils.data import DataLoader

    from facelearn.engine.trainer import _batch_size
    from facelearn.recognition.training import PKSampler

    assert _batch_size(DataLoader(range(40), batch_sampler=PKSampler(torch.arange(40) // 4, 3, 2))) == 6
    assert _batch_size(DataLoader(range(8), batch_size=4)) == 4
    assert _batch_size(DataLoader(range(8), batch_size=None)) is None
