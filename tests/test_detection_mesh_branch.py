"""The dense regression branch inside RetinaFace (chapter "The dense regression branch")."""

import numpy as np
import pytest
import torch

from facelearn.data.synthface import render_scene
from facelearn.detection import retinaface
from facelearn.detection.loss import LossConfig, MultiTaskLoss
from facelearn.detection.mesh.branch import DENSE_VALUES, DenseBranch, face_crops, select_faces
from facelearn.detection.mesh.decoder import SHIPPED_DECODER, DecoderConfig, MeshDecoder, MeshEncoder, synthface_meshes
from facelearn.detection.training import make_loss_fn, train_config
from facelearn.models import count_parameters


def _scene_batch(n: int = 2, size: int = 160):
    images, boxes, landmarks, has = [], [], [], []
    rng = np.random.default_rng(4)
    for _ in range(n):
        bgr, faces = render_scene(rng, size, size, n_faces=2)
        images.append(torch.from_numpy(bgr[..., ::-1].copy()).permute(2, 0, 1).float() / 255)
        boxes.append(torch.tensor(np.stack([f.render.box for f in faces]), dtype=torch.float32))
        pts = np.stack([f.render.landmarks98[[96, 97, 54, 76, 82]] for f in faces])
        landmarks.append(torch.tensor(pts, dtype=torch.float32))
        has.append(torch.ones(len(faces), dtype=torch.bool))
    return torch.stack(images), boxes, landmarks, has


@pytest.fixture(scope="module")
def branch():
    torch.manual_seed(0)
    cfg = DecoderConfig(features=4, width=8, order=2)
    return DenseBranch(MeshDecoder(cfg), MeshEncoder(cfg), size=32, code_samples=16)


def test_dense_off_by_default_and_presets_unchanged():
    model = retinaface.mobilenet025_common()
    assert "dense" not in model.heads and count_parameters(model) == 426_608
    assert LossConfig().dense_weight == 0.0
    assert train_config("quick").loss.dense_weight == 0.0 and train_config("quick-dense").loss.dense_weight == 0.01
    dense = retinaface.build("retinaface-mobilenet0.25-dense")
    assert count_parameters(dense) == 426_608 + 3 * (64 * 2 * DENSE_VALUES + 2 * DENSE_VALUES)
    out = dense(torch.rand(1, 3, 64, 64))
    assert out["dense"].shape == (1, out["cls"].shape[1], DENSE_VALUES) and out["dense"].abs().max() == 0


def test_default_loss_ignores_images_bit_for_bit():
    torch.manual_seed(0)
    model = retinaface.mobilenet025_common()
    images, boxes, landmarks, has = _scene_batch()
    outputs = model(model.preprocess(images))
    anchors = model.anchors(images.shape[-2:])
    crit = MultiTaskLoss()
    a, logs_a = crit(outputs, anchors, boxes, landmarks, has)
    b, logs_b = crit(outputs, anchors, boxes, landmarks, has, images=images)
    assert torch.equal(a, b) and logs_a == logs_b and "dense" not in logs_a


def test_pixel_loss_is_finite_and_trains_the_head_not_the_decoder(branch):
    torch.manual_seed(0)
    model = retinaface.build("retinaface-mobilenet0.25-dense")
    images, boxes, landmarks, has = _scene_batch()
    crit = MultiTaskLoss(LossConfig(dense_weight=0.01), dense_branch=branch)
    loss, logs = crit(model(model.preprocess(images)), model.anchors(images.shape[-2:]), boxes, landmarks, has,
                      images=images)
    assert torch.isfinite(loss) and logs["dense"] > 0 and logs["rendered"] > 0
    loss.backward()
    head_grad = sum(float(c.weight.grad.abs().sum()) for c in model.heads["dense"].convs)
    assert head_grad > 0
    assert all(p.grad is None and not p.requires_grad for p in branch.decoder.parameters())
    with pytest.raises(ValueError, match="needs the images"):
        crit(model(model.preprocess(images)), model.anchors(images.shape[-2:]), boxes, landmarks, has)


