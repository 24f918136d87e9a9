"""WIDER FACE on disk: RetinaFace ``label.txt`` files and the official validation ground truth
(book chapters "SynthFace" and "Training and evaluating RetinaFace").

Layout (DESIGN.md): ``WIDER_{train,val}/images/<event>/<name>.jpg``; ``{train,val}/label.txt`` with a
``# <event>/<name>.jpg`` line per image, then one face per line: ``x y w h`` + 5 × ``(x y flag)`` + ``blur``
(20 numbers; landmarks −1 when absent; val files may hold only the 4 box numbers); the official
``wider_face_split/wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat`` with 1-based ``gt_list``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelearn.data.files import MAX_COORDINATE, text_lines
from facelearn.errors import DataError

SETTINGS = ("easy", "medium", "hard")


@dataclass
class LabelledImage:
    """One image of a ``label.txt``.

    name: ``<event>/<name>.jpg``; boxes: (N, 4) float32 x y w h in pixels; landmarks: (N, 5, 2) float32,
    −1 where absent, in the 5-point order (left eye, right eye, nose, left mouth, right mouth);
    has_landmarks: (N,) bool; blur: (N,) float32 (−1 when the file has no blur column).
    """

    name: str
    boxes: np.ndarray
    landmarks: np.ndarray
    has_landmarks: np.ndarray
    blur: np.ndarray


def read_labels(path: str | os.PathLike) -> list[LabelledImage]:
    """Parse a RetinaFace ``label.txt``. Bad lines raise :class:`DataError` naming ``path:line``."""
    path = Path(path)
    if not path.is_file():
        raise DataError.at(path, None, "no such label file")
    images: list[LabelledImage] = []
    name, rows, first = None, [], 0

    def close() -> None:
        if name is None:
            return
        table = np.asarray(rows, dtype=np.float32).reshape(len(rows), 20)
        lm = table[:, 4:19].reshape(-1, 5, 3)
        has = (lm[:, :, :2] >= 0).all(axis=(1, 2))
        points = np.where(has[:, None, None], lm[:, :, :2], -1.0).astype(np.float32)
        images.append(LabelledImage(name, table[:, :4].copy(), points, has, table[:, 19].copy()))

    for number, line in text_lines(path):
        text = line.strip()
        if not text:
            continue
        if text.startswith("#"):
            close()
            name, rows, first = text[1:].strip(), [], number
            if not name:
                raise DataError.at(path, number, "image line '#' has no file name")
            continue
        if name is None:
            raise DataError.at(path, number, "face line before the first '# <event>/<name>.jpg' line")
        try:
            values = [float(v) for v in text.split()]
        except ValueError:
            raise DataError.at(path, number, f"expected numbers, got {text[:60]!r}") from None
        if len(values) == 4:  # validation files: boxes only
            values += [-1.0] * 16
        elif len(values) == 19:  # training files without the blur column
            values.append(-1.0)
        if len(values) != 20:
            raise DataError.at(path, number, f"expected 4 or 20 numbers, got {len(values)}")
        if not all(math.isfinite(v) and abs(v) < MAX_COORDINATE for v in values):
            raise DataError.at(path, number, f"numbers must be finite pixel values, got {text[:60]!r}")
        if values[2] < 0 or values[3] < 0:
            raise DataError.at(path, number, f"negative box size {values[2]} x {values[3]}")
        rows.append(values)
    close()
    if not images and first == 0:
        raise DataError.at(path, None, "no '# <event>/<name>.jpg' lines: not a RetinaFace label file")
    return images


@dataclass
class ValGroundTruth:
    """The official validation ground truth.

    boxes[(event, file)]: (N, 4) float64 x y w h; keep[setting][(event, file)]: 0-based indices of the faces
    the setting scores (the others are ignored: neither true nor false positives). ``file`` has no ``.jpg``.
    """

    events: list[str]
    files: dict[str, list[str]]
    boxes: dict[tuple[str, str], np.ndarray]
    keep: dict[str, dict[tuple[str, str], np.ndarray]]


def _cell_str(cell: np.ndarray) -> str:
    values = np.asarray(cell).ravel()
    return str(values[0]) if values.size else ""


def _cells_of(cell: np.ndarray, count: int | None, what: str, file: Path) -> list[np.ndarray]:
    """The ``count`` entries of a MATLAB cell array (any orientation); :class:`DataError` if there are others."""
    cell = np.asarray(cell)
    if cell.dtype != object:
        raise DataError.at(file, None, f"{what} is not a cell array")
    entries = list(cell.ravel())
    if count is not None and len(entries) != count:
        raise DataError.at(file, None, f"{what} has {len(entries)} entries, expected {count}")
    return entries


def _cells(mat: dict, field: str, count: int | None, file: Path) -> list[np.ndarray]:
    return _cells_of(mat[field], count, f"'{field}'", file)


def read_val_ground_truth(folder: str | os.PathLike) -> ValGroundTruth:
    """Read ``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat`` from ``folder``."""
    import scipy.io

    folder = Path(folder)
    mats = {}
    for stem in ["wider_face_val"] + [f"wider_{s}_val" for s in SETTINGS]:
        file = folder / f"{stem}.mat"
        if not file.is_file():
            raise DataError.at(file, None, "missing WIDER FACE ground-truth file")
        try:
            mats[stem] = scipy.io.loadmat(file)
        except Exception as err:
            raise DataError.at(file, None, f"not a MATLAB file ({err})") from None
        for field in ("event_list", "file_list", "face_bbx_list") + (("gt_list",) if stem != "wider_face_val" else ()):
            if field not in mats[stem]:
                raise DataError.at(file, None, f"no '{field}' variable")
    full, full_file = mats["wider_face_val"], folder / "wider_face_val.mat"
    events = [_cell_str(e) for e in _cells(full, "event_list", None, full_file)]
    files: dict[str, list[str]] = {}
    boxes: dict[tuple[str, str], np.ndarray] = {}
    file_lists = _cells(full, "file_list", len(events), full_file)
    box_lists = _cells(full, "face_bbx_list", len(events), full_file)
    for i, event in enumerate(events):
        names = [_cell_str(f) for f in np.asarray(file_lists[i]).ravel()]
        files[event] = names
        event_boxes = _cells_of(box_lists[i], len(names), f"face_bbx_list of {event}", full_file)
        for j, name in enumerate(names):
            b = np.asarray(event_boxes[j], dtype=np.float64)
            if b.size and (b.ndim != 2 or b.shape[1] != 4):
                raise DataError.at(full_file, None, f"boxes of {event}/{name} have shape {b.shape}, expected (N, 4)")
            if not np.isfinite(b).all():  # (the official file holds one box of width -2: kept, as by the tool)
                raise DataError.at(full_file, None, f"boxes of {event}/{name} are not finite")
            boxes[event, name] = b.reshape(-1, 4)
    keep: dict[str, dict[tuple[str, str], np.ndarray]] = {}
    for setting in SETTINGS:
        mat, mat_file = mats[f"wider_{setting}_val"], folder / f"wider_{setting}_val.mat"
        gt_lists = _cells(mat, "gt_list", len(events), mat_file)
        keep[setting] = {}
        for i, event in enumerate(events):
            event_gt = _cells_of(gt_lists[i], len(files[event]), f"gt_list of {event}", mat_file)
            for j, name in enumerate(files[event]):
                raw = np.asarray(event_gt[j]).ravel()
                if raw.size and (not np.isfinite(raw.astype(np.float64)).all() or (raw != np.round(raw)).any()):
                    raise DataError.at(mat_file, None, f"gt_list of {event}/{name} holds non-integer indices")
                idx = raw.astype(np.int64) - 1
                if idx.size and (idx.min() < 0 or idx.max() >= len(boxes[event, name])):
                    raise DataError.at(folder / f"wider_{setting}_val.mat", None,
                                       f"gt_list of {event}/{name} points outside its {len(boxes[event, name])} boxes")
                keep[setting][event, name] = idx
    return ValGroundTruth(events, files, boxes, keep)


#: The four official val ``.mat`` files (public research annotations, Yang et al. 2016) shipped with the package.
PACKAGED_VAL_GT = Path(__file__).resolve().parent / "widerface_gt"


def find_val_ground_truth() -> Path:
    """The folder holding the four official val ``.mat`` files, looked for in this order:
    ``$FACELEARN_WIDER_GT`` (which must then hold all four); ``data_dir()/widerface/wider_face_split``
    (where ``facelearn fetch wider_val_gt`` writes them); else the copy shipped with the package."""
    from facelearn import runtime

    wanted = ["wider_face_val.mat"] + [f"wider_{s}_val.mat" for s in SETTINGS]
    if os.environ.get("FACELEARN_WIDER_GT"):
        folder = Path(os.environ["FACELEARN_WIDER_GT"])
        missing = [w for w in wanted if not (folder / w).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder / missing[0]}: missing (FACELEARN_WIDER_GT must name a folder "
                                    f"holding {', '.join(wanted)})")
        return folder
    for folder in (runtime.data_dir() / "widerface" / "wider_face_split", PACKAGED_VAL_GT):
        if all((folder / w).is_file() for w in wanted):
            return folder
    raise FileNotFoundError(f"WIDER FACE val ground truth not found in {PACKAGED_VAL_GT} (a broken install?); "
                            "run `facelearn fetch wider_val_gt` or set FACELEARN_WIDER_GT")
