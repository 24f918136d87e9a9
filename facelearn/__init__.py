"""facelearn: the library behind the facelearn book.

Face detection (RetinaFace), face-recognition losses (triplet to ArcFace) and landmark detection (PFLD),
each derived in a chapter of the book and trained through this library. See ``book/preface.md``; the public
API (:data:`API`) is listed on the book's page "The facelearn API".
"""

__version__ = "0.1.0"

#: The public API, importable as ``facelearn.get_model`` etc.: name → the module that defines it. Each module is
#: imported on first use, so that ``import facelearn`` stays light.
API = {
    "get_model": "facelearn.registry", "list_models": "facelearn.registry", "get_weights": "facelearn.registry",
    "list_weights": "facelearn.registry", "load": "facelearn.registry",
    "get_recipe": "facelearn.recipes", "list_recipes": "facelearn.recipes", "train": "facelearn.recipes",
    "detect": "facelearn.detection.postprocess", "embed": "facelearn.pipeline",
}

#: Where a public name differs from its name in the module that defines it.
_DEFINED_AS = {"embed": "embed_crops"}

__all__ = ["__version__", *API]


def __getattr__(name: str):  # noqa: ANN202
    if name in API:
        import importlib

        return getattr(importlib.import_module(API[name]), _DEFINED_AS.get(name, name))
    raise AttributeError(f"module 'facelearn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
