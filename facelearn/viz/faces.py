"""Faces drawn into the image's own pixels (OpenCV), for files a command writes: boxes, a label per face and
the 5 landmark points (book: "How to run it", ``facelearn detect --draw``; chapter "A face recognition system")."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from facelearn.viz import palette

#: One Okabe–Ito colour per landmark in the 5-point order (left eye, right eye, nose, left and right mouth
#: corner), RGB; each point also has its own marker shape (:data:`POINT_MARKERS`).
POINT_COLOURS = tuple(palette.rgb(c) for c in ("#D55E00", "#56B4E9", "#009E73", "#CC79A7", "#F0E442"))
#: OpenCV marker per landmark of the 5-point order: circle (drawn filled), square, triangle, diamond, cross.
POINT_MARKERS = (None, cv2.MARKER_SQUARE, cv2.MARKER_TRIANGLE_UP, cv2.MARKER_DIAMOND, cv2.MARKER_CROSS)


def draw_faces(image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray | None = None,
               labels: Sequence[str] | None = None, colour: tuple[int, int, int] = (0, 255, 0)) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 with each box (N, 4) x1 y1 x2 y2, its label and its landmarks
    (N, K, 2) pixels (points with a negative coordinate, i.e. absent, are not drawn); the 5 points get one
    colour and one marker each. Colours are in the image's channel order."""
    out = np.ascontiguousarray(image).copy()
    thick = max(1, round(max(out.shape[:2]) / 400))
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        cv2.rectangle(out, (round(x1), round(y1)), (round(x2), round(y2)), colour, thick)
        if labels is not None:
            cv2.putText(out, str(labels[i]), (round(x1), max(round(y1) - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * thick, colour, thick, cv2.LINE_AA)
        if landmarks is not None:
            for k, (x, y) in enumerate(np.asarray(landmarks[i], dtype=np.float64).reshape(-1, 2)):
                if x < 0 or y < 0:
                    continue
                if len(landmarks[i]) == 5 and POINT_MARKERS[k] is not None:
                    cv2.drawMarker(out, (round(x), round(y)), POINT_COLOURS[k], POINT_MARKERS[k], 3 * thick + 3, thick)
                else:
                    dot = POINT_COLOURS[k] if len(landmarks[i]) == 5 else colour
                    cv2.circle(out, (round(x), round(y)), thick + 1, dot, -1)
    return out
