"""WFLW and 300-W landmark annotations (book: chapter "PFLD landmark detection").

WFLW {cite}`wu2018look` annotates one face per line with 207 tokens: 98 (x, y) pairs (196 numbers),
the face box ``x_min y_min x_max y_max``, six 0/1 attribute flags (pose, expression, illumination,
make-up, occlusion, blur) and the image path relative to ``WFLW_images``. 300-W {cite}`sagonas2013300`
stores 68 points per image in a ``.pts`` file. SynthFace writes the same files, so the readers here never
know which one they read.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelearn.data.download import GROUPS, REGISTRY
from facelearn.data.files import MAX_COORDINATE, text_lines
from facelearn.errors import DataError

N_WFLW = 98
WFLW_TOKENS = 2 * N_WFLW + 4 + 6 + 1
WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "make-up", "occlusion", "blur")
#: Outer eye corners used to normalise the NME: WFLW points 60 and 72, 300-W points 36 and 45.
WFLW_OUTER_EYES = (60, 72)
W300_OUTER_EYES = (36, 45)


def _mirror(pairs: list[tuple[int, int]], n: int) -> np.ndarray:
    perm = np.arange(n)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


#: ``flipped[i] = original[WFLW_FLIP[i]]`` after mirroring the image: contour 0…32 reversed, eyebrows
#: 33–41 ↔ 42–50, nose 55 ↔ 59 and 56 ↔ 58, eyes 60–67 ↔ 68–75, mouth, pupils 96 ↔ 97.
WFLW_FLIP = _mirror(
    [(i, 32 - i) for i in range(16)]
    + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47)]
    + [(55, 59), (56, 58)]
    + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]
    + [(76, 82), (77, 81), (78, 80), (87, 83), (86, 84), (88, 92), (89, 91), (95, 93), (96, 97)], N_WFLW)

#: The same for the 68 points of 300-W (iBUG numbering, 0-based).
FLIP_68 = _mirror(
    [(i, 16 - i) for i in range(8)]
    + [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22), (31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)], 68)


def flip_permutation(n_points: int) -> np.ndarray:
    """The mirror permutation for 98 (WFLW) or 68 (300-W) points."""
    if n_points == N_WFLW:
        return WFLW_FLIP
    if n_points == 68:
        return FLIP_68
    raise ValueError(f"no mirror permutation known for {n_points} points (98 or 68)")


@dataclass(frozen=True)
class LandmarkRecord:
    """One annotated face.

    landmarks: (P, 2) float32 pixels; box: (4,) float32 x_min y_min x_max y_max; attributes: (6,) int64
    flags in :data:`WFLW_ATTRIBUTES` order; image: path relative to the images folder.
    """

    landmarks: np.ndarray
    box: np.ndarray
    attributes: np.ndarray
    image: str


def parse_wflw_line(line: str, path: str | os.PathLike = "<string>", lineno: int | None = None) -> LandmarkRecord:
    """One 207-token WFLW line → :class:`LandmarkRecord`; :class:`DataError` naming ``path:lineno`` if bad."""
    tokens = line.split()
    if len(tokens) != WFLW_TOKENS:
        raise DataError.at(path, lineno, f"expected {WFLW_TOKENS} tokens (196 coordinates, 4 box values, "
                                         f"6 attributes, image path), got {len(tokens)}")
    try:
        numbers = np.array([float(t) for t in tokens[:-1]], dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens[:-1] if not _is_float(t))
        raise DataError.at(path, lineno, f"not a number: {bad!r}") from None
    if not np.all(np.isfinite(numbers)):
        raise DataError.at(path, lineno, "coordinates must be finite (found nan or inf)")
    if np.abs(numbers).max() >= MAX_COORDINATE:
        raise DataError.at(path, lineno, f"coordinate {np.abs(numbers).max():g} is not a pixel position")
    attributes = numbers[200:206]
    if not np.all((attributes == 0) | (attributes == 1)):
        raise DataError.at(path, lineno, f"attribute flags must be 0 or 1, got {tokens[200:206]}")
    x0, y0, x1, y1 = numbers[196:200]
    if not (x1 > x0 and y1 > y0):
        raise DataError.at(path, lineno, f"empty face box {tokens[196:200]} (need x_max > x_min, y_max > y_min)")
    return LandmarkRecord(numbers[:196].reshape(N_WFLW, 2).astype(np.float32), numbers[196:200].astype(np.float32),
                          attributes.astype(np.int64), tokens[-1])


def _is_float(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def read_wflw(path: str | os.PathLike) -> list[LandmarkRecord]:
    """Every face of a WFLW annotation file (``list_98pt_rect_attr_{train,test}.txt``); blank lines skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError.at(path, None, "no such WFLW annotation file")
    records = [parse_wflw_line(line, path, lineno) for lineno, line in text_lines(path) if line.strip()]
    if not records:
        raise DataError.at(path, None, "no annotations in file")
    return records


