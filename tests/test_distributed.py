"""Training on two gloo processes, spawned here on 127.0.0.1, against one process on the same global batch."""

import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from facelearn.engine import Trainer, make_loader

WORLD, PER_RANK, SEED = 2, 4, 3


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread here as in the spawned ranks: another thread count changes the last bits of the losses, and
    OHEM's choice among near-tied negatives with them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(fn, *args, world: int = WORLD, timeout: float = 120.0) -> list[int]:
    """Run ``fn(rank, world, *args)`` on ``world`` processes joined on a free port; wait for all of them
    (fail the test after ``timeout`` s) and return their exit codes."""
    context = mp.start_processes(_entry, (fn, world, _free_port(), args), nprocs=world, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + timeout
    while any(p.is_alive() for p in context.processes):
        if time.monotonic() > deadline:
            for p in context.processes:
                p.kill()
            pytest.fail(f"{world} processes still running after {timeout} s")
        time.sleep(0.2)
    return [p.exitcode for p in context.processes]


def _entry(rank, fn, world, port, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), FACELEARN_DIST_TIMEOUT="30")
    torch.set_num_threads(1)
    fn(rank, world, *args)


# -- the three tasks, tiny ------------------------------------------------------------------------------------
def _recognition():
    from torch.utils.data import TensorDataset

    from facelearn.recognition.backbones import SmallCNN
    from facelearn.recognition.margins import ArcFaceHead

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(16, 3, 32, 32, generator=g), torch.arange(16) % 6)
    model = nn.ModuleDict({"backbone": SmallCNN(embedding_dim=16, width=8, input_size=32, dropout=0.0),
                           "head": ArcFaceHead(16, 6, 16.0, 0.5)})
    return model, data, None, lambda m, b: (m["head"](m["backbone"](b[0]), b[1]), {})


def _detection():
    from facelearn.detection.dataset import collate
    from facelearn.detection.retinaface import build
    from facelearn.detection.training import make_loss_fn

    g = torch.Generator().manual_seed(0)
    items = []
    for _ in range(16):
        xy = torch.rand(2, 2, generator=g) * 32  # the data sets' contract: RGB in [0, 1], targets in pixels
        boxes = torch.cat([xy, xy + 12.8 + 12.8 * torch.rand(2, 2, generator=g)], 1)
        marks = boxes[:, None, :2] + 12.8 * torch.rand(2, 5, 2, generator=g)
        items.append((torch.rand(3, 64, 64, generator=g), {"boxes": boxes, "landmarks": marks,
                                                           "landmark_mask": torch.ones(2, dtype=torch.bool)}))
    return build(), items, collate, make_loss_fn()  # the default preset: MobileNet-0.25, 3 levels


def _landmarks():
    from facelearn.landmarks.loss import CATEGORIES, PFLDObjective
    from facelearn.landmarks.pfld import PFLDConfig, pfld_pair

    g = torch.Generator().manual_seed(0)
    items = [{"image": torch.rand(3, 112, 112, generator=g), "landmarks": torch.rand(196, generator=g),
              "angles": (torch.rand(3, generator=g) - 0.5), "attributes": (torch.rand(6, generator=g) < 0.3).float()}
             for _ in range(16)]
    return pfld_pair(PFLDConfig(0.25)), items, None, PFLDObjective(torch.ones(len(CATEGORIES)))


TASKS = {"recognition": _recognition, "detection": _detection, "landmarks": _landmarks}


class _GlobalBatches:
    """The global batch of each iteration in one process: rank 0's batch, then rank 1's (DistributedSampler)."""

    def __init__(self, n: int) -> None:
        self.samplers = [DistributedSampler(range(n), WORLD, r, shuffle=True, seed=SEED, drop_last=True)
                         for r in range(WORLD)]

    def set_epoch(self, epoch: int) -> None:
        for s in self.samplers:
            s.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.samplers[0]) // PER_RANK

    def __iter__(self):
        order = [list(s) for s in self.samplers]
        for k in range(len(self)):
            yield [i for o in order for i in o[k * PER_RANK:(k + 1) * PER_RANK]]


