"""Damaged files, generated here, fed to every reader: each must raise DataError naming the file (and line)."""

from __future__ import annotations

import pickle
import struct
import tracemalloc

import cv2
import numpy as np
import pytest
import scipy.io

from facelearn.data import files, identities, wflw, widerface
from facelearn.detection.predictions import read_prediction_file
from facelearn.errors import DataError

FACE = "10 20 30 40 15 25 0 35 25 0 25 35 0 18 50 0 32 50 0 0.5"
BINARY = bytes(range(256)) * 4


def _raises(call, *message: str):
    """``call()`` raises DataError whose one-line text contains every fragment of ``message``."""
    with pytest.raises(DataError) as err:
        call()
    text = str(err.value)
    assert "\n" not in text, text
    for fragment in message:
        assert fragment in text, text
    return text


def _image(kind: str, h: int = 40, w: int = 48) -> bytes:
    rng = np.random.default_rng(0)
    ok, buf = cv2.imencode(kind, rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    assert ok
    return buf.tobytes()


# -- label.txt --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body,message", [
    (f"# a.jpg\n{FACE.replace('30', 'nan', 1)}\n", ("label.txt:2:", "finite")),
    (f"# a.jpg\n{FACE.replace('40', 'inf', 1)}\n", ("label.txt:2:", "finite")),
    ("# a.jpg\n1 2 1e30 4\n", ("label.txt:2:", "finite")),
    ("# a.jpg\n1 2 3 4 5\n", ("label.txt:2:", "expected 4 or 20 numbers, got 5")),
    ("# a.jpg\n" + " ".join(["1"] * 21) + "\n", ("label.txt:2:", "got 21")),
    ("# a.jpg\n1 2 -3 4\n", ("label.txt:2:", "negative box size")),
    ("#\n", ("label.txt:1:", "no file name")),
    ("", ("label.txt", "no '# <event>/<name>.jpg' lines")),
])
def test_label_txt_bad_values(tmp_path, body, message):
    f = tmp_path / "label.txt"
    f.write_text(body)
    _raises(lambda: widerface.read_labels(f), *message)


def test_label_txt_binary_and_non_utf8(tmp_path):
    f = tmp_path / "label.txt"
    f.write_bytes(b"# a.jpg\n" + "1 2 3 4 é".encode("latin-1") + b"\n")
    _raises(lambda: widerface.read_labels(f), "label.txt:2:", "not UTF-8")
    f.write_bytes(BINARY)
    _raises(lambda: widerface.read_labels(f), "label.txt:1:")


def test_label_txt_huge_line_is_reported_in_bounded_memory(tmp_path):
    f = tmp_path / "label.txt"
    with open(f, "w") as out:
        out.write("# a.jpg\n")
        out.write("1 " * 25_000_000 + "\n")  # a 50 MB line
    tracemalloc.start()
    _raises(lambda: widerface.read_labels(f), "label.txt:2:", "longer than")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 * files.MAX_LINE_BYTES, peak


def test_label_txt_missing_file(tmp_path):
    _raises(lambda: widerface.read_labels(tmp_path / "label.txt"), "label.txt", "no such label file")


# -- WIDER val .mat --------------------------------------------------------------------------------------

def _cell(items: list) -> np.ndarray:
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def _write_gt(folder, boxes=None, names=("a", "b"), gt=None, events=("0--A",)):
    boxes = boxes if boxes is not None else [np.array([[1, 2, 3, 4]], float), np.array([[5, 6, 7, 8], [1, 1, 2, 2]], float)]
    full = {"event_list": _cell([np.array([e]) for e in events]),
            "file_list": _cell([_cell([np.array([n]) for n in names])]),
            "face_bbx_list": _cell([_cell(boxes)])}
    scipy.io.savemat(folder / "wider_face_val.mat", full)
    gt = gt if gt is not None else [np.array([[1]]), np.array([[1], [2]])]
    for s in widerface.SETTINGS:
        scipy.io.savemat(folder / f"wider_{s}_val.mat", {**full, "gt_list": _cell([_cell(gt)])})
    return folder


def test_val_mat_good_then_damaged(tmp_path):
    gt = widerface.read_val_ground_truth(_write_gt(tmp_path))
    assert gt.boxes["0--A", "b"].shape == (2, 4) and gt.keep["hard"]["0--A", "b"].tolist() == [0, 1]