def test_pixel_loss_under_autocast(branch):
    model = retinaface.build("retinaface-mobilenet0.25-dense")
    images, boxes, landmarks, has = _scene_batch(1)
    crit = MultiTaskLoss(LossConfig(dense_weight=0.01), dense_branch=branch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logs = crit(model(model.preprocess(images)), model.anchors(images.shape[-2:]), boxes, landmarks, has,
                          images=images)
    assert torch.isfinite(loss) and torch.isfinite(logs["dense"])


def test_select_faces_and_crops():
    pos = torch.tensor([[True, True, False, True, True]])
    matched = torch.tensor([[0, 0, 1, 1, 2]])
    overlap = torch.tensor([[0.6, 0.8, 0.1, 0.7, 0.9]])
    gt = torch.tensor([[[0.0, 0.0, 40.0, 40.0], [0.0, 0.0, 60.0, 60.0], [0.0, 0.0, 5.0, 5.0]]])
    b, a, f = select_faces(pos, matched, overlap, gt, faces_per_image=2, min_face=16)
    assert b.tolist() == [0, 0] and f.tolist() == [1, 0] and a.tolist() == [3, 1]  # largest first, best IoU
    image = torch.arange(100.0).view(1, 1, 10, 10).expand(1, 3, 10, 10)
    crop = face_crops(image, torch.tensor([[2.0, 2.0, 6.0, 6.0]]), torch.tensor([0]), 5)
    assert crop.shape == (1, 3, 5, 5) and abs(float(crop.mean()) - 38.5) < 1e-4  # centred on (4, 4): pixel 3.5


def test_make_loss_fn_passes_images_to_the_branch(branch, monkeypatch):
    from facelearn.detection import loss as loss_module

    seen = {}
    original = loss_module.MultiTaskLoss.__call__

    def spy(self, *args, images=None, **kw):
        seen["images"] = images
        return original(self, *args, images=images, **kw)

    monkeypatch.setattr(loss_module.MultiTaskLoss, "__call__", spy)
    model = retinaface.build("retinaface-mobilenet0.25")
    rgb = torch.rand(1, 3, 64, 64)
    target = {"boxes": torch.tensor([[12.8, 12.8, 38.4, 44.8]]), "landmarks": torch.full((1, 5, 2), -1.0),
              "landmark_mask": torch.tensor([False])}
    make_loss_fn()(model, (rgb, [target]))
    assert seen["images"] is rgb  # the branch renders against the [0, 1] RGB images, not the network input


@pytest.mark.skipif(not SHIPPED_DECODER.is_file(), reason="shipped decoder not built (make checkpoints)")
def test_zero_head_output_decodes_the_average_face():
    branch = DenseBranch(code_samples=64)
    mesh, camera, light = branch.decode(torch.zeros(1, DENSE_VALUES))
    mean = synthface_meshes(200, seed=3).mean(0)
    iod = float((mean[96, :3] - mean[97, :3]).norm())
    assert float((mesh[0, :, :3] - mean[:, :3]).norm(dim=-1).mean()) < 0.05 * iod
    assert torch.allclose(camera[0, :3], torch.zeros(3)) and float(camera[0, 5]) == 80.0


@pytest.mark.skipif(not SHIPPED_DECODER.is_file(), reason="shipped decoder not built (make checkpoints)")
def test_quick_dense_recipe_trains_and_exports(tmp_path):
    """The recipe's whole path: SynthFace export → Trainer with the branch → export → load_detector."""
    from facelearn.data.synthface import export_widerface
    from facelearn.detection.training import export_weights, load_detector, train

    root = tmp_path / "wider"
    export_widerface(root, n_train=4, n_val=1, image_size=256, seed=2, progress=False)
    cfg = train_config("quick-dense", epochs=1, batch_size=4, image_size=128)
    result = train(cfg, root, device="cpu", progress=False)
    model, history = result.model, result.history
    assert np.isfinite(history[-1]["dense"]) and history[-1]["rendered"] > 0
    path = export_weights(model, tmp_path / "qd.pt", preset=cfg.model, recipe=cfg.name)
    assert "dense" in load_detector(path).heads


def test_fine_tune_starts_both_runs_from_the_shipped_detector(tmp_path):
    """Branch off and on start from the same shipped weights, read through the registry (at learning rate 0
    every weight but BatchNorm's running statistics stays the shipped one)."""
    from facelearn.data.synthface import export_widerface
    from facelearn.detection.mesh.ablation import fine_tune
    from facelearn.detection.training import find_checkpoint, load_detector

    root = tmp_path / "wider"
    export_widerface(root, n_train=2, n_val=0, image_size=256, seed=3, progress=False)
    start = find_checkpoint("retinaface_mnet025_quick.pt")
    shipped = load_detector(start).state_dict()
    for recipe in ("quick", "quick-dense"):
        model, history = fine_tune(recipe, start, root, images=2, epochs=1, device="cpu", lr_scale=0.0)
        assert len(history) == 1
        weights = model.state_dict()
        assert all(torch.equal(weights[k], shipped[k]) for k in shipped if not k.endswith("running_mean")
                   and not k.endswith("running_var") and not k.endswith("num_batches_tracked"))
