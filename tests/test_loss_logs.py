"""The training losses log detached 0-d tensors on the device and never make the host wait for it, and a run's
history is what the logs gave when they were Python floats (book: "How to run it")."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
import torch
from torch.utils.data import TensorDataset

import facelearn
from facelearn.detection import retinaface
from facelearn.detection.loss import LossConfig as DetectionLossConfig, MultiTaskLoss
from facelearn.detection.mesh import decoder as mesh_decoder
from facelearn.detection.mesh.branch import DenseBranch
from facelearn.detection.mesh.decoder import DecoderConfig, MeshDecoder, MeshEncoder, synthface_meshes
from facelearn.engine import Trainer, make_loader
from facelearn.landmarks import recipe as landmarks_recipe
from facelearn.landmarks.loss import (CATEGORIES, LossConfig, PFLDObjective, attribute_weight, categories,
                                     landmark_distance, pfld_loss)
from facelearn.landmarks.pfld import PFLDConfig, pfld_pair
from facelearn.models import preset
from facelearn.recognition import metric, training
from facelearn.recognition.classifier import EmbeddingClassifier, classification_step
from facelearn.recognition.margins import ArcFaceHead
from facelearn.recognition.normalisation import l2_normalise
from host_reads import host_reads
from test_landmarks_data import make_wflw

def assert_device_logs(logs, device, floats=()):
    """Every log is a detached 0-d tensor on ``device``, except those named in ``floats``, plain Python numbers."""
    for key, value in logs.items():
        if key in floats:
            assert type(value) is float, key
            continue
        assert torch.is_tensor(value) and value.ndim == 0 and not value.requires_grad, key
        assert value.device == torch.device(device), key


def same_history(new, old):
    """Equal, epoch by epoch, in every value but the wall-clock time; every value a Python float."""
    assert len(new) == len(old) and len(new) > 0
    for a, b in zip(new, old):
        a, b = ({k: v for k, v in r.items() if k != "seconds"} for r in (a, b))
        assert all(type(v) in (float, int) for v in a.values()), a
        assert a == b


# -- each loss: device logs, no host wait ---------------------------------------------------------------------
def _pfld_batch(n=3):
    g = torch.Generator().manual_seed(0)
    return {"image": torch.rand(n, 3, 112, 112, generator=g), "landmarks": torch.rand(n, 196, generator=g),
            "angles": torch.rand(n, 3, generator=g) - 0.5, "attributes": (torch.rand(n, 6, generator=g) < 0.3).float()}


@pytest.mark.parametrize("config", [LossConfig(), LossConfig(attributes="sampling"), LossConfig(weighted=False)],
                         ids=["weighted", "sampling", "plain"])
def test_pfld_objective_logs_on_the_device_without_waiting(monkeypatch, config):
    torch.manual_seed(0)
    model, batch = pfld_pair(PFLDConfig(0.25)), _pfld_batch()
    objective = PFLDObjective(torch.ones(len(CATEGORIES)), config, mean_attribute_weight=1.5)
    with host_reads(monkeypatch) as calls:
        loss, logs = objective(model, batch)
    assert sum(calls.values()) == 0, calls
    assert set(logs) == ({"plain", "angle_error_deg"} if config.weighted else {"plain"})
    assert_device_logs(logs, "cpu")


def test_classification_step_logs_on_the_device_without_waiting(monkeypatch):
    torch.manual_seed(0)
    model = EmbeddingClassifier(preset("synthface-cnn").build(), ArcFaceHead(128, 4, 32.0, 0.5))
    batch = (torch.rand(6, 3, 64, 64), torch.arange(6) % 4)
    with host_reads(monkeypatch) as calls:
        loss, logs = classification_step(model, batch)
    assert sum(calls.values()) == 0, calls
    assert set(logs) == {"accuracy"}
    assert_device_logs(logs, "cpu")


@pytest.mark.parametrize("mining", ["all", "hard", "semihard"])
def test_triplet_loss_waits_only_for_the_number_of_triplets(monkeypatch, mining):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, 8, generator=g, requires_grad=True), torch.arange(12) % 4
    with host_reads(monkeypatch) as calls:
        loss, logs = metric.triplet_loss(x, y, 0.2, mining)
    # mining finds the triplets with one torch.nonzero: their number T (the mean's denominator, the shape of
    # everything after) is known on the host only once the device has mined them
    assert calls == Counter({"torch.nonzero": 1})
    assert logs["triplets"] > 0 and set(logs) == {"triplets", "active"}
    assert_device_logs(logs, "cpu", floats=("triplets",))
    empty_loss, empty = metric.triplet_loss(x, torch.arange(12), 0.2, mining)  # no positives: no triplet
    assert empty["triplets"] == 0.0 and float(empty["active"]) == 0.0
    assert_device_logs(empty, "cpu", floats=("triplets",))


def test_center_loss_head_logs_on_the_device_without_waiting(monkeypatch):
    torch.manual_seed(0)
    head = metric.CenterLossHead(8, 5, lam=0.1).train()
    x, y = torch.randn(10, 8, requires_grad=True), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 4, 4])
    with host_reads(monkeypatch) as calls:
        loss = head(x, y)
    assert sum(calls.values()) == 0, calls
    assert set(head.last) == {"softmax", "center"}
    assert_device_logs(head.last, "cpu")
    assert float(loss.detach()) == float(head.last["softmax"] + 0.1 * head.last["center"])


def test_center_update_counts_are_bincounts():
    g = torch.Generator().manual_seed(2)
    cl = metric.CenterLoss(6, 7, alpha=0.5)
    cl.centers.copy_(torch.randn(7, 6, generator=g))
    x, y = torch.randn(40, 6, generator=g), torch.randint(0, 5, (40,), generator=g)  # classes 5, 6 unseen
    counts = torch.bincount(y, minlength=7).float()[:, None]
    sums = torch.zeros(7, 6).index_add_(0, y, x)
    want = cl.centers - 0.5 * ((counts * cl.centers - sums) / (1.0 + counts))
    cl.update_centers(x, y)
    assert torch.equal(cl.centers, want)


def test_autoencoder_loss_logs_on_the_device_without_waiting(monkeypatch):
    torch.manual_seed(0)
    cfg = DecoderConfig(features=4, width=8, order=2)
    meshes = synthface_meshes(4, seed=0)
    model = torch.nn.ModuleDict({"encoder": MeshEncoder(cfg), "decoder": MeshDecoder(cfg)})
    model["encoder"].set_normalisation(meshes)
    model["decoder"].set_normalisation(meshes)
    loss_fn = mesh_decoder.autoencoder_loss(1.0)
    with host_reads(monkeypatch) as calls:
        loss, logs = loss_fn(model, (meshes,))
    assert sum(calls.values()) == 0, calls
    assert set(logs) == {"xyz", "rgb"}
    assert_device_logs(logs, "cpu")
    assert float(loss.detach()) == float(logs["xyz"] + logs["rgb"])


def test_dense_branch_waits_only_for_the_renderer_pair_count(monkeypatch):
    """The detection loss with the dense branch on (chapter 13), forward and backward: the faces to render are
    chosen with fixed shapes, so the only wait is the soft rasteriser's: its pixel–triangle pair list has as
    many entries as the rendered triangles cover pixels, a length known only once the device has projected
    them (``torch.repeat_interleave`` by per-triangle counts reads their sum)."""
    torch.manual_seed(0)
    cfg = DecoderConfig(features=4, width=8, order=2)
    branch = DenseBranch(MeshDecoder(cfg), MeshEncoder(cfg), size=32, code_samples=16)
    model = retinaface.build("retinaface-mobilenet0.25-dense")
    torch.nn.init.normal_(model.heads["dense"].convs[0].weight, std=0.01)
    images = torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(5))
    boxes = [torch.tensor([[20.0, 30.0, 70.0, 95.0], [90.0, 20.0, 140.0, 80.0]]),
             torch.tensor([[40.0, 40.0, 120.0, 140.0]])]
    landmarks = [torch.full((len(b), 5, 2), -1.0) for b in boxes]
    has = [torch.zeros(len(b), dtype=torch.bool) for b in boxes]
    outputs, anchors = model(model.preprocess(images)), model.anchors((160, 160))
    crit = MultiTaskLoss(DetectionLossConfig(dense_weight=0.01), dense_branch=branch)
    repeats = Counter()
    repeat_interleave = torch.repeat_interleave

    def counting_repeat_interleave(input, repeats_=None, *args, **kwargs):
        if torch.is_tensor(repeats_) and kwargs.get("output_size") is None and len(args) < 2:
            repeats["torch.repeat_interleave"] += 1  # the output's length is the sum of the counts
        return repeat_interleave(input, repeats_, *args, **kwargs)

    monkeypatch.setattr(torch, "repeat_interleave", counting_repeat_interleave)
    with host_reads(monkeypatch) as calls:
        loss, logs = crit(outputs, anchors, boxes, landmarks, has, images=images)
        loss.backward()
    assert sum(calls.values()) == 0, calls
    assert repeats == Counter({"torch.repeat_interleave": 1})  # one render of the batch's faces
    assert {"dense", "rendered"} <= set(logs)
    assert_device_logs(logs, "cpu")
    assert float(logs["rendered"]) == 1.5 and float(logs["dense"]) > 0


def test_a_trainer_step_between_waits_reads_nothing_back(monkeypatch):
    """A fused optimiser's deferred finiteness check (CUDA's default, here on the CPU): the step's logs are
    device tensors and no step between two waits reads one."""
    torch.manual_seed(0)
    model = EmbeddingClassifier(preset("synthface-cnn").build(), ArcFaceHead(128, 4, 32.0, 0.5))
    trainer = Trainer(model, torch.optim.Adam(model.parameters(), lr=1e-3, fused=True), classification_step,
                      device="cpu", grad_clip=5.0, log_every=100)
    assert trainer._deferred
    batch = (torch.rand(6, 3, 64, 64), torch.arange(6) % 4)
    with host_reads(monkeypatch) as calls:
        steps = [trainer.train_step(batch) for _ in range(3)]
    assert sum(calls.values()) == 0, calls
    for logs in steps:
        assert set(logs) == {"loss", "accuracy"}
        assert_device_logs(logs, "cpu")


# -- histories: what the float logs gave ----------------------------------------------------------------------
# Each reference computes its logs as the loss did when they were Python floats; the Trainer summed those on the
# host in float64, and sums the device tensors in float64 too, so every epoch's mean is the same number.

class FloatLogsPFLDObjective(PFLDObjective):
    def __call__(self, model, batch):
        pred, feature = model["pfld"](model["pfld"].preprocess(batch["image"]))
        plain = landmark_distance(pred, batch["landmarks"], self.config.distance).mean()
        angles = model["aux"](feature)
        if self.config.attributes == "sampling":
            w = torch.full((len(pred),), self.mean_attribute_weight, dtype=pred.dtype, device=pred.device)
        else:
            w = attribute_weight(categories(batch["angles"], batch["attributes"], self.thresholds), self.omega)
        loss = pfld_loss(pred, batch["landmarks"], angles, batch["angles"], w, self.config.distance)
        angle_error = torch.rad2deg((angles - batch["angles"]).abs()).mean()
        return loss, {"plain": float(plain.detach()), "angle_error_deg": float(angle_error.detach())}


@pytest.mark.parametrize("attributes", ["sampling", "loss"])
def test_pfld_history_is_what_float_logs_gave(tmp_path, monkeypatch, attributes):
    torch.set_num_threads(1)
    root = make_wflw(tmp_path / "data", n_train=12, n_test=1)
    rec = facelearn.get_recipe("landmarks", "quick", epochs=2, batch_size=4)
    rec = dataclasses.replace(rec, loss=dataclasses.replace(rec.loss, attributes=attributes))
    assert rec.loss.weighted
    new = landmarks_recipe.train(rec, root, device="cpu", progress=False).history
    monkeypatch.setattr(landmarks_recipe, "PFLDObjective", FloatLogsPFLDObjective)
    old = landmarks_recipe.train(rec, root, device="cpu", progress=False).history
    assert {"loss", "plain", "angle_error_deg"} <= set(new[0])
    same_history(new, old)


def float_logs_classification_step(model, batch):
    images, labels = batch
    features = model.backbone(model.backbone.preprocess(images))
    loss = model.head(features, labels)
    with torch.no_grad():
        accuracy = (model.head.logits(features).argmax(1) == labels).float().mean()
    return loss, {"accuracy": float(accuracy)}


def _arcface_run(loss_fn):
    torch.manual_seed(0)
    model = EmbeddingClassifier(preset("synthface-cnn").build(), ArcFaceHead(128, 4, 32.0, 0.5))
    g = torch.Generator().manual_seed(3)
    data = TensorDataset(torch.rand(24, 3, 64, 64, generator=g), torch.arange(24) % 4)
    trainer = Trainer(model, torch.optim.Adam(model.parameters(), lr=3e-3), loss_fn, device="cpu", seed=0,
                      log_every=2)
    return trainer.fit(make_loader(data, 5, seed=0, drop_last=True), 2, progress=False)


def test_arcface_classifier_history_is_what_float_logs_gave():
    torch.set_num_threads(1)
    new = _arcface_run(classification_step)
    old = _arcface_run(float_logs_classification_step)
    assert set(new[0]) == {"loss", "accuracy", "epoch", "seconds"}
    same_history(new, old)


def _identities():
    g = torch.Generator().manual_seed(4)
    return TensorDataset(torch.rand(24, 3, 64, 64, generator=g), torch.arange(24) % 6)


def test_triplet_history_is_what_float_logs_gave(monkeypatch):
    torch.set_num_threads(1)
    rec = training.RecognitionRecipe.quick(loss="triplet", epochs=2, batch_size=6, images_per_identity=2)
    new = training.train(rec, _identities(), 6, device="cpu", progress=False).history
    triplet_loss = metric.triplet_loss

    def float_logs_triplet_loss(embeddings, labels, margin, mining):
        loss, _ = triplet_loss(embeddings, labels, margin, mining)
        with torch.no_grad():
            d = metric.pairwise_squared_distances(l2_normalise(embeddings.float()))
            t = metric.mine_triplets(d, labels, mining, margin)
            losses = torch.relu(d[t[:, 0], t[:, 1]] - d[t[:, 0], t[:, 2]] + margin)
        return loss, {"triplets": float(len(t)), "active": float((losses > 0).float().mean())}

    monkeypatch.setattr(metric, "triplet_loss", float_logs_triplet_loss)
    old = training.train(rec, _identities(), 6, device="cpu", progress=False).history
    assert {"loss", "triplets", "active"} <= set(new[0])
    same_history(new, old)


def test_center_loss_history_is_what_float_logs_gave(monkeypatch):
    torch.set_num_threads(1)
    rec = training.RecognitionRecipe.quick(loss="center", epochs=2, batch_size=8, center_lambda=0.1)
    new = training.train(rec, _identities(), 6, device="cpu", progress=False).history

    def float_logs_forward(self, x, labels):
        ls, lc = self.softmax(x, labels), self.center(x, labels)
        self.last = {"softmax": float(ls.detach()), "center": float(lc.detach())}
        return ls + self.lam * lc

    @torch.no_grad()
    def bincount_update(self, x, labels):
        counts = torch.bincount(labels, minlength=len(self.centers)).to(x.dtype)
        sums = torch.zeros_like(self.centers).index_add_(0, labels, x)
        self.centers -= self.alpha * ((counts[:, None] * self.centers - sums) / (1.0 + counts[:, None]))

    monkeypatch.setattr(metric.CenterLossHead, "forward", float_logs_forward)
    monkeypatch.setattr(metric.CenterLoss, "update_centers", bincount_update)
    old = training.train(rec, _identities(), 6, device="cpu", progress=False).history
    assert {"loss", "softmax", "center"} <= set(new[0])
    same_history(new, old)


def float_logs_autoencoder_loss(colour_weight):
    def loss_fn(model, batch):
        meshes = batch[0].float()
        recon = model["decoder"](model["encoder"](meshes)).float()
        xyz = ((recon[..., :3] - meshes[..., :3]) / model["decoder"].scale[:3]).abs().mean()
        rgb = (recon[..., 3:] - meshes[..., 3:]).abs().mean()
        return xyz + colour_weight * rgb, {"xyz": float(xyz.detach()), "rgb": float(rgb.detach())}
    return loss_fn


def test_mesh_autoencoder_history_is_what_float_logs_gave(monkeypatch):
    torch.set_num_threads(1)
    cfg = DecoderConfig(features=4, width=8, order=2, n_train=32, epochs=2, batch_size=8, lr=3e-3)
    meshes = synthface_meshes(cfg.n_train, seed=0)
    new = mesh_decoder.pretrain_autoencoder(cfg, train_meshes=meshes, progress=False, device="cpu")[2]
    monkeypatch.setattr(mesh_decoder, "autoencoder_loss", float_logs_autoencoder_loss)
    old = mesh_decoder.pretrain_autoencoder(cfg, train_meshes=meshes, progress=False, device="cpu")[2]
    assert {"loss", "xyz", "rgb"} <= set(new[0])
    same_history(new, old)
