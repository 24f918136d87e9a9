"""SynthFace exporters: files read back by small parsers written from the format descriptions (not the
exporter's code), the official .mat structure, determinism, nesting of the settings and bad arguments."""

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from facelearn.data.synthface import export_identities, export_wflw, export_widerface
from facelearn.data.synthface.formats import look_alike_pairs
from facelearn.data.widerface import PACKAGED_VAL_GT

REAL_GT = PACKAGED_VAL_GT  # the official val .mat files shipped with the package


@pytest.fixture(scope="module")
def wider(tmp_path_factory):
    out = tmp_path_factory.mktemp("wider")
    export_widerface(out, n_train=6, n_val=8, image_size=256, seed=1, progress=False)
    return out


@pytest.fixture(scope="module")
def wflw(tmp_path_factory):
    out = tmp_path_factory.mktemp("wflw")
    export_wflw(out, n_train=5, n_test=3, seed=2, progress=False)
    return out


@pytest.fixture(scope="module")
def ids(tmp_path_factory):
    out = tmp_path_factory.mktemp("ids")
    export_identities(out, n_identities=4, images_per_identity=3, n_test_identities=20, seed=3, progress=False)
    return out


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(tmp_path, wider):
    export_widerface(tmp_path / "again", n_train=6, n_val=8, image_size=256, seed=1, progress=False)
    assert _digest(tmp_path / "again") == _digest(wider)
    export_widerface(tmp_path / "other", n_train=6, n_val=8, image_size=256, seed=2, progress=False)
    assert _digest(tmp_path / "other") != _digest(wider)
    export_wflw(tmp_path / "w1", n_train=2, n_test=1, seed=5, progress=False)
    export_wflw(tmp_path / "w2", n_train=2, n_test=1, seed=5, progress=False)
    assert _digest(tmp_path / "w1") == _digest(tmp_path / "w2")


def test_wflw_rendered_in_worker_processes_is_the_same_bytes(tmp_path):
    export_wflw(tmp_path / "one", n_train=5, n_test=3, seed=3, progress=False)
    export_wflw(tmp_path / "two", n_train=5, n_test=3, seed=3, progress=False, workers=2)
    assert _digest(tmp_path / "two") == _digest(tmp_path / "one")
    with pytest.raises(ValueError, match="workers must be at least 1"):
        export_wflw(tmp_path / "bad", n_train=1, n_test=0, progress=False, workers=0)


def test_scenes_and_identities_rendered_in_worker_processes_are_the_same_bytes(tmp_path, wider, ids):
    export_widerface(tmp_path / "wider", n_train=6, n_val=8, image_size=256, seed=1, progress=False, workers=2)
    assert _digest(tmp_path / "wider") == _digest(wider)
    export_identities(tmp_path / "ids", n_identities=4, images_per_identity=3, n_test_identities=20, seed=3,
                      progress=False, workers=2)
    assert _digest(tmp_path / "ids") == _digest(ids)
    for export, counts in ((export_widerface, {"n_train": 1, "n_val": 0}),
                           (export_identities, {"n_identities": 1, "images_per_identity": 1, "n_test_identities": 0})):
        with pytest.raises(ValueError, match="workers must be at least 1"):
            export(tmp_path / "bad", progress=False, workers=0, **counts)


def test_a_smaller_export_is_a_prefix_of_a_larger_one(tmp_path, wider):
    """The chapters export fewer scenes than the recipes (``PAGE_SCENES``, ``PAGE_VAL_SCENES``): the first
    training and validation scenes must be byte-identical with the same faces and subsets, so a page scores a
    prefix of the images a checkpoint was scored on."""
    from facelearn.data.widerface import read_val_ground_truth

    export_widerface(tmp_path / "small", n_train=3, n_val=5, image_size=256, seed=1, progress=False)
    small, large = _digest(tmp_path / "small"), _digest(wider)
    images = [k for k in small if k.endswith(".jpg")]
    assert len([k for k in images if k.startswith("WIDER_train")]) == 3
    assert len([k for k in images if k.startswith("WIDER_val")]) == 5
    assert all(small[k] == large[k] for k in images)
    for split in ("train", "val"):
        part = (tmp_path / "small" / split / "label.txt").read_text()
        assert (wider / split / "label.txt").read_text().startswith(part)
    few, many = (read_val_ground_truth(root / "wider_face_split") for root in (tmp_path / "small", wider))
    assert few.boxes and set(few.boxes) < set(many.boxes)
    for key, boxes in few.boxes.items():
        np.testing.assert_array_equal(boxes, many.boxes[key])
        for setting in few.keep:
            np.testing.assert_array_equal(few.keep[setting][key], many.keep[setting][key])


def _parse_retinaface_labels(text: str) -> dict:
    """RetinaFace label.txt: '# <event>/<name>.jpg' then one face per line of 20 numbers."""
    images, current = {}, None
    for line in text.splitlines():
        if line.startswith("# "):
            current = line[2:]
            images[current] = []
        elif line.strip():
            nums = [float(t) for t in line.split()]
            assert len(nums) == 20, line
            images[current].append(nums)
    return images