def _halves(loss_fn):
    """The mean of ``loss_fn`` over the per-rank halves of a global batch: what DDP's averaged gradient minimises."""
    def split(batch, r):
        if isinstance(batch, dict):
            return {k: v[r * PER_RANK:(r + 1) * PER_RANK] for k, v in batch.items()}
        return type(batch)(v[r * PER_RANK:(r + 1) * PER_RANK] for v in batch)

    def loss(model, batch):
        return sum(loss_fn(model, split(batch, r))[0] for r in range(WORLD)) / WORLD, {}
    return loss


def _trainer(task, checkpoint=None, halves=False):
    torch.manual_seed(0)
    model, data, collate, loss_fn = TASKS[task]()
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    trainer = Trainer(model, opt, _halves(loss_fn) if halves else loss_fn, device="cpu", grad_clip=10.0,
                      checkpoint=checkpoint, seed=SEED)
    if halves:
        loader = DataLoader(data, batch_sampler=_GlobalBatches(len(data)), collate_fn=collate)
    else:
        loader = make_loader(data, PER_RANK, shuffle=True, seed=SEED, drop_last=True, collate_fn=collate)
    return trainer, loader


def _train_ranks(rank, world, task, out, epochs, checkpoint):
    trainer, loader = _trainer(task, checkpoint)
    assert trainer.world_size == world and len(loader) == 2
    trainer.fit(loader, epochs, progress=False)
    if rank == 0:
        torch.save({k: p.detach() for k, p in trainer.model.named_parameters()}, Path(out) / "weights.pt")


def _assert_same_weights(reference: nn.Module, path: Path) -> None:
    got = torch.load(path, weights_only=True)
    want = dict(reference.named_parameters())
    assert got.keys() == want.keys()
    for name, p in want.items():
        torch.testing.assert_close(got[name], p.detach(), rtol=1e-4, atol=2e-5, msg=name)


