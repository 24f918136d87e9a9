"""facelearn: the library behind the facelearn book.

Face detection (RetinaFace), face-recognition losses (triplet to ArcFace) and landmark detection (PFLD),
each derived in a chapter of the book and trained through this library. See ``book/preface.md``.
"""

__version__ = "0.1.0"
