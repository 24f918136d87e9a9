"""WIDER FACE on disk: RetinaFace ``label.txt`` files and the official validation ground truth
(book chapters "SynthFace" and "Training and evaluating RetinaFace").

Layout (DESIGN.md): ``WIDER_{train,val}/images/<event>/<name>.jpg``; ``{train,val}/label.txt`` with a
``# <event>/<name>.jpg`` line per image, then one face per line: ``x y w h`` + 5 × ``(x y flag)`` + ``blur``
(20 numbers; landmarks −1 when absent; val files may hold only the 4 box numbers); the official
``wider_face_split/wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat`` with 1-based ``gt_list``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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

    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
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
    return str(np.asarray(cell).ravel()[0])


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
    full = mats["wider_face_val"]
    events = [_cell_str(e) for e in full["event_list"].ravel()]
    files: dict[str, list[str]] = {}
    boxes: dict[tuple[str, str], np.ndarray] = {}
    for i, event in enumerate(events):
        names = [_cell_str(f) for f in full["file_list"][i, 0].ravel()]
        files[event] = names
        for j, name in enumerate(names):
            boxes[event, name] = np.asarray(full["face_bbx_list"][i, 0][j, 0], dtype=np.float64).reshape(-1, 4)
    keep: dict[str, dict[tuple[str, str], np.ndarray]] = {}
    for setting in SETTINGS:
        mat = mats[f"wider_{setting}_val"]
        keep[setting] = {}
        for i, event in enumerate(events):
            for j, name in enumerate(files[event]):
                idx = np.asarray(mat["gt_list"][i, 0][j, 0]).ravel().astype(np.int64) - 1
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
