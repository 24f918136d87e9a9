"""The data-set registry: where each real file comes from and its SHA-256 (book: "How to run it").

Every download goes through :func:`fetch`, which uses pooch and refuses a file whose SHA-256 differs
from the registry's. An entry without a known hash cannot be fetched unless the caller supplies one
(for instance after checking it against the data set's own published checksum).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from facelearn import runtime


@dataclass(frozen=True)
class Resource:
    """One downloadable file: registry ``name``, ``url``, ``sha256`` (``None`` if not yet pinned),
    ``folder`` under :func:`facelearn.runtime.data_dir`, whether to unpack it, and its licence."""

    name: str
    url: str
    sha256: str | None
    folder: str
    unpack: bool = False
    licence: str = ""


_GT = "https://raw.githubusercontent.com/biubug6/Pytorch_Retinaface/master/widerface_evaluate/ground_truth/"

REGISTRY: dict[str, Resource] = {}


def register(resource: Resource) -> Resource:
    """Add ``resource`` to :data:`REGISTRY` (task modules list their data sets below)."""
    REGISTRY[resource.name] = resource
    return resource


# WIDER FACE validation ground truth (the official evaluation's .mat files).
for _stem, _digest in [
    ("wider_face_val", "1dfe6a9853950f9dde256b5e8bb75d8f272e6bc02a15ae1968f5a9b883f458cb"),
    ("wider_easy_val", "c2fb672d16f75653eb89fb8bc437a7d060896a71cd7a65c1a5a3e4479024099c"),
    ("wider_medium_val", "4a031970bc132cef5cfacd05068aabcf4fe15d4a31a1e9f4f00eb134fdf449c1"),
    ("wider_hard_val", "bb1af19dc5bc4dd9517dd8ae8096326c68175f2c3411763bdd4f23fa98638b78"),
]:
    register(Resource(f"{_stem}.mat", _GT + f"{_stem}.mat", _digest, "widerface/wider_face_split",
                      licence="WIDER FACE annotations: research use (Yang et al., CVPR 2016)"))


def fetch(name: str, sha256: str | None = None, progress: bool = True) -> Path:
    """Download registry entry ``name`` into the data folder (once) and return its local path.

    ``sha256`` overrides the registry hash. Raises ``ValueError`` for an unknown name or an entry with no
    hash; pooch raises when the downloaded bytes do not match.
    """
    import pooch

    if name not in REGISTRY:
        raise ValueError(f"unknown data-set file {name!r}; known: {', '.join(sorted(REGISTRY))}")
    res = REGISTRY[name]
    digest = sha256 or res.sha256
    if digest is None:
        raise ValueError(f"{name}: the registry holds no SHA-256 for {res.url}; pass sha256=... after checking "
                         "the data set's published checksum")
    processor = pooch.Unzip() if res.unpack else None
    path = pooch.retrieve(res.url, known_hash=f"sha256:{digest}", fname=res.name,
                          path=runtime.data_dir() / res.folder, processor=processor, progressbar=progress)
    return Path(path[0] if isinstance(path, list) else path)
