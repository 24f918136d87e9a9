"""The reference implementations' released weights load into facelearn's models and reproduce what the
reference code computed (fixtures in ../shared/data/reference_models, described by its README).

The fill rule that rebuilds the three manifest-only releases is written here from the README's table and
checked against the manifest's SHA-256 of the generated tensors.
"""

import hashlib
import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

import facelearn
from facelearn.detection.postprocess import postprocess
from facelearn.errors import DataError

REF = Path(__file__).resolve().parents[2] / "shared" / "data" / "reference_models"
pytestmark = pytest.mark.skipif(not REF.is_dir(), reason="../shared/data/reference_models is absent (project fixtures)")
MNET = REF / "biubug6_mobilenet025"


def fill(manifest: dict) -> dict:
    """The object the release file holds, generated from ``manifest.json`` by the README's fill rule."""
    gain = manifest["fill"]["gain"]
    dicts = {}
    for top, entries in manifest["state_dicts"].items():
        keys = {key for key, _, _ in entries}
        state = {}
        for key, shape, dtype in entries:
            module, _, leaf = key.rpartition(".")
            if dtype == "int64":
                state[key] = torch.zeros(shape, dtype=torch.int64)
                continue
            u = torch.rand(shape, generator=torch.Generator().manual_seed(zlib.crc32(key.encode())))
            if leaf in ("bias", "running_mean"):
                state[key] = 0.2 * u - 0.1
            elif leaf == "running_var" or (leaf == "weight" and f"{module}.running_mean" in keys):
                state[key] = 0.5 + u
            elif leaf == "weight" and len(shape) == 1:
                state[key] = 0.2 + 0.1 * u
            else:
                state[key] = (2 * u - 1) * (gain * math.sqrt(3 / math.prod(shape[1:])))
        dicts[top] = state
    check = hashlib.sha256()  # every key in order, counters included
    for state in dicts.values():
        for key, value in state.items():
            check.update(key.encode())
            check.update(value.numpy().tobytes())
    assert check.hexdigest() == manifest["fill"]["sha256"], "the fill rule did not reproduce the release's tensors"
    if manifest["layout"] == "state_dict":
        return dicts["state_dict"]
    return {k: dicts[k] if k in dicts else manifest["other_values"][k] for k in manifest["top_level_keys"]}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Path of the release file of a manifest fixture, written once per module."""
    folder = tmp_path_factory.mktemp("releases")
    made = {}

    def make(name: str, change=None) -> Path:
        if (name, change) not in made:
            obj = fill(json.loads((REF / name / "manifest.json").read_text()))
            if change is not None:
                obj = change(obj)
            made[name, change] = folder / f"{name}-{len(made)}.pth"
            torch.save(obj, made[name, change])
        return made[name, change]

    return make


def read_rgb(path: Path) -> np.ndarray:
    """The image as cv2 decodes it (biubug6's detect.py reads with cv2.imread), as RGB."""
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1].copy()


def heads(model, rgb: np.ndarray) -> dict[str, np.ndarray]:
    """biubug6's raw outputs (loc, conf softmaxed, landms) from facelearn's model on one image."""
    x = facelearn.get_weights("biubug6-mobilenet0.25").transforms()(rgb)
    with torch.no_grad():
        out = model(x)
    return {"loc": out["box"].numpy(), "conf": out["cls"].softmax(-1).numpy(), "landms": out["landmarks"].numpy()}


def assert_heads(mine: dict, expected, tol: dict) -> None:
    for key, bound in tol.items():
        diff = float(np.abs(mine[key] - expected[key]).max())
        print(f"{key}: max |diff| {diff:.3g}")
        assert diff <= bound, f"{key} differs by {diff}"


def test_biubug6_mobilenet_heads():
    torch.set_num_threads(1)
    model = facelearn.get_model("retinaface-mobilenet0.25", weights=MNET / "mobilenet0.25_like.pth")
    mine = heads(model, read_rgb(MNET / "images" / "astronaut.jpg"))
    assert_heads(mine, np.load(MNET / "expected_heads.npz"), {"loc": 1e-4, "landms": 1e-4, "conf": 1e-5})


def test_biubug6_mobilenet_detections_match_the_reference_lists():
    """detect.py's pipeline (threshold 0.02, 5000 best, '+1' NMS at 0.4, 750 kept, no clamping) reproduced
    with the post-processing's ``plus_one`` option: every detection at score ≥ 0.5 matched one to one."""
    torch.set_num_threads(1)
    expected = json.loads((MNET / "expected_detections.json").read_text())
    model = facelearn.get_model("retinaface-mobilenet0.25", weights=MNET / "mobilenet0.25_like.pth")
    for name, ref in expected["images"].items():
        bgr = read_rgb(MNET / "images" / name)[..., ::-1]
        assert hashlib.sha256(np.ascontiguousarray(bgr).tobytes()).hexdigest() == ref["decoded_bgr_sha256"]
        x = facelearn.get_weights("biubug6-mobilenet0.25").transforms()(bgr[..., ::-1])
        with torch.no_grad():
            out = model(x)
        det = postprocess(out, model.anchors(tuple(x.shape[-2:])), score_threshold=0.02, nms_iou=0.4,
                          pre_nms_top_k=5000, max_detections=750, plus_one=True)[0]
        assert len(det) == ref["num_detections"]
        rows = torch.tensor(ref["detections"], dtype=torch.float32)
        rows = rows[rows[:, 4] >= 0.5]
        mine = det.take((det.scores >= 0.5).nonzero().squeeze(1))
        assert len(mine) == len(rows)
        iou = box_iou(rows[:, :4], mine.boxes)
        match = iou.argmax(1)
        assert sorted(match.tolist()) == list(range(len(mine)))  # one to one
        assert float(iou.max(1).values.min()) >= 0.99
        assert float((rows[:, 4] - mine.scores[match]).abs().max()) <= 1e-3
        landmark_diff = float((rows[:, 5:] - mine.landmarks[match].flatten(1)).abs().max())
        print(f"{name}: {len(rows)} at >= 0.5, landmarks max |diff| {landmark_diff:.3g} px")
        assert landmark_diff <= 0.01


