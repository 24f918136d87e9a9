"""The dense regression branch inside RetinaFace (chapter "The dense regression branch")."""

import numpy as np
import pytest
import torch

from facelearn.data.synthface import render_scene
from facelearn.detection import retinaface
from facelearn.detection.loss import LossConfig, MultiTaskLoss
from facelearn.detection.mesh.branch import CODE_DIM, DENSE_VALUES, DenseBranch, face_crops, select_faces
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
    a, f, chosen = select_faces(pos, matched, overlap, gt, faces_per_image=2, min_face=16)
    assert chosen.tolist() == [[True, True]] and f.tolist() == [[1, 0]] and a.tolist() == [[3, 1]]  # largest first
    a, f, chosen = select_faces(pos, matched, overlap, gt, faces_per_image=4, min_face=16)  # face 2 too small
    assert chosen.tolist() == [[True, True, False, False]]
    assert f.tolist() == [[1, 0, 0, 0]] and a.tolist() == [[3, 1, 0, 0]]
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


# -- the choice of faces and the pixel loss without host reads: what the former implementation gave -----------
# The former implementation, kept here as the reference: a Python loop over the images and their positive
# anchors, which read every face's height and index on the host and rendered only the chosen faces.

def reference_select_faces(positives, matched, overlap, gt, faces_per_image, min_face):
    out_b, out_a, out_f = [], [], []
    with torch.no_grad():
        for b in range(positives.shape[0]):
            idx = torch.nonzero(positives[b]).flatten()
            if idx.numel() == 0:
                continue
            faces = matched[b, idx]
            heights = gt[b, faces, 3] - gt[b, faces, 1]
            order = torch.argsort(overlap[b, idx], descending=True)
            seen = {}
            for k in order.tolist():
                f = int(faces[k])
                if f not in seen and float(heights[k]) >= min_face:
                    seen[f] = int(idx[k])
            chosen = sorted(seen.items(), key=lambda fa: -float(gt[b, fa[0], 3] - gt[b, fa[0], 1]))
            for f, a in chosen[:faces_per_image]:
                out_b.append(b), out_a.append(a), out_f.append(f)
    dev = positives.device
    return (torch.tensor(out_b, dtype=torch.long, device=dev), torch.tensor(out_a, dtype=torch.long, device=dev),
            torch.tensor(out_f, dtype=torch.long, device=dev))


def reference_loss(branch, dense, positives, matched, overlap, gt, images):
    with torch.autocast(dense.device.type, enabled=False):
        b, a, f = reference_select_faces(positives, matched, overlap, gt, branch.faces_per_image, branch.min_face)
        if b.numel() == 0:
            return dense.float().sum() * 0.0, 0
        target = face_crops(images.float(), gt[b, f].float(), b, branch.size)
        background = target.mean((2, 3)).detach()
        out = branch.render(dense[b, a], background)
        per_face = (out.image - target).abs().sum(1).mean((1, 2))
        return per_face.mean(), int(b.numel())


def _matched_batch(boxes, size=160, seed=0):
    """A batch's matching against the dense model's anchors, random images and head outputs (B, A, 144)."""
    from facelearn.detection.matching import POSITIVE, match, pad_boxes

    anchors = retinaface.build("retinaface-mobilenet0.25-dense").anchors((size, size))
    gt, valid = pad_boxes([torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4) for b in boxes])
    m = match(anchors, gt, valid)
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(len(boxes), 3, size, size, generator=g)
    dense = (0.3 * torch.randn(len(boxes), len(anchors), DENSE_VALUES, generator=g)).requires_grad_()
    return dense, m.labels == POSITIVE, m.matched, m.iou, gt, images


def _scene_boxes(n, seed, faces=(1, 4), size=160):
    rng = np.random.default_rng(seed)
    return [np.stack([f.render.box for f in render_scene(rng, size, size, n_faces=int(rng.integers(*faces)))[1]])
            for _ in range(n)]


BATCHES = {  # boxes per image (x1 y1 x2 y2 pixels), faces_per_image, min_face
    "scenes": (_scene_boxes(3, seed=5), 2, 16.0),
    "scenes, all chosen": (_scene_boxes(3, seed=6, faces=(1, 3)), 3, 0.0),
    "no faces": ([np.zeros((0, 4)), np.zeros((0, 4))], 2, 16.0),
    "all too small": (_scene_boxes(2, seed=7), 2, 1000.0),
    "some without faces or too small": ([np.zeros((0, 4)), [[10, 10, 22, 20], [60, 50, 110, 110]],
                                         [[5, 5, 15, 14]], [[20, 30, 70, 90], [80, 20, 130, 60], [90, 90, 150, 156]]],
                                        2, 16.0),
    "equal heights, tied IoUs": ([[[16, 16, 48, 48], [80, 80, 112, 112], [40, 96, 72, 128]]], 2, 16.0),
    "one place": (_scene_boxes(2, seed=8), 1, 16.0),
    "more places than faces": ([[[30, 30, 90, 100]], [[10, 10, 60, 70], [70, 80, 150, 150]]], 4, 16.0),
    "no places": (_scene_boxes(2, seed=9), 0, 16.0),
}


