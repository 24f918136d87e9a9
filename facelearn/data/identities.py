"""Identity data sets and verification pairs (book chapters "Metric learning" to "Beyond ArcFace").

- identity folders: ``root/<identity>/<image>`` (CASIA-WebFace, SynthFace ``train/``);
- insightface RecordIO training sets (``train.rec`` + ``train.idx``, MS1MV2/MS1MV3), read without MXNet;
- LFW ``pairs.txt`` verification lists and insightface ``.bin`` verification sets (``lfw.bin``,
  ``cfp_fp.bin``, …), the latter unpickled with a restricted unpickler that builds only lists, tuples,
  bytes, booleans and numbers, so a malicious file is refused before anything in it runs.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from facelearn.data.files import decode_bgr, text_lines
from facelearn.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def decode_image(data: bytes | np.ndarray, size: int | None = None, where: str = "<bytes>") -> torch.Tensor:
    """JPEG/PNG bytes → (3, size, size) float RGB in [0, 1] (pixels / 255); a recognition backbone's
    ``preprocess`` makes its input from it."""
    img = decode_bgr(data, where)
    if size is not None and img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return torch.from_numpy(img).permute(2, 0, 1).float().div_(255.0)


def read_image(path: str | os.PathLike, size: int | None = None) -> torch.Tensor:
    """Read an image file as :func:`decode_image` does; a :class:`DataError` names an unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise DataError.at(path, None, "no such image file")
    return decode_image(path.read_bytes(), size, str(path))


# -- identity folders ------------------------------------------------------------------------------------