def test_widerface_layout_and_labels(wider):
    for split in ("train", "val"):
        labels = _parse_retinaface_labels((wider / split / "label.txt").read_text())
        assert len(labels) == (6 if split == "train" else 8)
        for rel, faces in labels.items():
            event, name = rel.split("/")
            image = cv2.imread(str(wider / f"WIDER_{split}" / "images" / event / name))
            assert image is not None and image.shape[1] == 256
            for f in faces:
                x, y, w, h = f[:4]
                assert w > 0 and h > 0
                pts = np.array(f[4:19]).reshape(5, 3)
                if pts[0, 0] == -1:
                    assert (pts == -1).all()
                else:
                    assert set(pts[:, 2]) <= {0.0, 1.0}
                    assert (pts[:, 0] >= x - 0.02).all() and (pts[:, 0] <= x + w + 0.02).all()
                    assert (pts[:, 1] >= y - 0.02).all() and (pts[:, 1] <= y + h + 0.02).all()
                    assert pts[0, 0] < pts[1, 0] + 0.2 * w  # image-left eye first (up to strong roll)
    meta = json.loads((wider / "meta.json").read_text())
    assert meta["seed"] == 1 and meta["counts"]["val"]["images"] == 8


def _cells(mat, key):
    return mat[key]


def test_val_mat_files_have_the_official_structure(wider):
    real = scipy.io.loadmat(REAL_GT / "wider_hard_val.mat")
    ours = {s: scipy.io.loadmat(wider / "wider_face_split" / f"wider_{s}_val.mat") for s in ("easy", "medium", "hard")}
    full = scipy.io.loadmat(wider / "wider_face_split" / "wider_face_val.mat")
    wanted = {k for k in real if not k.startswith("__")}
    assert set(k for k in ours["hard"] if not k.startswith("__")) == wanted
    assert set(k for k in full if not k.startswith("__")) == wanted - {"gt_list"}
    labels = _parse_retinaface_labels((wider / "val" / "label.txt").read_text())
    n_files = 0
    for key in wanted:
        ours_k, real_k = ours["hard"][key], real[key]
        assert ours_k.dtype == real_k.dtype == object and ours_k.ndim == 2 and ours_k.shape[1] == 1
    for e in range(len(ours["hard"]["event_list"])):
        ev = ours["hard"]["event_list"][e, 0]
        assert ev.dtype.kind == real["event_list"][0, 0].dtype.kind == "U" and ev.shape == real["event_list"][0, 0].shape
        event = str(ev[0])
        files = ours["hard"]["file_list"][e, 0]
        assert files.dtype == object and files.shape[1] == 1
        for j in range(files.shape[0]):
            n_files += 1
            name = str(files[j, 0][0])
            boxes = ours["hard"]["face_bbx_list"][e, 0][j, 0]
            assert boxes.dtype == real["face_bbx_list"][0, 0][0, 0].dtype and boxes.shape[1] == 4
            faces = labels[f"{event}/{name}.jpg"]
            assert len(boxes) == len(faces)
            assert np.abs(boxes - np.round(np.array(faces)[:, :4])).max() <= 1
            for lab in ("blur", "occlusion", "pose", "expression", "illumination", "invalid"):
                col = ours["hard"][f"{lab}_label_list"][e, 0][j, 0]
                assert col.dtype == np.uint8 and col.shape == (len(boxes), 1)
            sets = []
            for s in ("easy", "medium", "hard"):
                idx = ours[s]["gt_list"][e, 0][j, 0].ravel().astype(int)
                assert ours[s]["gt_list"][e, 0][j, 0].dtype.kind == "u"
                assert (idx >= 1).all() and (idx <= len(boxes)).all()
                sets.append(set(idx.tolist()))
            assert sets[0] <= sets[1] <= sets[2]  # easy ⊆ medium ⊆ hard
    assert n_files == 8


def _parse_wflw_line(line: str):
    tokens = line.split()
    assert len(tokens) == 207
    pts = np.array([float(t) for t in tokens[:196]]).reshape(98, 2)
    box = [int(t) for t in tokens[196:200]]
    attrs = [int(t) for t in tokens[200:206]]
    return pts, box, attrs, tokens[206]


def test_wflw_annotations(wflw):
    meta = json.loads((wflw / "meta.json").read_text())
    for split, n in (("train", 5), ("test", 3)):
        path = wflw / "WFLW_annotations" / "list_98pt_rect_attr_train_test" / f"list_98pt_rect_attr_{split}.txt"
        lines = path.read_text().splitlines()
        assert len(lines) == n
        for line in lines:
            pts, (x1, y1, x2, y2), attrs, rel = _parse_wflw_line(line)
            image = cv2.imread(str(wflw / "WFLW_images" / rel))
            assert image is not None and 160 <= image.shape[0] <= 256
            assert x1 < x2 and y1 < y2 and set(attrs) <= {0, 1}
            assert (pts[:, 0] >= x1).all() and (pts[:, 0] <= x2).all() and (pts[:, 1] >= y1).all() and (pts[:, 1] <= y2).all()
            assert x1 >= 0 and y1 >= 0 and x2 <= image.shape[1] and y2 <= image.shape[0]  # the face box lies inside
            angles = meta["images"][rel]
            assert all(-91 <= angles[k] <= 91 for k in ("yaw", "pitch", "roll"))
            if angles["yaw"] > 15:  # the documented yaw sign, checked on the written file
                assert pts[54, 0] > (pts[96, 0] + pts[97, 0]) / 2


