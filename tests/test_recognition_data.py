"""Identity folders, LFW pairs, insightface .bin (restricted unpickler) and RecordIO, on files written here."""

from __future__ import annotations

import os
import pickle
import struct

import cv2
import numpy as np
import pytest
import torch

from facelearn.data import identities
from facelearn.errors import DataError


def _jpeg(value: int, size: int = 16) -> bytes:
    img = np.full((size, size, 3), value, np.uint8)
    img[: size // 2, :, 0] = 255 - value  # asymmetric in rows only
    return cv2.imencode(".png", img)[1].tobytes()


def _folder(tmp_path, names=("alice", "bob", "carol"), per=3, lfw_names=False):
    root = tmp_path / "ids"
    for i, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for k in range(1, per + 1):
            fname = f"{name}_{k:04d}.jpg" if lfw_names else f"{k}.jpg"
            (root / name / fname).write_bytes(_jpeg(40 * i + k))
    return root


def test_identity_folder_labels_and_images(tmp_path):
    ds = identities.IdentityFolder(_folder(tmp_path), size=8)
    assert ds.classes == ["alice", "bob", "carol"] and len(ds) == 9
    img, label = ds[4]
    assert img.shape == (3, 8, 8) and label == 1 and -1 <= img.min() and img.max() <= 1
    x, y = ds.load_all()
    assert x.shape == (9, 3, 8, 8) and y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_identity_folder_bad_image_names_the_file(tmp_path):
    root = _folder(tmp_path)
    (root / "bob" / "2.jpg").write_bytes(b"not an image")
    ds = identities.IdentityFolder(root, 8)
    with pytest.raises(DataError, match=r"bob/2\.jpg: cannot decode"):
        ds[4]


@pytest.mark.parametrize("lfw_names", [True, False])
def test_read_lfw_pairs(tmp_path, lfw_names):
    root = _folder(tmp_path, lfw_names=lfw_names)
    pairs = root / "pairs.txt"
    pairs.write_text("1 1\nalice 1 2\nbob 3 carol 1\n")
    paths, same = identities.read_pairs(pairs, root)
    assert same.tolist() == [True, False]
    assert all(p.is_file() for pair in paths for p in pair)
    assert paths[1][1].parent.name == "carol"
    images = identities.load_pair_images(paths, 8)
    assert images.shape == (4, 3, 8, 8)


def test_pairs_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "pairs.txt"
    bad.write_text("1 1\nalice 1 2\nbob 1 2 3 4\n")
    with pytest.raises(DataError, match=r"pairs\.txt:3: expected 3 fields"):
        identities.read_pairs(bad)
    bad.write_text("1 2\nalice 1 2\nbob 1 carol 2\n")
    with pytest.raises(DataError, match=r"pairs\.txt:1: header promises 4 pairs"):
        identities.read_pairs(bad)
    bad.write_text("1 1\nalice x 2\nbob 1 carol 2\n")
    with pytest.raises(DataError, match=r"pairs\.txt:2: image number"):
        identities.read_pairs(bad)


@pytest.mark.parametrize("protocol", [2, 4])
def test_bin_round_trip(tmp_path, protocol):
    images = [_jpeg(v) for v in (10, 60, 110, 160)]
    path = tmp_path / "set.bin"
    with open(path, "wb") as f:  # protocol 2 stores bytes through _codecs.encode, as old insightface files do
        pickle.dump((images, [True, False]), f, protocol=protocol)
    x, same = identities.read_bin(path, size=16)
    assert x.shape == (4, 3, 16, 16) and same.tolist() == [True, False]
    torch.testing.assert_close(x[1], identities.decode_image(images[1], 16))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_malicious_bin_is_refused_and_nothing_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([_Evil()], [True])))
    with pytest.raises(DataError, match=r"evil\.bin: not a safe insightface \.bin file \(refusing to load global"):
        identities.read_bin(path)
    assert not (tmp_path / "PWNED").exists()
    path.write_bytes(pickle.dumps(([b"x"], [True]))[:-5])
    with pytest.raises(DataError, match="not an insightface .bin file"):
        identities.read_bin(path)
    path.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True])))
    with pytest.raises(DataError, match="3 images for 1 pairs"):
        identities.read_bin(path)


def test_recordio_round_trip_with_insightface_header(tmp_path):
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    imgs = [_jpeg(v) for v in (5, 77, 150)]
    payloads = [identities.pack_record([4.0, 6.0], b"")] + [identities.pack_record(float(lab), im)
                                                              for lab, im in zip((0, 2, 1), imgs)]
    identities.write_recordio(rec, idx, payloads)
    ds = identities.RecordIODataset(rec, idx, size=16)
    assert len(ds) == 3 and [ds[i][1] for i in range(3)] == [0, 2, 1]
    torch.testing.assert_close(ds[1][0], identities.decode_image(imgs[1], 16))
    assert rec.stat().st_size % 4 == 0


def test_recordio_multipart_and_bad_magic(tmp_path):
    rec, idx = tmp_path / "r.rec", tmp_path / "r.idx"
    payload = identities.pack_record(3.0, _jpeg(9))
    a, b = payload[:10], payload[10:]
    with open(rec, "wb") as f:  # continuation flags: 1 = first part, 3 = last part
        for flag, part in ((1, a), (3, b)):
            f.write(struct.pack("<II", 0xCED7230A, (flag << 29) | len(part)) + part + b"\0" * (-len(part) % 4))
    idx.write_text("0\t0\n")
    ds = identities.RecordIODataset(rec, idx, 16)
    assert ds[0][1] == 3
    rec.write_bytes(b"\x00" * 16)
    with pytest.raises(DataError, match="bad magic"):
        identities.RecordIO(rec, idx).read(0)
    idx.write_text("0\tzero\n")
    with pytest.raises(DataError, match=r"r\.idx:1: expected"):
        identities.RecordIO(rec, idx)
