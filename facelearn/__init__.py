"""facelearn: the library behind the facelearn book.

Face detection (RetinaFace), face-recognition losses (triplet to ArcFace) and landmark detection (PFLD),
each derived in a chapter of the book and trained through this library. See ``book/preface.md``.
"""

__version__ = "0.1.0"

#: The model registry, importable as ``facelearn.get_model`` etc. (:mod:`facelearn.registry`), loaded on first use
#: so that ``import facelearn`` stays light.
_REGISTRY = ("get_model", "list_models", "list_weights", "get_weights", "load")


def __getattr__(name: str):  # noqa: ANN202
    if name in _REGISTRY:
        from facelearn import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'facelearn' has no attribute {name!r}")
