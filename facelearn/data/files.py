"""Reading input files defensively (book: "How to run it", bad input).

Two readers that every loader shares, so damaged files fail the same way everywhere:

- :func:`text_lines` reads a text file line by line with a cap on the line length, so a file that is not
  what it claims (a binary blob, a 50 MB line) costs at most one capped line of memory and is reported as
  ``file:line``; bytes that are not UTF-8 are reported the same way.
- :func:`decode_bgr` decodes JPEG, PNG and BMP bytes and first checks that the file is complete. OpenCV's
  decoders fill the missing part of a truncated JPEG or PNG with grey and report nothing, so a file cut
  short is recognised by its missing end marker (JPEG ``FF D9``, PNG ``IEND``) or by a BMP's size field.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Iterator

import numpy as np

from facelearn.errors import DataError

#: Longest line (bytes) a text reader accepts; the longest legitimate line (WFLW, 207 tokens) is ~2 KB.
MAX_LINE_BYTES = 1 << 20
#: Coordinates at or beyond this (pixels) are refused: no image is that large, and float32 keeps them exact.
MAX_COORDINATE = 1e7


def text_lines(path: str | os.PathLike, max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` of a UTF-8 text file, 1-based, without the line ending.

    Raises :class:`DataError` naming ``path:line`` for a line longer than ``max_bytes`` (read no further than
    that) or one that is not UTF-8; a missing file is a :class:`DataError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError.at(path, None, "no such file")
    with open(path, "rb") as f:
        number = 0
        while True:
            raw = f.readline(max_bytes + 1)
            if not raw:
                return
            number += 1
            if len(raw) > max_bytes:
                raise DataError.at(path, number, f"line longer than {max_bytes} bytes: not a text file of this kind")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError.at(path, number, f"not UTF-8 text (byte 0x{raw[err.start]:02x} at column "
                                                 f"{err.start + 1})") from None
            yield number, text.rstrip("\r\n")


def _incomplete(data: bytes) -> str | None:
    """Why ``data`` is not a whole JPEG/PNG/BMP file, or ``None`` when it looks complete (or is another format)."""
    if data[:2] == b"\xff\xd8":  # FF D9 after the last start-of-scan FF DA (not a thumbnail's inside APP1)
        end, scan = data.rfind(b"\xff\xd9"), data.rfind(b"\xff\xda")
        return None if end > max(scan, 2) else "truncated JPEG (no end-of-image marker FF D9 after its last scan)"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return None if data.rfind(b"IEND") > 8 else "truncated PNG (no IEND chunk)"
    if data[:2] == b"BM" and len(data) >= 6:
        size = struct.unpack_from("<I", data, 2)[0]
        return None if len(data) >= size else f"truncated BMP ({len(data)} of {size} bytes)"
    return None


def decode_bgr(data: bytes | np.ndarray, where: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Encoded image bytes → H×W×3 uint8 BGR (OpenCV's order); :class:`DataError` naming ``where`` when the
    bytes are empty, truncated or not an image."""
    import cv2

    data = bytes(data) if not isinstance(data, np.ndarray) else data.astype(np.uint8).tobytes()
    if not data:
        raise DataError.at(where, None, "empty image file (0 bytes)")
    reason = _incomplete(data)
    if reason:
        raise DataError.at(where, None, reason)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError.at(where, None, "cannot decode the image (not a JPEG, PNG or BMP file)")
    return image


def read_bgr(path: str | os.PathLike) -> np.ndarray:
    """An image file → H×W×3 uint8 BGR, checked as :func:`decode_bgr` does."""
    path = Path(path)
    if not path.is_file():
        raise DataError.at(path, None, "missing or unreadable image (no such file)")
    return decode_bgr(path.read_bytes(), path)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file → H×W×3 uint8 RGB, checked as :func:`decode_bgr` does (OpenCV's channel swap: the bytes
    of reversing the channel axis, without NumPy's strided copy)."""
    import cv2

    return cv2.cvtColor(read_bgr(path), cv2.COLOR_BGR2RGB)