@pytest.mark.parametrize("name", list(BATCHES))
def test_select_faces_chooses_what_the_loop_chose(name):
    boxes, per_image, min_face = BATCHES[name]
    _, pos, matched, overlap, gt, _ = _matched_batch(boxes)
    anchor, face, chosen = select_faces(pos, matched, overlap, gt, per_image, min_face)
    assert anchor.shape == face.shape == chosen.shape == (len(boxes), per_image)
    b, a, f = reference_select_faces(pos, matched, overlap, gt, per_image, min_face)
    rows = torch.arange(len(boxes))[:, None].expand_as(chosen)
    assert torch.equal(rows[chosen], b) and torch.equal(anchor[chosen], a) and torch.equal(face[chosen], f)
    assert not anchor[~chosen].any() and not face[~chosen].any()
    assert chosen.sum(1).tolist() == [int((b == i).sum()) for i in range(len(boxes))]
    assert torch.equal(chosen.long().sort(dim=1, descending=True, stable=True).values, chosen.long())  # first


def test_select_faces_height_threshold_as_floats_compare():
    """min_face between two float32 numbers: a face of height float32(min_face) counts only if its float value
    is ≥ min_face, as the loop's float(height) >= min_face decided."""
    boxes = [[[20.0, 20.0, 60.0, 60.0 + 1e-6]]]
    _, pos, matched, overlap, gt, _ = _matched_batch(boxes)
    height = float(gt[0, 0, 3] - gt[0, 0, 1])
    for min_face in (height, np.nextafter(height, 0), np.nextafter(height, 100), 40.0):
        _, _, chosen = select_faces(pos, matched, overlap, gt, 2, min_face)
        assert int(chosen.sum()) == len(reference_select_faces(pos, matched, overlap, gt, 2, min_face)[0])
        assert bool(chosen[0, 0]) == (height >= min_face)
    with pytest.raises(ValueError, match="faces_per_image"):
        select_faces(pos, matched, overlap, gt, -1, 16.0)


