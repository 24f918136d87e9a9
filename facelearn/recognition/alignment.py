"""Five-point alignment for recognition (book: loss chapters): the least-squares similarity warp onto
insightface's 112×112 ArcFace template. The geometry lives in :mod:`facelearn.data.alignment` (SynthFace's
aligned crops use it too, and ``facelearn.data`` imports no task package); this module is its recognition
name.
"""

from __future__ import annotations

from facelearn.data.alignment import ARCFACE_TEMPLATE, align_face, similarity_transform

__all__ = ["ARCFACE_TEMPLATE", "align_face", "similarity_transform"]