def test_biubug6_resnet50_heads(release):
    torch.set_num_threads(1)
    model = facelearn.get_model("retinaface-resnet50", weights=release("biubug6_resnet50"))
    mine = heads(model, read_rgb(MNET / "images" / "astronaut.jpg"))
    assert_heads(mine, np.load(REF / "biubug6_resnet50" / "expected_heads.npz"), {"loc": 1e-4, "landms": 1e-4,
                                                                                  "conf": 1e-5})


def test_arcface_torch_iresnet50_embeddings(release):
    torch.set_num_threads(1)
    weights = facelearn.get_weights("arcface_torch-ms1mv3-r50")
    model = facelearn.get_model("iresnet50", weights=release("arcface_torch_iresnet50"))
    with torch.no_grad():
        emb = model(weights.transforms()(np.load(REF / "arcface_torch_iresnet50" / "input_rgb_uint8.npy")))
    diff = float(np.abs(emb.numpy() - np.load(REF / "arcface_torch_iresnet50" / "expected_embeddings.npy")).max())
    print(f"embeddings: max |diff| {diff:.3g}")
    assert diff <= 1e-4


@pytest.mark.parametrize("key", ["pfld_backbone", "plfd_backbone"])
def test_pfld_pytorch_landmarks_and_angles(release, key):
    torch.set_num_threads(1)
    rename = None if key == "pfld_backbone" else _old_key
    path = release("pfld_pytorch_1x", rename)
    crops = np.load(REF / "pfld_pytorch_1x" / "input_bgr_uint8.npy")[..., ::-1]  # the readers' RGB
    pfld = facelearn.get_model("pfld-1x", weights=path)
    aux = facelearn.get_model("pfld-aux-1x", weights=path)
    with torch.no_grad():
        landmarks, feature = pfld(facelearn.get_weights("pfld_pytorch-1x").transforms()(crops))
        angles = aux(feature)
    expected = np.load(REF / "pfld_pytorch_1x" / "expected_outputs.npz")
    for name, value in (("landmarks", landmarks), ("angles", angles)):
        diff = float(np.abs(value.numpy() - expected[name]).max())
        print(f"{name}: max |diff| {diff:.3g}")
        assert diff <= 1e-5


def _old_key(obj: dict) -> dict:
    return {("plfd_backbone" if k == "pfld_backbone" else k): v for k, v in obj.items()}


def test_pfld_bn8_would_show_if_applied(release):
    """The reference never applies bn8: a model that did would be off by far more than the tolerance."""
    from facelearn.landmarks.pfld import PFLD, PFLDConfig
    from facelearn.releases.pairing import pair_in_order
    from facelearn.weights import BGR_UNIT_112

    state = torch.load(release("pfld_pytorch_1x"), weights_only=True)
    applied = PFLD(PFLDConfig(input=BGR_UNIT_112))
    applied.load_state_dict(pair_in_order(state["pfld_backbone"], applied, "x", "test"))
    crops = np.load(REF / "pfld_pytorch_1x" / "input_bgr_uint8.npy")[..., ::-1]
    with torch.no_grad():
        landmarks, _ = applied.eval()(facelearn.get_weights("pfld_pytorch-1x").transforms()(crops))
    expected = np.load(REF / "pfld_pytorch_1x" / "expected_outputs.npz")["landmarks"]
    assert np.abs(landmarks.numpy() - expected).max() > 0.01


def test_release_of_another_architecture_is_refused_in_one_line(release):
    mnet = MNET / "mobilenet0.25_like.pth"
    with pytest.raises(DataError) as err:
        facelearn.get_model("retinaface-resnet50", weights=mnet)
    assert str(err.value) == (f"{mnet}: holds biubug6/Pytorch_Retinaface weights of retinaface-mobilenet0.25; "
                              f"expected retinaface-resnet50")
    with pytest.raises(DataError, match=r"holds deepinsight/insightface arcface_torch weights of iresnet50; "
                                        r"expected pfld-1x$"):
        facelearn.get_model("pfld-1x", weights=release("arcface_torch_iresnet50"))
    with pytest.raises(DataError, match=r"holds polarisZhao/PFLD-pytorch weights of pfld-1x / pfld-aux-1x; "
                                        r"expected iresnet18$"):
        facelearn.get_model("iresnet18", weights=release("pfld_pytorch_1x"))
    with pytest.raises(DataError, match="expected a detection model$"):
        facelearn.load(release("arcface_torch_iresnet50"), task="detection")
    assert "\n" not in str(err.value)


def test_load_recognises_a_release_by_itself(release):
    model = facelearn.load(MNET / "mobilenet0.25_like.pth")
    assert model.config.input.channels == "BGR" and model.config.input.mean == (104.0, 117.0, 123.0)
    assert type(facelearn.load(release("pfld_pytorch_1x"), task="landmarks")).__name__ == "PFLD"