@pytest.fixture
def one_thread():
    """Bit-for-bit comparisons on one thread: with more, the branch's backward accumulates in an order that
    varies from run to run (the former implementation's too)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _alike(branch, k, n):
    """Whether this machine's kernels treat K chosen faces alike as a list of K and as the first K of n ≥ K
    places: the decoder gives a code the same mesh in a batch of k as in one of n (a BLAS may choose its
    matrix-product kernel by the number of rows: MKL does for fewer than 4), and the sum of n numbers whose
    last n − k are zeros, over k, is the mean of the first k (a vectorised sum may group them by length)."""
    g = torch.Generator().manual_seed(0)
    codes, values = torch.randn(n, CODE_DIM, generator=g), torch.rand(50, k, generator=g)
    with torch.no_grad():
        rows = torch.equal(branch.decoder(codes[:k]), branch.decoder(codes)[:k])
    return rows and all(torch.equal(v.mean(), torch.cat([v, v.new_zeros(n - k)]).sum() / k) for v in values)


def assert_same_loss(loss, want, grad, want_grad, alike: bool):
    """Bit for bit where the kernels treat both layouts alike (:func:`_alike`); else within their rounding,
    which the soft rasteriser's 1/γ = 100 magnifies in the gradient: the loss to 1e-5 relative (a sum of
    n ≤ 32 non-negative numbers in another order moves by at most 2(n − 1)·2⁻²⁴ ≈ 3.7e-6 of it), the gradient
    to 1e-4 of its largest entry (measured: 4e-5), and the same anchors get a gradient."""
    assert loss.dtype == want.dtype == torch.float32 and loss.ndim == 0
    if alike:
        assert torch.equal(loss, want) and torch.equal(grad, want_grad)
    else:
        torch.testing.assert_close(loss, want, rtol=1e-5, atol=0)
        assert float((grad - want_grad).abs().max()) <= 1e-4 * float(want_grad.abs().max())
        assert torch.equal(grad != 0, want_grad != 0)


@pytest.mark.parametrize("name", list(BATCHES))
def test_pixel_loss_is_what_the_loop_gave(name, one_thread):
    """The same count as the former implementation, and the same loss and gradient: every chosen face goes
    through the same operations, the mean adds them in the same order, the other places weigh exactly zero
    (:func:`assert_same_loss`)."""
    boxes, per_image, min_face = BATCHES[name]
    torch.manual_seed(0)
    cfg = DecoderConfig(features=4, width=8, order=2)
    branch = DenseBranch(MeshDecoder(cfg), MeshEncoder(cfg), size=32, code_samples=16, faces_per_image=per_image,
                         min_face=min_face)
    dense, pos, matched, overlap, gt, images = _matched_batch(boxes)
    loss, count = branch.loss(dense, pos, matched, overlap, gt, images)
    (grad,) = torch.autograd.grad(loss, dense)
    want, want_count = reference_loss(branch, dense, pos, matched, overlap, gt, images)
    (want_grad,) = torch.autograd.grad(want, dense)
    assert count.ndim == 0 and count.dtype == torch.float64 and not count.requires_grad and float(count) == want_count
    assert (want_count > 0) == (name not in ("no faces", "all too small", "no places"))
    places = len(boxes) * per_image
    assert_same_loss(loss, want, grad, want_grad, want_count == 0 or _alike(branch, want_count, places))


def test_equal_ious_choose_the_first_anchor():
    """A face whose best IoU several positives share (a box centred between anchor centres) renders through
    the first of them. The loop took the first in its argsort's order, which is the anchors' order only for
    ≤ 16 positives (the CPU sorts that few by insertion); past that, another anchor of the same IoU."""
    boxes = [[[48, 48, 208, 208], [8, 8, 40, 40]]]  # 20 positives; each face's best IoU shared by 4 anchors
    _, pos, matched, overlap, gt, _ = _matched_batch(boxes, size=256)
    anchor, face, chosen = select_faces(pos, matched, overlap, gt, 2, 16.0)
    _, want_anchor, want_face = reference_select_faces(pos, matched, overlap, gt, 2, 16.0)
    assert int(pos.sum()) > 16 and chosen.all() and torch.equal(face[0], want_face)
    for a, f, want in zip(anchor[0].tolist(), face[0].tolist(), want_anchor.tolist()):
        mine = pos[0] & (matched[0] == f)
        ties = torch.nonzero(mine & (overlap[0] == overlap[0][mine].max())).flatten().tolist()
        assert len(ties) == 4 and a == ties[0] and want in ties
    assert anchor[0].tolist() != want_anchor.tolist()  # the loop's sort broke these ties otherwise


def test_pixel_loss_through_the_multitask_loss_logs_what_the_loop_gave(branch, monkeypatch, one_thread):
    """Through MultiTaskLoss: the same loss, ``dense`` and ``rendered`` logs as the former implementation, the
    logs detached 0-d tensors (``rendered`` the number of faces per image, as the float log divided it)."""
    from facelearn.detection.mesh import branch as branch_module

    torch.manual_seed(0)
    model = retinaface.build("retinaface-mobilenet0.25-dense")
    torch.nn.init.normal_(model.heads["dense"].convs[0].weight, std=0.01)
    images, boxes, landmarks, has = _scene_batch(3, size=320)
    crit = MultiTaskLoss(LossConfig(dense_weight=0.01), dense_branch=branch)
    outputs, anchors = model(model.preprocess(images)), model.anchors(images.shape[-2:])
    loss, logs = crit(outputs, anchors, boxes, landmarks, has, images=images)
    monkeypatch.setattr(branch_module.DenseBranch, "loss", reference_loss)
    want, want_logs = crit(outputs, anchors, boxes, landmarks, has, images=images)
    assert want_logs["rendered"] > 0 and set(logs) == set(want_logs)
    if _alike(branch, round(want_logs["rendered"] * 3), 6):
        assert torch.equal(loss, want)
        assert all(float(logs[k]) == float(want_logs[k]) for k in logs)
    else:
        torch.testing.assert_close(loss, want, rtol=1e-5, atol=0)
        torch.testing.assert_close(logs["dense"], want_logs["dense"], rtol=1e-5, atol=0)
    for key, value in logs.items():
        assert torch.is_tensor(value) and value.ndim == 0 and not value.requires_grad, key
        if key != "dense":
            assert float(value) == float(want_logs[key]), key
    assert logs["rendered"].dtype == torch.float64 and float(logs["rendered"]) == want_logs["rendered"]