def format_wflw_line(record: LandmarkRecord) -> str:
    """The 207-token line of ``record`` (inverse of :func:`parse_wflw_line`)."""
    coords = " ".join(f"{v:.6f}" for v in np.asarray(record.landmarks, dtype=np.float64).reshape(-1))
    box = " ".join(f"{v:.6f}" for v in np.asarray(record.box, dtype=np.float64))
    attrs = " ".join(str(int(a)) for a in record.attributes)
    return f"{coords} {box} {attrs} {record.image}"


def write_wflw(records: list[LandmarkRecord], path: str | os.PathLike) -> Path:
    """Write ``records`` as a WFLW annotation file (used for predictions and tests)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(format_wflw_line(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_pts(path: str | os.PathLike) -> np.ndarray:
    """A 300-W ``.pts`` file (``version: 1``, ``n_points: N``, ``{``, N lines ``x y``, ``}``) → (N, 2) float32.

    300-W coordinates are 1-based (MATLAB); they are returned unchanged, as in the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError.at(path, None, "no such .pts file")
    lines = [line for _, line in text_lines(path)]
    header = {}
    i = 0
    while i < len(lines) and lines[i].strip() != "{":
        if ":" in lines[i]:
            key, value = lines[i].split(":", 1)
            header[key.strip()] = value.strip()
        elif lines[i].strip():
            raise DataError.at(path, i + 1, f"expected 'key: value' or '{{', got {lines[i].strip()!r}")
        i += 1
    if i == len(lines):
        raise DataError.at(path, None, "missing '{' before the points")
    try:
        n = int(header["n_points"])
    except (KeyError, ValueError):
        raise DataError.at(path, None, "missing or bad 'n_points:' header") from None
    if n < 1:
        raise DataError.at(path, None, f"'n_points: {n}' must be at least 1")
    points = []
    for j in range(i + 1, len(lines)):
        text = lines[j].strip()
        if text == "}":
            break
        parts = text.split()
        if len(parts) != 2 or not all(_is_float(p) for p in parts):
            raise DataError.at(path, j + 1, f"expected two numbers 'x y', got {text[:60]!r}")
        point = [float(parts[0]), float(parts[1])]
        if not all(math.isfinite(v) and abs(v) < MAX_COORDINATE for v in point):
            raise DataError.at(path, j + 1, f"coordinates must be finite pixel positions, got {text[:60]!r}")
        points.append(point)
    else:
        raise DataError.at(path, None, "missing closing '}'")
    if len(points) != n:
        raise DataError.at(path, None, f"header says {n} points, found {len(points)}")
    return np.asarray(points, dtype=np.float32)


def wflw_files(root: str | os.PathLike) -> dict[str, Path]:
    """The WFLW layout under ``root``: ``images`` folder and ``train``/``test`` annotation files."""
    root = Path(root)
    ann = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    files = {"images": root / "WFLW_images", "train": ann / "list_98pt_rect_attr_train.txt",
             "test": ann / "list_98pt_rect_attr_test.txt"}
    for name, p in files.items():
        if not p.exists():
            raise DataError.at(p, None, f"WFLW {name} not found under {root} (expected the official layout)")
    return files


#: The ``full`` profile's data set (WFLW, Wu et al. 2018): its entries in facelearn's data registry
#: (:data:`facelearn.data.download.REGISTRY`: where each file comes from, its licence and hash), installed in
#: the layout :func:`wflw_files` reads by ``facelearn fetch wflw``.
WFLW_REGISTRY = tuple(REGISTRY[name] for name in GROUPS["wflw"])


def inter_ocular(landmarks: np.ndarray) -> float:
    """Distance between the outer eye corners of one (98, 2) or (68, 2) face."""
    a, b = WFLW_OUTER_EYES if len(landmarks) == N_WFLW else W300_OUTER_EYES
    return math.dist(landmarks[a], landmarks[b])
