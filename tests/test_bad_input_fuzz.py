"""Property fuzzing of the text parsers: any bytes either parse to finite, in-range values or raise
DataError — never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facelearn.data import identities, wflw, widerface
from facelearn.data.files import MAX_COORDINATE
from facelearn.detection.predictions import read_prediction_file
from facelearn.errors import DataError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Tokens near the formats: numbers of every kind (non-finite, huge, negative), words and separators.
NUMBER = st.one_of(st.integers(-5, 300).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.sampled_from(["nan", "inf", "-inf", "1e308", "-1", "0", "1e30", "0x10", "1_0", ""]))
TOKEN = st.one_of(NUMBER, NUMBER, st.sampled_from(["#", "# a/b.jpg", "{", "}", "n_points: 3", "version: 1", "x.jpg",
                                                    "é", "\x00", "\t"]),
                  st.text(max_size=6))


def _lines(tokens_per_line: st.SearchStrategy[int], max_lines: int = 8) -> st.SearchStrategy[str]:
    line = tokens_per_line.flatmap(lambda n: st.lists(TOKEN, min_size=n, max_size=n)).map(" ".join)
    return st.lists(line, max_size=max_lines).map("\n".join)


def _mutate(text: str) -> st.SearchStrategy[bytes]:
    data = text.encode("utf-8")
    return st.one_of(st.just(data), st.integers(0, len(data)).map(lambda k: data[:k]),
                     st.binary(max_size=8).map(lambda junk: data + junk))


def _parse(read, data: bytes, name: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            return read(path)
        except DataError:
            return None


def _finite(*arrays: np.ndarray) -> bool:
    return all(np.isfinite(a).all() and (np.abs(a) < MAX_COORDINATE).all() for a in arrays)


GOOD_LABEL = "# 0--A/a.jpg\n10 20 30 40 15 25 0 35 25 0 25 35 0 18 50 0 32 50 0 0.5\n1 2 3 4\n"


@FUZZ
@given(st.one_of(_lines(st.sampled_from([1, 4, 19, 20])).map(lambda t: "# a.jpg\n" + t),
                 st.just(GOOD_LABEL).flatmap(_mutate).map(lambda b: b.decode("utf-8", "replace"))).flatmap(_mutate))
def test_label_txt(data):
    images = _parse(widerface.read_labels, data, "label.txt")
    for im in images or []:
        assert im.boxes.shape[1:] == (4,) and im.landmarks.shape[1:] == (5, 2)
        assert _finite(im.boxes, im.landmarks, im.blur) and (im.boxes[:, 2:] >= 0).all()


WFLW_LINE = " ".join([f"{10 + i % 50}.5" for i in range(196)] + ["5", "6", "90", "95"] + ["0"] * 6 + ["x/1.jpg"])


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 206), TOKEN), max_size=4), st.booleans())
def test_wflw_lines(changes, drop):
    tokens = WFLW_LINE.split()
    for i, v in changes:
        tokens[i] = v
    if drop:
        tokens.pop()
    records = _parse(wflw.read_wflw, (" ".join(tokens) + "\n").encode(), "list.txt")
    for r in records or []:
        assert r.landmarks.shape == (98, 2) and _finite(r.landmarks, r.box)
        assert r.box[2] > r.box[0] and r.box[3] > r.box[1] and set(r.attributes.tolist()) <= {0, 1}


@FUZZ
@given(st.integers(-1, 4), _lines(st.sampled_from([1, 2, 2, 3]), 5), st.booleans())
def test_pts(n, body, close):
    text = f"version: 1\nn_points: {n}\n{{\n{body}\n" + ("}\n" if close else "")
    points = _parse(wflw.read_pts, text.encode(), "a.pts")
    if points is not None:
        assert points.shape == (n, 2) and _finite(points)


@FUZZ
@given(st.sampled_from(["1 1", "2 1", "1", "0 1", "x"]), _lines(st.sampled_from([2, 3, 4, 5]), 6))
def test_pairs_txt(header, body):
    result = _parse(identities.read_pairs, f"{header}\n{body}\n".encode(), "pairs.txt")
    if result is not None:
        pairs, same = result
        assert len(pairs) == len(same) and same.dtype == bool


@FUZZ
@given(st.sampled_from(["0", "1", "2", "-1", "nan", "1.5", "x"]), _lines(st.sampled_from([3, 5, 5, 6]), 3))
def test_prediction_files(count, body):
    boxes = _parse(read_prediction_file, f"a\n{count}\n{body}\n".encode(), "a.txt")
    if boxes is not None:
        assert boxes.shape[1:] == (5,) and np.isfinite(boxes).all() and _finite(boxes[:, :4])
        assert (boxes[:, 2:4] >= 0).all()