def _every_run(rank, world, out):
    """All the two-process runs of this file in one spawn (starting processes is the slow part)."""
    out = Path(out)
    for task in TASKS:
        _train_ranks(rank, world, task, out / task, 2, None)
    _train_ranks(rank, world, "recognition", out / "resume", 2, str(out / "resume" / "run.pt"))
    _partial_fc_ranks(rank, world, out)
    _train_pfc_ranks(rank, world, str(out / "pfc.pt"))


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The folder of :func:`_every_run`'s results; the resumed run starts from one process's epoch 1."""
    out = tmp_path_factory.mktemp("two-processes")
    for name in (*TASKS, "resume"):
        (out / name).mkdir()
    first, loader = _trainer("recognition", out / "resume" / "run.pt", halves=True)
    first.fit(loader, 1, progress=False)
    assert _spawn(_every_run, str(out), timeout=400) == [0, 0]
    return out


@pytest.mark.parametrize("task", sorted(TASKS))
def test_two_processes_train_one_model_equal_to_one_process(task, two_processes):
    reference, loader = _trainer(task, halves=True)
    assert len(loader) == 2
    reference.fit(loader, 2, progress=False)
    _assert_same_weights(reference.model, two_processes / task / "weights.pt")


def test_resume_from_one_process_on_two(two_processes):
    tmp_path = two_processes / "resume"
    ckpt = tmp_path / "run.pt"
    straight, loader = _trainer("recognition", halves=True)
    straight.fit(loader, 2, progress=False)
    _assert_same_weights(straight.model, tmp_path / "weights.pt")
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 2 and set(state["model"]) == set(straight.model.state_dict())  # no "module." prefix
    log = (tmp_path / "run.log.jsonl").read_text().splitlines()
    assert len(log) == 2 and '"world_size": 2' in log[1] and '"global_batch": 8' in log[1]


def _die(rank, world, out):
    from torch.utils.data import TensorDataset

    model = nn.Linear(4, 2)

    def loss_fn(m, batch):
        if rank == 1 and trainer.step == 2:
            os._exit(1)
        return nn.functional.cross_entropy(m(batch[0]), batch[1]), {}

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn, device="cpu")
    data = TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
    try:
        trainer.fit(make_loader(data, 4), 1, progress=False)
    except Exception as err:  # noqa: BLE001 - the message is what the test checks
        (Path(out) / f"rank{rank}.txt").write_text(f"{type(err).__name__}: {err}")


def test_a_dead_rank_stops_the_other_with_one_line(tmp_path):
    start = time.monotonic()
    assert _spawn(_die, str(tmp_path), timeout=60) == [0, 1]
    message = (tmp_path / "rank0.txt").read_text()
    assert message.startswith("RankFailure: rank 0 of 2: another process stopped") and "\n" not in message
    assert time.monotonic() - start < 60


# -- Partial FC -----------------------------------------------------------------------------------------------
C, D, B = 11, 8, 6  # classes (split 6 + 5 over two processes), embedding size, rows per process


def _full_head(margin):
    from facelearn.recognition import margins

    heads = {"arcface": lambda: margins.ArcFaceHead(D, C, 16.0, 0.5), "cosface": lambda: margins.CosFaceHead(D, C, 16.0, 0.35),
             "combined": lambda: margins.CombinedMarginHead(D, C, 16.0, 1.0, 0.3, 0.2)}
    head = heads[margin]()
    with torch.no_grad():
        head.cosine.weight.copy_(_centres())
    return head


def _centres():
    return torch.randn(C, D, generator=torch.Generator().manual_seed(5))


def _global_batch():
    g = torch.Generator().manual_seed(6)
    return torch.randn(WORLD * B, D, generator=g), torch.randint(0, C, (WORLD * B,), generator=g)


def _partial_fc(margin, sample_rate=1.0):
    from facelearn.recognition.partial_fc import PartialFC

    head = PartialFC(D, C, margin, 16.0, None, sample_rate)
    with torch.no_grad():
        head.weight.copy_(head.shard(_centres()))
    return head


def _partial_fc_ranks(rank, world, out):
    x, y = _global_batch()
    results = {}
    for margin in ("arcface", "cosface", "combined"):
        head = _partial_fc(margin)
        mine = x[rank * B:(rank + 1) * B].clone().requires_grad_()
        loss = head(mine, y[rank * B:(rank + 1) * B])
        loss.backward()
        results[margin] = {"loss": loss.detach(), "x_grad": mine.grad, "w_grad": head.gather(head.weight.grad)}
    head = _partial_fc("arcface", 0.1)
    loss = head(x[rank * B:(rank + 1) * B], y[rank * B:(rank + 1) * B])
    results["sampled"] = {"loss": loss.detach(), "rows": head.sampled["rows"], "start": head.start,
                          "kept": len(head.sampled["index"]), "positives": head.start + head.sampled["index"]}
    torch.save(results, Path(out) / f"pfc{rank}.pt")


@pytest.mark.parametrize("margin", ["arcface", "cosface", "combined"])
def test_partial_fc_in_one_process_is_the_full_head(margin):
    x, y = _global_batch()
    full, partial = _full_head(margin), _partial_fc(margin)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = full(xa, y), partial(xb, y)
    want.backward()
    got.backward()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(xb.grad, xa.grad)
    torch.testing.assert_close(partial.weight.grad, full.cosine.weight.grad)


def test_partial_fc_on_two_processes_is_the_full_head_and_keeps_every_positive(two_processes):
    ranks = [torch.load(two_processes / f"pfc{r}.pt", weights_only=True) for r in range(WORLD)]
    x, y = _global_batch()
    for margin in ("arcface", "cosface", "combined"):
        full = _full_head(margin)
        xa = x.clone().requires_grad_()
        want = full(xa, y)
        want.backward()
        for r, res in enumerate(ranks):
            torch.testing.assert_close(res[margin]["loss"], want.detach())
            # DDP averages the backbone's gradients over the W processes, so each process's embeddings get W×
            torch.testing.assert_close(res[margin]["x_grad"] / WORLD, xa.grad[r * B:(r + 1) * B])
            torch.testing.assert_close(res[margin]["w_grad"], full.cosine.weight.grad)
    sampled = [res["sampled"] for res in ranks]
    assert all(torch.isfinite(s["loss"]) for s in sampled) and sampled[0]["loss"] == sampled[1]["loss"]
    rows = torch.cat([s["rows"] for s in sampled]).sort().values
    assert torch.equal(rows, torch.arange(WORLD * B))  # every row's positive logit, on exactly one process
    for s in sampled:
        assert set(y.tolist()) & set(range(s["start"], s["start"] + 6)) <= set(s["positives"].tolist())


def test_partial_fc_samples_a_tenth_and_keeps_the_positives():
    from facelearn.recognition.partial_fc import PartialFC

    torch.manual_seed(0)
    head = PartialFC(D, 1000, "arcface", 16.0, None, 0.1)
    labels = torch.randint(0, 1000, (64,))
    loss = head(torch.randn(64, D), labels)
    index, sampled = head.sampled["index"], head.sampled
    assert torch.isfinite(loss) and len(index) == 100 and set(labels.tolist()) <= set(index.tolist())
    assert torch.equal(index[sampled["cols"]], labels) and torch.equal(sampled["rows"], torch.arange(64))
    cos = torch.nn.functional.normalize(torch.randn(1, D)) @ torch.nn.functional.normalize(head.weight).T
    assert cos.shape == (1, 1000)
    crowded = torch.arange(1000)[torch.randperm(1000)[:150]]  # more positives than the sample: all kept
    assert set(head.sample(crowded)[0].tolist()) == set(crowded.tolist())


def _pfc_trainer(partial: bool, checkpoint=None, halves=False):
    from torch.utils.data import TensorDataset

    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, D))
    head = _partial_fc("arcface") if partial else _full_head("arcface")
    model = nn.ModuleDict({"backbone": backbone, "head": head})
    g = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randn(16, 3, 8, 8, generator=g), torch.arange(16) % C)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    trainer = Trainer(model, opt, lambda m, b: (m["head"](m["backbone"](b[0]), b[1]), {}), device="cpu",
                      grad_clip=0.5, checkpoint=checkpoint, seed=SEED)
    if halves:
        return trainer, DataLoader(data, batch_sampler=_GlobalBatches(len(data)))
    return trainer, make_loader(data, PER_RANK, shuffle=True, seed=SEED, drop_last=True)


def _train_pfc_ranks(rank, world, checkpoint):
    trainer, loader = _pfc_trainer(True, checkpoint)
    trainer.fit(loader, 2, progress=False)


def test_partial_fc_trains_on_two_processes_and_resumes_on_one(two_processes, tmp_path):
    ckpt = tmp_path / "pfc.pt"  # epochs 1-2 on two processes, copied: resuming here writes epoch 3 into it
    ckpt.write_bytes((two_processes / "pfc.pt").read_bytes())
    state = torch.load(ckpt, weights_only=True)
    momentum = [v["momentum_buffer"] for v in state["optimizer"]["state"].values()]
    assert state["model"]["head.weight"].shape == (C, D) and (C, D) in [tuple(m.shape) for m in momentum]
    resumed, loader = _pfc_trainer(True, ckpt, halves=True)  # epoch 3 on one
    assert resumed.epoch == 2
    resumed.fit(loader, 3, progress=False)
    straight, loader = _pfc_trainer(False, halves=True)  # the full head, 3 epochs, same global batches
    straight.fit(loader, 3, progress=False)
    want = dict(straight.model.named_parameters())
    want["head.weight"] = want.pop("head.cosine.weight")
    for name, p in resumed.model.named_parameters():
        torch.testing.assert_close(p, want[name], rtol=1e-4, atol=2e-5, msg=name)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history], rel=1e-4)


def test_nproc_option_is_parsed_and_checked(capsys):
    from facelearn.cli import main
    from facelearn.engine.distributed import strip_nproc

    assert strip_nproc(["train", "--nproc", "2", "recognition", "--out", "m.pt"]) == (2, ["train", "recognition",
                                                                                          "--out", "m.pt"])
    assert strip_nproc(["train", "recognition", "--nproc=3"]) == (3, ["train", "recognition"])
    assert strip_nproc(["train", "recognition"]) == (None, ["train", "recognition"])
    assert main(["train", "recognition", "--nproc", "0", "--out", "m.pt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "facelearn train: error: --nproc expects a positive whole number of processes, got '0'"