@pytest.mark.parametrize("kwargs,file,message", [
    ({"boxes": [np.ones((1, 4)), np.ones((3, 12))]}, "wider_face_val.mat", "shape (3, 12), expected (N, 4)"),
    ({"boxes": [np.ones((1, 4)), np.full((1, 4), np.nan)]}, "wider_face_val.mat", "not finite"),
    ({"boxes": [np.ones((1, 4))]}, "wider_face_val.mat", "has 1 entries, expected 2"),
    ({"gt": [np.array([[1]])]}, "wider_easy_val.mat", "has 1 entries, expected 2"),
    ({"gt": [np.array([[1]]), np.array([[1], [5]])]}, "wider_easy_val.mat", "points outside its 2 boxes"),
    ({"gt": [np.array([[1]]), np.array([[1.5]])]}, "wider_easy_val.mat", "non-integer"),
])
def test_val_mat_wrong_shapes_and_counts(tmp_path, kwargs, file, message):
    _write_gt(tmp_path, **kwargs)
    _raises(lambda: widerface.read_val_ground_truth(tmp_path), file, message)


def test_val_mat_not_a_mat_zero_byte_missing_field(tmp_path):
    _write_gt(tmp_path)
    (tmp_path / "wider_hard_val.mat").write_bytes(b"")
    _raises(lambda: widerface.read_val_ground_truth(tmp_path), "wider_hard_val.mat", "not a MATLAB file")
    (tmp_path / "wider_hard_val.mat").write_bytes(BINARY)
    _raises(lambda: widerface.read_val_ground_truth(tmp_path), "wider_hard_val.mat", "not a MATLAB file")
    scipy.io.savemat(tmp_path / "wider_hard_val.mat", {"event_list": _cell([np.array(["0--A"])])})
    _raises(lambda: widerface.read_val_ground_truth(tmp_path), "wider_hard_val.mat", "no 'file_list' variable")
    (tmp_path / "wider_hard_val.mat").unlink()
    _raises(lambda: widerface.read_val_ground_truth(tmp_path), "wider_hard_val.mat", "missing")


# -- prediction files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("body,message", [
    ("a\n1\n1 2 -3 4 0.9\n", ("a.txt:3:", "negative box size")),
    ("a\n1\n1 2 3 nan 0.9\n", ("a.txt:3:", "non-finite")),
    ("a\n1\n1 2 3 4 inf\n", ("a.txt:3:", "non-finite")),
    ("a\n1\n1 2 1e30 4 0.9\n", ("a.txt:3:", "not in pixels")),
    ("a\n2\n1 2 3 4 0.9\n", ("a.txt:2:", "says 2 boxes but 1 box lines follow")),
    ("a\n-1\n", ("a.txt:2:", "whole number >= 0")),
    ("a\n1e12\n", ("a.txt:2:", "whole number >= 0")),
    ("a\n1\n1 2 3\n", ("a.txt:3:", "expected 5 numbers")),
    ("a\n", ("a.txt:2:", "missing the box count")),
    ("", ("a.txt:1:", "empty prediction file")),
])
def test_prediction_file_bad_values(tmp_path, body, message):
    f = tmp_path / "a.txt"
    f.write_text(body)
    _raises(lambda: read_prediction_file(f), *message)


def test_prediction_file_binary_and_huge(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"a\n1\n\xff\xfe 2 3 4 0.9\n")
    _raises(lambda: read_prediction_file(f), "a.txt:3:", "not UTF-8")
    f.write_bytes(b"a\n1\n" + b"1" * (files.MAX_LINE_BYTES + 10) + b"\n")
    _raises(lambda: read_prediction_file(f), "a.txt:3:", "longer than")
    _raises(lambda: read_prediction_file(tmp_path / "none.txt"), "none.txt", "no such file")


# -- WFLW and .pts ---------------------------------------------------------------------------------------

def _wflw_tokens() -> list[str]:
    return [f"{10 + i % 50}.5" for i in range(196)] + ["5", "6", "90", "95"] + ["0"] * 6 + ["x/1.jpg"]


@pytest.mark.parametrize("change,message", [
    ({196: "50", 198: "50"}, "empty face box"),
    ({197: "60", 199: "40"}, "empty face box"),
    ({3: "nan"}, "finite"),
    ({3: "-inf"}, "finite"),
    ({3: "1e30"}, "not a pixel position"),
    ({200: "2"}, "attribute flags must be 0 or 1"),
    ({5: "five"}, "not a number: 'five'"),
])
def test_wflw_bad_lines(tmp_path, change, message):
    tokens = _wflw_tokens()
    for i, v in change.items():
        tokens[i] = v
    f = tmp_path / "list.txt"
    f.write_text(" ".join(_wflw_tokens()) + "\n" + " ".join(tokens) + "\n")
    _raises(lambda: wflw.read_wflw(f), "list.txt:2:", message)


