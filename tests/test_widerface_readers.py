import numpy as np
import pytest
import scipy.io

from facelearn.data.widerface import PACKAGED_VAL_GT, find_val_ground_truth, read_labels, read_val_ground_truth
from facelearn.errors import DataError


def test_read_labels_with_and_without_landmarks(tmp_path):
    f = tmp_path / "label.txt"
    f.write_text(
        "# 0--Parade/a.jpg\n"
        "10 20 30 40 15 25 0.0 35 25 0.0 25 35 0.0 18 50 0.0 32 50 0.0 0.9\n"
        "50 60 8 9 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1\n"
        "# 1--Handshaking/b.jpg\n"
        "1 2 3 4\n"
    )
    images = read_labels(f)
    assert [im.name for im in images] == ["0--Parade/a.jpg", "1--Handshaking/b.jpg"]
    a = images[0]
    assert a.boxes.tolist() == [[10, 20, 30, 40], [50, 60, 8, 9]]
    assert a.has_landmarks.tolist() == [True, False]
    assert a.landmarks[0].tolist() == [[15, 25], [35, 25], [25, 35], [18, 50], [32, 50]]
    assert (a.landmarks[1] == -1).all() and a.blur[0] == pytest.approx(0.9)
    assert images[1].boxes.shape == (1, 4) and not images[1].has_landmarks.any()


@pytest.mark.parametrize("text,message", [
    ("# a.jpg\n1 2 3\n", "label.txt:2: expected 4 or 20 numbers, got 3"),
    ("# a.jpg\n1 2 x 4\n", "label.txt:2: expected numbers"),
    ("1 2 3 4\n", "label.txt:1: face line before the first"),
    ("# a.jpg\n1 2 -3 4\n", "label.txt:2: negative box size"),
    ("", "label.txt: no '# <event>/<name>.jpg' lines"),
])
def test_bad_label_files_name_file_and_line(tmp_path, text, message):
    f = tmp_path / "label.txt"
    f.write_text(text)
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        read_labels(f)


def test_real_val_ground_truth_counts():
    gt = read_val_ground_truth(PACKAGED_VAL_GT)
    assert len(gt.events) == 61
    assert sum(len(v) for v in gt.files.values()) == 3226
    assert sum(len(b) for b in gt.boxes.values()) == 39708
    assert [sum(len(v) for v in gt.keep[s].values()) for s in ("easy", "medium", "hard")] == [7211, 13319, 31958]
    for key, idx in gt.keep["easy"].items():  # easy ⊆ medium ⊆ hard, image by image
        assert set(idx) <= set(gt.keep["medium"][key]) <= set(gt.keep["hard"][key])


def test_find_val_ground_truth_prefers_the_environment(tmp_path, monkeypatch):
    for stem in ("wider_face_val", "wider_easy_val", "wider_medium_val", "wider_hard_val"):
        (tmp_path / f"{stem}.mat").write_bytes(b"")
    monkeypatch.setenv("FACELEARN_WIDER_GT", str(tmp_path))
    assert find_val_ground_truth() == tmp_path


def test_find_val_ground_truth_falls_back_to_the_packaged_copy(monkeypatch):
    monkeypatch.delenv("FACELEARN_WIDER_GT", raising=False)
    assert find_val_ground_truth() == PACKAGED_VAL_GT


def test_packaged_ground_truth_is_the_registry_s():
    import hashlib

    from facelearn.data.download import REGISTRY

    for stem in ("wider_face_val", "wider_easy_val", "wider_medium_val", "wider_hard_val"):
        digest = hashlib.sha256((PACKAGED_VAL_GT / f"{stem}.mat").read_bytes()).hexdigest()
        assert digest == REGISTRY[stem].sha256


def test_find_val_ground_truth_refuses_an_incomplete_environment_folder(tmp_path, monkeypatch):
    (tmp_path / "wider_face_val.mat").write_bytes(b"")
    monkeypatch.setenv("FACELEARN_WIDER_GT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="wider_easy_val.mat: missing"):
        find_val_ground_truth()


def test_missing_or_broken_ground_truth(tmp_path):
    with pytest.raises(DataError, match="wider_face_val.mat: missing WIDER FACE ground-truth file"):
        read_val_ground_truth(tmp_path)
    for stem in ("wider_face_val", "wider_easy_val", "wider_medium_val", "wider_hard_val"):
        scipy.io.savemat(tmp_path / f"{stem}.mat", {"event_list": np.zeros((1, 1))})
    with pytest.raises(DataError, match="wider_face_val.mat: no 'file_list' variable"):
        read_val_ground_truth(tmp_path)
