"""The official WIDER FACE submission format (book chapter "Training and evaluating RetinaFace"):
``<dir>/<event>/<name>.txt`` holding the image name, the number of boxes, then one ``x y w h score`` line
per box (pixels of the original image). Read as the MATLAB tool's ``read_pred.m`` does, but strictly: a
malformed file is a :class:`DataError` naming the file and line rather than a silently empty image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facelearn.data.files import MAX_COORDINATE, text_lines
from facelearn.data.widerface import ValGroundTruth
from facelearn.errors import DataError

Key = tuple[str, str]


def read_prediction_file(path: str | os.PathLike) -> np.ndarray:
    """Read one official prediction file: image name, box count, then ``x y w h score`` per line.

    Returns (N, 5) float64 ``x y w h score`` in file order (extra columns after the fifth are ignored, as
    by ``read_pred.m``). Raises :class:`DataError` naming ``path:line`` for a bad count, a bad number, a
    non-finite value, a negative width or height, or a count that disagrees with the box lines.
    """
    path = Path(path)
    lines = text_lines(path)
    if next(lines, None) is None:
        raise DataError.at(path, 1, "empty prediction file: expected the image name, then the box count")
    numbered = [(i, line.strip()) for i, line in lines if line.strip()]
    if not numbered:
        raise DataError.at(path, 2, "missing the box count line")
    count_line, count_text = numbered[0]
    try:
        count_value = float(count_text)
    except ValueError:
        raise DataError.at(path, count_line, f"expected the box count, got {count_text[:60]!r}") from None
    if not (0 <= count_value < 1e9 and count_value == int(count_value)):
        raise DataError.at(path, count_line, f"box count must be a whole number >= 0, got {count_text[:60]!r}")
    count = int(count_value)
    rows = numbered[1:]
    if len(rows) != count:
        line = rows[count][0] if len(rows) > count else count_line
        raise DataError.at(path, line, f"the count line ({count_line}) says {count} boxes but "
                                       f"{len(rows)} box lines follow")
    if count == 0:
        return np.zeros((0, 5))
    tokens = [row.split() for _, row in rows]
    try:  # fast path: every line exactly five numbers
        if all(len(t) == 5 for t in tokens):
            boxes = np.array([v for t in tokens for v in t], dtype=np.float64).reshape(count, 5)
            if np.isfinite(boxes).all() and (np.abs(boxes[:, :4]) < MAX_COORDINATE).all() and (boxes[:, 2:4] >= 0).all():
                return boxes
    except ValueError:
        pass
    out = np.empty((count, 5))
    for k, ((number, row), parts) in enumerate(zip(rows, tokens)):
        if len(parts) < 5:
            raise DataError.at(path, number, f"expected 5 numbers 'x y w h score', got {len(parts)}")
        try:
            out[k] = [float(v) for v in parts[:5]]
        except ValueError:
            raise DataError.at(path, number, f"expected numbers, got {row[:60]!r}") from None
        if not np.isfinite(out[k]).all():
            raise DataError.at(path, number, f"non-finite value in {row[:60]!r}")
        if not (np.abs(out[k, :4]) < MAX_COORDINATE).all():
            raise DataError.at(path, number, f"box {row[:60]!r} is not in pixels")
        if (out[k, 2:4] < 0).any():
            raise DataError.at(path, number, f"negative box size {out[k, 2]:g} x {out[k, 3]:g}")
    return out


def write_prediction_file(path: str | os.PathLike, image_name: str, boxes: np.ndarray, scores: np.ndarray) -> Path:
    """Write one official prediction file. boxes: (N, 4) ``x y w h`` pixels; scores: (N,)."""
    boxes, scores = np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores, dtype=np.float64).ravel()
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = np.concatenate([boxes, scores[:, None]], axis=1).ravel().tolist()
    body = ("%.3f %.3f %.3f %.3f %.6f\n" * len(boxes)) % tuple(rows)  # %-format and format() write a float alike
    path.write_text(f"{image_name}\n{len(boxes)}\n{body}", encoding="utf-8")
    return path


@dataclass
class Predictions:
    """Predictions read from a folder: boxes[(event, name)] (N, 5) ``x y w h score``; the ground-truth
    images without a file (``missing``) and the files of no ground-truth image (``unexpected``)."""

    boxes: dict[Key, np.ndarray]
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def read_predictions(folder: str | os.PathLike, gt: ValGroundTruth, *, progress: bool = False) -> Predictions:
    """Read ``folder/<event>/<name>.txt`` for every ground-truth image (as ``read_pred.m``).

    A missing file is counted in ``missing`` (no detections, as the official tool); a bad file raises
    :class:`DataError` naming the file and line.
    """
    from tqdm.auto import tqdm

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError.at(folder, None, "prediction folder not found")
    result = Predictions({})
    keys = [(e, f) for e in gt.events for f in gt.files[e]]
    for event, name in tqdm(keys, desc="read predictions", disable=not progress, leave=False):
        file = folder / event / f"{name}.txt"
        if file.is_file():
            result.boxes[event, name] = read_prediction_file(file)
        else:
            result.missing.append(f"{event}/{name}")
    wanted = {f"{e}/{f}.txt" for e, f in keys}
    for file in folder.glob("*/*.txt"):
        rel = f"{file.parent.name}/{file.name}"
        if rel not in wanted:
            result.unexpected.append(rel)
    result.unexpected.sort()
    return result