class IdentityFolder(Dataset):
    """``root/<identity>/<image>``: identities sorted by name get labels 0 … C−1.

    Items: (image (3, size, size) RGB in [0, 1], label int). ``flip``: random horizontal flips (training).
    """

    def __init__(self, root: str | os.PathLike, size: int | None = 112, flip: bool = False, seed: int = 0) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError.at(self.root, None, "not a folder of identity folders")
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(self.classes):
            files = sorted(f for f in (self.root / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            self.samples += [(f, label) for f in files]
        if not self.samples:
            raise DataError.at(self.root, None, "holds no identity folder with images")
        self.size, self.flip = size, flip
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        img = read_image(path, self.size)
        if self.flip and self._rng.random() < 0.5:
            img = torch.flip(img, dims=[2])
        return img, label

    def load_all(self, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Every image and label in memory: (N, 3, size, size), (N,) — for small sets (the CPU chapters)."""
        from tqdm.auto import tqdm

        images = [read_image(p, self.size) for p, _ in tqdm(self.samples, disable=not progress, desc="loading")]
        return torch.stack(images), torch.tensor([lab for _, lab in self.samples])


# -- LFW pairs.txt ---------------------------------------------------------------------------------------

def _lfw_image(root: Path, name: str, number: str, path: Path, line: int) -> Path:
    if not number.isdigit() or len(number) > 9:
        raise DataError.at(path, line, f"image number {number[:20]!r} is not a non-negative integer")
    k = int(number)
    for candidate in (root / name / f"{name}_{k:04d}.jpg", root / name / f"{k}.jpg", root / name / f"{k:04d}.jpg"):
        if candidate.is_file():
            return candidate
    return root / name / f"{name}_{k:04d}.jpg"


def read_pairs(path: str | os.PathLike, root: str | os.PathLike | None = None) -> tuple[list[tuple[Path, Path]], np.ndarray]:
    """LFW ``pairs.txt`` → ([(image1, image2)], issame (P,) bool).

    Line 1: ``<folds> <pairs per class per fold>`` (or one number); then ``name i j`` (same person) or
    ``name1 i name2 j`` (different). Images resolve to ``root/name/name_%04d.jpg`` (LFW), or
    ``root/name/<i>.jpg`` (SynthFace); ``root`` defaults to the file's folder, or its ``test/``
    subfolder when there is one (SynthFace's layout).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError.at(path, None, "no such pairs file")
    if root is None:  # LFW: the images beside pairs.txt; SynthFace: pairs.txt beside test/
        root = path.parent / "test" if (path.parent / "test").is_dir() else path.parent
    root = Path(root)
    lines = text_lines(path)
    n, first = next(lines, (1, ""))
    header = first.split()
    if not header:
        raise DataError.at(path, 1, "empty pairs file: expected a header '<folds> <pairs>'")
    if len(header) > 2 or not all(h.isdigit() and int(h) > 0 for h in header):
        raise DataError.at(path, 1, f"expected a header '<folds> <pairs>' of positive integers, got {first[:60]!r}")
    pairs, same = [], []
    for n, line in lines:
        t = line.split()
        if not t:
            continue
        if len(t) == 3:
            pairs.append((_lfw_image(root, t[0], t[1], path, n), _lfw_image(root, t[0], t[2], path, n)))
            same.append(True)
        elif len(t) == 4:
            pairs.append((_lfw_image(root, t[0], t[1], path, n), _lfw_image(root, t[2], t[3], path, n)))
            same.append(False)
        else:
            raise DataError.at(path, n, f"expected 3 fields (same) or 4 fields (different), got {len(t)}")
    if len(header) == 2 and len(pairs) != 2 * int(header[0]) * int(header[1]):
        raise DataError.at(path, 1, f"header promises {2 * int(header[0]) * int(header[1])} pairs, file has {len(pairs)}")
    return pairs, np.array(same, dtype=bool)


def load_pair_images(pairs: list[tuple[Path, Path]], size: int | None = 112,
                     progress: bool = False) -> torch.Tensor:
    """Images of P pairs, consecutive (a1, b1, a2, b2, …) as in ``.bin`` sets → (2P, 3, size, size)."""
    from tqdm.auto import tqdm

    flat = [p for pair in pairs for p in pair]
    return torch.stack([read_image(p, size) for p in tqdm(flat, disable=not progress, desc="pairs")])


# -- insightface .bin verification sets ------------------------------------------------------------------

class _RestrictedUnpickler(pickle.Unpickler):
    """Builds plain containers only. Python 3 pickles of bytes at protocol ≤ 2 call ``_codecs.encode``;
    that one global is allowed with the latin-1 codec and nothing else; numpy arrays are allowed too."""

    _ALLOWED = {("_codecs", "encode"), ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if (module, name) == ("_codecs", "encode"):
            def encode(text: str, encoding: str = "utf-8") -> bytes:
                if encoding not in ("latin1", "latin-1"):
                    raise pickle.UnpicklingError(f"refusing codec {encoding!r}")
                return text.encode("latin1")
            return encode
        return super().find_class(module, name)


def read_bin(path: str | os.PathLike, size: int | None = 112,
             progress: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """An insightface ``.bin`` set: pickled (list of 2P encoded images, list of P booleans) →
    (images (2P, 3, size, size) RGB in [0, 1], issame (P,) bool). Unsafe pickles raise :class:`DataError`."""
    from tqdm.auto import tqdm

    path = Path(path)
    if not path.is_file():
        raise DataError.at(path, None, "no such .bin file")
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as err:
        if str(err).startswith("refusing"):
            raise DataError.at(path, None, f"not a safe insightface .bin file ({err})") from None
        raise DataError.at(path, None, f"not an insightface .bin file ({err})") from None
    except Exception as err:  # truncated or not a pickle at all
        raise DataError.at(path, None, f"not an insightface .bin file ({type(err).__name__}: {err})") from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise DataError.at(path, None, "expected a pickled pair (images, issame)")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)) or not all(isinstance(b, (bytes, bytearray, np.ndarray)) for b in bins):
        raise DataError.at(path, None, "expected a list of encoded images (bytes) as the first item")
    if isinstance(issame, np.ndarray):
        issame = issame.tolist()
    if not isinstance(issame, (list, tuple)) or not all(isinstance(b, (bool, int, np.bool_)) and b in (0, 1) for b in issame):
        raise DataError.at(path, None, "expected a list of booleans (issame) as the second item")
    issame = np.asarray([bool(b) for b in issame], dtype=bool)
    if len(bins) != 2 * len(issame):
        raise DataError.at(path, None, f"{len(bins)} images for {len(issame)} pairs (need twice as many)")
    images = [decode_image(b, size, f"{path}[image {i}]") for i, b in enumerate(tqdm(bins, disable=not progress, desc="decoding"))]
    return torch.stack(images), issame


def write_bin(path: str | os.PathLike, encoded_images: list[bytes], issame: list[bool]) -> Path:
    """Write an insightface-style ``.bin`` set (pickle protocol 4 of (images, issame))."""
    path = Path(path)
    with open(path, "wb") as f:
        pickle.dump((list(map(bytes, encoded_images)), [bool(b) for b in issame]), f, protocol=4)
    return path


# -- RecordIO (.rec/.idx), MXNet's format ---------------------------------------------------------------

_MAGIC = 0xCED7230A
_HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2 (mxnet.recordio.IRHeader)


def pack_record(label: float | list[float], image: bytes, record_id: int = 0) -> bytes:
    """An IRHeader + payload (``mxnet.recordio.pack``): one float label (flag 0) or a label vector."""
    if isinstance(label, (list, tuple, np.ndarray)):
        vec = np.asarray(label, dtype=np.float32)
        return _HEADER.pack(len(vec), 0.0, record_id, 0) + vec.tobytes() + image
    return _HEADER.pack(0, float(label), record_id, 0) + image


def unpack_record(payload: bytes, where: str = "<record>") -> tuple[np.ndarray, bytes]:
    """Inverse of :func:`pack_record`: → (labels (K,) float32, image bytes)."""
    if len(payload) < _HEADER.size:
        raise DataError.at(where, None, f"record of {len(payload)} bytes is shorter than its header")
    flag, label, _, _ = _HEADER.unpack_from(payload)
    if flag == 0:
        labels, image = np.array([label], dtype=np.float32), payload[_HEADER.size:]
    else:
        end = _HEADER.size + 4 * flag
        if end > len(payload):
            raise DataError.at(where, None, f"header promises {flag} labels but the record has {len(payload)} bytes")
        labels, image = np.frombuffer(payload[_HEADER.size:end], dtype=np.float32).copy(), payload[end:]
    if not np.isfinite(labels).all():
        raise DataError.at(where, None, f"non-finite label {labels.tolist()[:4]}")
    return labels, image


def write_recordio(rec: str | os.PathLike, idx: str | os.PathLike, payloads: list[bytes], keys: list[int] | None = None) -> None:
    """Write records (each a :func:`pack_record` payload) to ``rec`` and ``key<TAB>offset`` lines to ``idx``."""
    keys = list(range(len(payloads))) if keys is None else keys
    with open(rec, "wb") as f, open(idx, "w") as fi:
        for key, data in zip(keys, payloads):
            fi.write(f"{key}\t{f.tell()}\n")
            f.write(struct.pack("<II", _MAGIC, len(data)) + data + b"\0" * (-len(data) % 4))


class RecordIO:
    """Random access to an MXNet RecordIO file through its ``.idx`` (key → byte offset); no MXNet needed.

    ``read(key)`` returns the record's payload; multi-part records (continuation flags 1–3) are joined.
    """

    def __init__(self, rec: str | os.PathLike, idx: str | os.PathLike) -> None:
        self.rec, self.idx = Path(rec), Path(idx)
        for p in (self.rec, self.idx):
            if not p.is_file():
                raise DataError.at(p, None, "no such file")
        self.offsets: dict[int, int] = {}
        size = self.rec.stat().st_size
        for n, line in text_lines(self.idx):
            t = line.split()
            if not t:
                continue
            if len(t) != 2 or not (t[0].isdigit() and t[1].isdigit()):
                raise DataError.at(self.idx, n, f"expected '<key> <offset>', got {line[:60]!r}")
            if int(t[1]) + 8 > size:
                raise DataError.at(self.idx, n, f"offset {t[1]} lies beyond the end of {self.rec.name} ({size} bytes)")
            if int(t[0]) in self.offsets:
                raise DataError.at(self.idx, n, f"key {t[0]} appears twice")
            self.offsets[int(t[0])] = int(t[1])
        self._file: io.BufferedReader | None = None

    def keys(self) -> list[int]:
        return sorted(self.offsets)

    def read(self, key: int) -> bytes:
        if self._file is None:
            self._file = open(self.rec, "rb")  # opened lazily, so each DataLoader worker gets its own
        if key not in self.offsets:
            raise DataError.at(self.idx, None, f"no record with key {key}")
        f = self._file
        f.seek(self.offsets[key])
        parts = []
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise DataError.at(self.rec, None, f"record {key} truncated at byte {f.tell()}")
            magic, lrec = struct.unpack("<II", head)
            if magic != _MAGIC:
                raise DataError.at(self.rec, None, f"bad magic 0x{magic:08x} in record {key} at byte {f.tell() - 8}")
            cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
            data = f.read(length)
            if len(data) < length:
                raise DataError.at(self.rec, None, f"record {key} truncated")
            f.read(-length % 4)
            parts.append(data)
            if cflag in (0, 3):
                return b"".join(parts)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None}


class RecordIODataset(Dataset):
    """insightface's training ``.rec``: record 0 may be a header whose labels (a, b) say that images are
    records a … b−1 (as in MS1MV2/MS1MV3); otherwise every record is an image. Items: (image, label)."""

    def __init__(self, rec: str | os.PathLike, idx: str | os.PathLike, size: int | None = 112, flip: bool = False,
                 seed: int = 0) -> None:
        self.record = RecordIO(rec, idx)
        keys = self.record.keys()
        if not keys:
            raise DataError.at(self.record.idx, None, "no records")
        label, _ = unpack_record(self.record.read(keys[0]), f"{self.record.rec}[{keys[0]}]")
        if len(label) >= 2 and keys[0] == 0:
            if label[0] != round(label[0]) or not 1 <= label[0] <= len(keys):
                raise DataError.at(self.record.rec, None, f"header record says images are records 1 … "
                                   f"{label[0] - 1:g}, but {self.record.idx.name} lists {len(keys)} records")
            self.keys = list(range(1, int(label[0])))
            missing = [k for k in self.keys if k not in self.record.offsets]
            if missing:
                raise DataError.at(self.record.idx, None, f"header record names {len(self.keys)} images but "
                                   f"key {missing[0]} is not listed")
        else:
            self.keys = keys
        self.size, self.flip = size, flip
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        key = self.keys[i]
        label, data = unpack_record(self.record.read(key), f"{self.record.rec}[{key}]")
        img = decode_image(data, self.size, f"{self.record.rec}[{key}]")
        if self.flip and self._rng.random() < 0.5:
            img = torch.flip(img, dims=[2])
        return img, int(label[0])