def test_wflw_wrong_count_binary_empty(tmp_path):
    f = tmp_path / "list.txt"
    f.write_text(" ".join(_wflw_tokens()[:-2]) + "\n")
    _raises(lambda: wflw.read_wflw(f), "list.txt:1:", "expected 207 tokens", "got 205")
    f.write_bytes(BINARY)
    _raises(lambda: wflw.read_wflw(f), "list.txt:1:")
    f.write_bytes(b"")
    _raises(lambda: wflw.read_wflw(f), "list.txt", "no annotations")


@pytest.mark.parametrize("body,message", [
    ("version: 1\nn_points: 2\n{\n1 2\nnan 4\n}\n", ("a.pts:5:", "finite")),
    ("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n", ("a.pts", "header says 3 points, found 2")),
    ("version: 1\nn_points: 0\n{\n}\n", ("a.pts", "at least 1")),
    ("version: 1\nn_points: 2\n{\n1 2\n3 4\n", ("a.pts", "missing closing '}'")),
    ("version: 1\nn_points: 2\n1 2\n", ("a.pts:3:", "expected 'key: value'")),
    ("version: 1\n{\n1 2\n}\n", ("a.pts", "'n_points:'")),
    ("", ("a.pts", "missing '{'")),
])
def test_pts_bad_files(tmp_path, body, message):
    f = tmp_path / "a.pts"
    f.write_text(body)
    _raises(lambda: wflw.read_pts(f), *message)


def test_pts_non_utf8(tmp_path):
    f = tmp_path / "a.pts"
    f.write_bytes(b"version: 1\nn_points: 1\n{\n\xe91 2\n}\n")
    _raises(lambda: wflw.read_pts(f), "a.pts:4:", "not UTF-8")


# -- pairs.txt, .bin, RecordIO ---------------------------------------------------------------------------

@pytest.mark.parametrize("body,message", [
    ("", ("pairs.txt:1:", "empty pairs file")),
    ("0 5\n", ("pairs.txt:1:", "positive integers")),
    ("1 2 3\n", ("pairs.txt:1:", "header")),
    ("1 1\nalice 1 -2\nbob 1 carol 2\n", ("pairs.txt:2:", "not a non-negative integer")),
    ("1 1\nalice 1 2 3 4\n", ("pairs.txt:2:", "expected 3 fields")),
    ("1 2\nalice 1 2\nbob 1 carol 2\n", ("pairs.txt:1:", "header promises 4 pairs, file has 2")),
])
def test_pairs_bad_files(tmp_path, body, message):
    f = tmp_path / "pairs.txt"
    f.write_text(body)
    _raises(lambda: identities.read_pairs(f), *message)


def test_pairs_binary(tmp_path):
    f = tmp_path / "pairs.txt"
    f.write_bytes(b"1 1\n\x80\x81 1 2\n")
    _raises(lambda: identities.read_pairs(f), "pairs.txt:2:", "not UTF-8")


def _bin(tmp_path, obj, protocol=4):
    f = tmp_path / "lfw.bin"
    f.write_bytes(pickle.dumps(obj, protocol=protocol))
    return f


@pytest.mark.parametrize("obj,message", [
    ([1, 2, 3], "expected a pickled pair"),
    ((5, [True]), "list of encoded images"),
    (([b"x", "text"], [True]), "list of encoded images"),
    (([b"x", b"y"], 7), "list of booleans"),
    (([b"x", b"y"], [2]), "list of booleans"),
    (([b"x", b"y", b"z"], [True]), "3 images for 1 pairs"),
])
def test_bin_wrong_structure(tmp_path, obj, message):
    f = _bin(tmp_path, obj)
    _raises(lambda: identities.read_bin(f, 16), "lfw.bin", message)