class _OnlyPlainData(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing {module}.{name}")


def test_identity_folders_pairs_and_bin(ids):
    assert sorted(p.name for p in (ids / "train").iterdir()) == [f"id{i:05d}" for i in range(4)]
    assert all(sorted(q.name for q in p.iterdir()) == ["1.jpg", "2.jpg", "3.jpg"] for p in (ids / "train").iterdir())
    test_names = {p.name for p in (ids / "test").iterdir()}
    assert len(test_names) == 20 and not test_names & {p.name for p in (ids / "train").iterdir()}
    lines = (ids / "pairs.txt").read_text().splitlines()
    folds, per = (int(t) for t in lines[0].split("\t"))
    assert folds == 10 and len(lines) == 1 + 2 * folds * per
    pairs = [ln.split("\t") for ln in lines[1:]]
    for f in range(folds):
        block = pairs[2 * per * f: 2 * per * (f + 1)]
        assert all(len(p) == 3 for p in block[:per]) and all(len(p) == 4 for p in block[per:])
        assert all(p[0] != p[2] for p in block[per:])
    for p in pairs:
        files = [(p[0], p[1]), (p[0], p[2])] if len(p) == 3 else [(p[0], p[1]), (p[2], p[3])]
        assert all((ids / "test" / n / f"{k}.jpg").is_file() for n, k in files)
    with open(ids / "synthface.bin", "rb") as fh:
        bins, issame = _OnlyPlainData(fh).load()
    assert len(bins) == 2 * len(issame) == 2 * len(pairs)
    assert issame == [len(p) == 3 for p in pairs]
    first = pairs[0]
    assert bins[0] == (ids / "test" / first[0] / f"{first[1]}.jpg").read_bytes()
    crop = cv2.imdecode(np.frombuffer(bins[1], np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape == (112, 112, 3)
    meta = json.loads((ids / "meta.json").read_text())
    assert meta["counts"]["pairs"] == len(pairs) and len(meta["identities"]) == 24


@pytest.mark.parametrize("call", [
    lambda out: export_widerface(out, n_train=-1, n_val=1, image_size=128, progress=False),
    lambda out: export_wflw(out, n_train=1, n_test=-3, progress=False),
    lambda out: export_identities(out, n_identities=2, images_per_identity=-1, n_test_identities=0, progress=False),
    lambda out: export_identities(out, n_identities=2, images_per_identity=2, n_test_identities=5, progress=False),
    lambda out: export_widerface(out, n_train=1, n_val=1, image_size=8, progress=False),
])
def test_bad_arguments_raise_clear_errors(tmp_path, call):
    with pytest.raises(ValueError):
        call(tmp_path / "x")


def test_unwritable_or_file_destination(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(NotADirectoryError):
        export_wflw(target, n_train=1, n_test=0, progress=False)
    if os.name == "posix" and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(PermissionError):
                export_wflw(locked / "sub", n_train=1, n_test=0, progress=False)
        finally:
            locked.chmod(0o700)


def test_cli_writes_and_fails_with_one_line(tmp_path):
    cmd = [sys.executable, "-m", "facelearn.cli", "synth", "wflw", "--out", str(tmp_path / "w"), "--n-train", "2",
           "--n-test", "1", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.load(io.StringIO(done.stdout))["train"] == 2
    bad = subprocess.run(cmd[:-5] + ["--n-train", "-2", "--n-test", "1"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--n-train" in bad.stderr
    helped = subprocess.run([sys.executable, "-m", "facelearn.cli", "synth", "identities", "--help"],
                            capture_output=True, text=True)
    assert helped.returncode == 0 and "example:" in helped.stdout


def test_look_alike_pairs_counts_mismatched_pairs_within_a_family(tmp_path, ids):
    meta = {"identities": {"test/a": {"family": "test-0"}, "test/b": {"family": "test-0"},
                           "test/c": {"family": "test-1"}, "train/a": {"family": "train-1"}}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    (tmp_path / "pairs.txt").write_text("1\t1\na\t1\t2\na\t1\tb\t2\na\t2\tc\t1\nc\t1\tb\t1\n")
    assert look_alike_pairs(tmp_path) == (1, 3)
    kin, mismatched = look_alike_pairs(ids)
    lines = (ids / "pairs.txt").read_text().splitlines()
    assert mismatched == sum(len(ln.split("\t")) == 4 for ln in lines[1:]) > 0 and 0 <= kin <= mismatched