def test_bin_truncated_zero_byte_and_bad_image(tmp_path):
    jpg = _image(".jpg")
    good = pickle.dumps(([jpg, jpg], [True]), protocol=4)
    f = tmp_path / "lfw.bin"
    f.write_bytes(good[: len(good) // 2])
    _raises(lambda: identities.read_bin(f, 16), "lfw.bin", "not an insightface .bin file")
    f.write_bytes(b"")
    _raises(lambda: identities.read_bin(f, 16), "lfw.bin", "not an insightface .bin file")
    f = _bin(tmp_path, ([jpg, jpg[: len(jpg) // 2]], [True]))
    _raises(lambda: identities.read_bin(f, 16), "lfw.bin[image 1]", "truncated JPEG")


def _recordio(tmp_path, payloads, keys=None):
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    identities.write_recordio(rec, idx, payloads, keys)
    return rec, idx


def test_recordio_header_claims(tmp_path):
    jpg = _image(".jpg")
    images = [identities.pack_record(0, jpg, 1), identities.pack_record(1, jpg, 2)]
    for header, message in [([1e10, 1e10 + 5], "header record says images are records 1"),
                            ([np.nan, 3], "non-finite label"),
                            ([2.5, 3], "header record says")]:
        rec, idx = _recordio(tmp_path, [identities.pack_record(header, b"")] + images)
        _raises(lambda: identities.RecordIODataset(rec, idx, 16), "train.rec", message)
    rec, idx = _recordio(tmp_path, [identities.pack_record([3, 4], b"")] + images, keys=[0, 1, 5])
    _raises(lambda: identities.RecordIODataset(rec, idx, 16), "train.idx", "key 2 is not listed")


def test_recordio_damaged_files(tmp_path):
    jpg = _image(".jpg")
    rec, idx = _recordio(tmp_path, [identities.pack_record(0, jpg), identities.pack_record(1, jpg)])
    data = bytearray(rec.read_bytes())
    idx.write_text("0\t0\n1\t999999\n")
    _raises(lambda: identities.RecordIO(rec, idx), "train.idx:2:", "beyond the end")
    idx.write_text("0\t0\n0\t0\n")
    _raises(lambda: identities.RecordIO(rec, idx), "train.idx:2:", "appears twice")
    idx.write_bytes(b"0\t0\n\xff\n")
    _raises(lambda: identities.RecordIO(rec, idx), "train.idx:2:", "not UTF-8")
    idx.write_text("0\t0\n")
    rec.write_bytes(b"\0\0\0\0" + bytes(data[4:]))
    _raises(lambda: identities.RecordIO(rec, idx).read(0), "train.rec", "bad magic")
    rec.write_bytes(bytes(data[:20]))
    _raises(lambda: identities.RecordIO(rec, idx).read(0), "train.rec", "truncated")
    short = struct.pack("<IfQQ", 4, 0.0, 0, 0) + b"\0" * 4
    _raises(lambda: identities.unpack_record(short, "train.rec[0]"), "train.rec[0]", "promises 4 labels")


# -- images ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", [".jpg", ".png", ".bmp"])
def test_truncated_images_are_refused_by_every_reader(tmp_path, kind):
    data = _image(kind)
    good = tmp_path / f"good{kind}"
    good.write_bytes(data)
    assert files.read_rgb(good).shape == (40, 48, 3)
    bad = tmp_path / f"cut{kind}"
    bad.write_bytes(data[: len(data) * 2 // 3])
    _raises(lambda: files.read_rgb(bad), f"cut{kind}", "truncated")
    _raises(lambda: identities.read_image(bad, 16), f"cut{kind}", "truncated")
    _raises(lambda: files.read_bgr(bad), f"cut{kind}", "truncated")


def test_truncated_jpeg_with_a_complete_thumbnail_inside(tmp_path):
    main, thumb = _image(".jpg", 64, 64), _image(".jpg", 8, 8)
    app1 = b"\xff\xe1" + struct.pack(">H", len(thumb) + 8) + b"Exif\0\0" + thumb  # the thumbnail has its own FF D9
    whole = main[:2] + app1 + main[2:]
    f = tmp_path / "exif.jpg"
    f.write_bytes(whole)
    assert files.read_rgb(f).shape == (64, 64, 3)
    f.write_bytes(whole[: len(whole) - len(main) // 3])
    _raises(lambda: files.read_rgb(f), "exif.jpg", "truncated JPEG")


def test_zero_byte_and_wrong_magic_images(tmp_path):
    empty, text = tmp_path / "empty.jpg", tmp_path / "text.jpg"
    empty.write_bytes(b"")
    text.write_bytes(b"this is not an image at all\n" * 10)
    for reader in (files.read_rgb, lambda p: identities.read_image(p, 16)):
        _raises(lambda: reader(empty), "empty.jpg", "0 bytes")
        _raises(lambda: reader(text), "text.jpg", "cannot decode")
    _raises(lambda: files.read_rgb(tmp_path / "none.jpg"), "none.jpg", "no such file")


def test_truncated_image_in_the_detection_and_landmark_datasets(tmp_path):
    from facelearn.detection.dataset import WiderFaceDetection
    from facelearn.landmarks.crops import LandmarkCrops

    data = _image(".jpg", 64, 64)
    (tmp_path / "WIDER_train" / "images" / "0--A").mkdir(parents=True)
    (tmp_path / "WIDER_train" / "images" / "0--A" / "a.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "label.txt").write_text(f"# 0--A/a.jpg\n{FACE}\n")
    ds = WiderFaceDetection(tmp_path, "train")
    _raises(lambda: ds[0], "label.txt:1:", "a.jpg", "truncated JPEG")
    rec = wflw.parse_wflw_line(" ".join(_wflw_tokens()[:-1] + ["0--A/a.jpg"]))
    crops = LandmarkCrops([rec], tmp_path / "WIDER_train" / "images")
    _raises(lambda: crops[0], "a.jpg", "truncated JPEG")
