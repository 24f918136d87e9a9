"""The data-set registry: every real file a ``full`` recipe or a chapter reads, where it comes from, its
licence, its SHA-256 and where it lands (book: "How to run it").

:data:`REGISTRY` is the one table; :mod:`facelearn.data.fetch` downloads, verifies and unpacks its entries
(``facelearn fetch NAME``) and reports what is present (``facelearn data``). Paths are relative to
:func:`facelearn.runtime.data_dir`; an archive is unpacked into ``folder``, and ``present`` is the file or
folder whose existence means the entry is installed in the layout the loaders read. An entry whose
publisher gives no SHA-256 has ``sha256=None``: it is fetched only with a hash the reader supplies or with an
explicit trust-on-first-use (checked against the published MD5 where there is one).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    """One downloadable file. ``url`` is ``None`` where the data set's terms require a request (``request``
    says where); ``hash_source`` says how ``sha256`` (and ``md5``, ``size`` in bytes) were established."""

    name: str
    title: str
    filename: str
    url: str | None
    sha256: str | None
    folder: str
    present: str
    licence: str
    hash_source: str
    md5: str | None = None
    size: int | None = None
    request: str = ""


_HF_WIDER = "https://huggingface.co/datasets/CUHK-CSE/wider_face/resolve/main/data/"
_TFDS = "tensorflow/datasets tensorflow_datasets/datasets/wider_face/checksums.tsv (SHA-256, size)"
_TV = "torchvision.datasets.WIDERFace (MD5)"
_WIDER_TERMS = "WIDER FACE: non-commercial research use only (Yang et al., CVPR 2016; mirror: CC BY-NC-ND 4.0)"
_BIUBUG6 = "https://raw.githubusercontent.com/biubug6/Pytorch_Retinaface/master/widerface_evaluate/ground_truth/"
_INSIGHTFACE = "https://github.com/deepinsight/insightface/tree/master/recognition/_datasets_"
_NO_HASH_INSIGHTFACE = "insightface publishes no checksum: pass --sha256 or --trust-on-first-use"


def _wider_images(split: str, sha256: str, md5: str, size: int) -> Resource:
    return Resource(f"wider_{split}", f"WIDER FACE {split} images", f"WIDER_{split}.zip", _HF_WIDER + f"WIDER_{split}.zip",
                    sha256, "widerface", f"widerface/WIDER_{split}/images", _WIDER_TERMS, f"{_TFDS}; {_TV}", md5, size)


def _val_mat(stem: str, sha256: str) -> Resource:
    return Resource(stem, f"WIDER FACE official val ground truth {stem}.mat", f"{stem}.mat", _BIUBUG6 + f"{stem}.mat",
                    sha256, "widerface/wider_face_split", f"widerface/wider_face_split/{stem}.mat", _WIDER_TERMS,
                    "SHA-256 of the copy shipped with facelearn (facelearn/data/widerface_gt), the file of the "
                    "official evaluation tool as mirrored by biubug6/Pytorch_Retinaface")


def _bin(name: str, title: str, licence: str) -> Resource:
    return Resource(name, f"{title} verification pairs (insightface .bin)", f"{name}.bin", None, None, "faces_emore",
                    f"faces_emore/{name}.bin", licence, _NO_HASH_INSIGHTFACE,
                    request=f"{_INSIGHTFACE} (inside insightface's faces_emore.zip and faces_webface_112x112.zip)")


_ENTRIES = (
    _wider_images("train", "e23b76129c825cafae8be944f65310b2e1ba1c76885afe732f179c41e5ed6d59",
                  "3fedf70df600953d25982bcd13d91ba2", 1465602149),
    _wider_images("val", "f9efbd09f28c5d2d884be8c0eaef3967158c866a593fc36ab0413e4b2a58a17a",
                  "dfa7d7e790efa35df3788964cf0bbaea", 362752168),
    _wider_images("test", "3b0313e11ea292ec58894b47ac4c0503b230e12540330845d70a7798241f88d3",
                  "e5d8f4248ed24c334bbd12f49c29dd40", 1844140520),
    Resource("wider_face_split", "WIDER FACE box annotations and file lists", "wider_face_split.zip",
             _HF_WIDER + "wider_face_split.zip", "c7561e4f5e7a118c249e0a5c5c902b0de90bbf120d7da9fa28d99041f68a8a5c",
             "widerface", "widerface/wider_face_split/wider_face_val_bbx_gt.txt", _WIDER_TERMS, f"{_TFDS}; {_TV}",
             "0e3767bcf0e326556d407bf5bff5d27c", 3591642),
    _val_mat("wider_face_val", "1dfe6a9853950f9dde256b5e8bb75d8f272e6bc02a15ae1968f5a9b883f458cb"),
    _val_mat("wider_easy_val", "c2fb672d16f75653eb89fb8bc437a7d060896a71cd7a65c1a5a3e4479024099c"),
    _val_mat("wider_medium_val", "4a031970bc132cef5cfacd05068aabcf4fe15d4a31a1e9f4f00eb134fdf449c1"),
    _val_mat("wider_hard_val", "bb1af19dc5bc4dd9517dd8ae8096326c68175f2c3411763bdd4f23fa98638b78"),
    Resource("retinaface_gt", "RetinaFace five-landmark labels for WIDER FACE ({train,val,test}/label.txt)",
             "retinaface_gt_v1.1.zip", "https://www.dropbox.com/s/7j70r3eeepe4r2g/retinaface_gt_v1.1.zip?dl=1", None,
             "widerface", "widerface/train/label.txt",
             "research use (released with RetinaFace, Deng et al. 2020); WIDER FACE's terms apply to the images",
             "the authors publish no checksum (link from biubug6/Pytorch_Retinaface's README): pass --sha256 or "
             "--trust-on-first-use"),
    Resource("wflw_annotations", "WFLW 98-point annotations", "WFLW_annotations.tar.gz",
             "https://wywu.github.io/projects/LAB/support/WFLW_annotations.tar.gz", None, "WFLW",
             "WFLW/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt",
             "research use (Wu et al., CVPR 2018)",
             "the authors publish no checksum (project page wywu.github.io/projects/LAB/WFLW.html): pass --sha256 "
             "or --trust-on-first-use"),
    Resource("wflw_images", "WFLW images (WIDER FACE photographs)", "WFLW_images.tar.gz",
             "https://drive.usercontent.google.com/download?id=1hzBd48JIdWTJSsATBEB_eFVvPL1bx6UC&export=download&confirm=t",
             None, "WFLW", "WFLW/WFLW_images", "research use (Wu et al., CVPR 2018); WIDER FACE's terms apply",
             "the authors publish no checksum (Google Drive file of the project page): pass --sha256 or "
             "--trust-on-first-use"),
    _bin("lfw", "LFW", "research use (Huang et al. 2007)"),
    _bin("cfp_fp", "CFP-FP", "research use under the CFP agreement (Sengupta et al., WACV 2016)"),
    _bin("agedb_30", "AgeDB-30", "research use under the AgeDB agreement (Moschoglou et al., CVPRW 2017)"),
    Resource("casia_webface", "CASIA-WebFace, insightface's RecordIO package (train.rec/.idx + .bin sets)",
             "faces_webface_112x112.zip", None, None, "", "faces_webface_112x112/train.rec",
             "research use after signing CASIA's release agreement (Yi et al. 2014)", _NO_HASH_INSIGHTFACE,
             request=f"{_INSIGHTFACE} (after CASIA's agreement)"),
    Resource("ms1mv2", "MS1MV2 (faces_emore), insightface's RecordIO package (train.rec/.idx + .bin sets)",
             "faces_emore.zip", None, None, "", "faces_emore/train.rec",
             "research use only; its source MS-Celeb-1M was withdrawn by its publisher in 2019", _NO_HASH_INSIGHTFACE,
             request=_INSIGHTFACE),
)

#: Registry name → entry: the one table of every real file facelearn knows.
REGISTRY: dict[str, Resource] = {r.name: r for r in _ENTRIES}

#: Names that stand for several entries in ``facelearn fetch``.
GROUPS: dict[str, tuple[str, ...]] = {
    "widerface": ("wider_train", "wider_val", "wider_face_split", "retinaface_gt"),
    "wider_val_gt": ("wider_face_val", "wider_easy_val", "wider_medium_val", "wider_hard_val"),
    "wflw": ("wflw_images", "wflw_annotations"),
    "verification": ("lfw", "cfp_fp", "agedb_30"),
}


def expand(names: list[str]) -> list[Resource]:
    """Registry entries for ``names`` (entry or group names, in order, each once); ``ValueError`` for an
    unknown name, listing the known ones."""
    out: list[Resource] = []
    for name in names:
        if name not in REGISTRY and name not in GROUPS:
            raise ValueError(f"unknown data set {name!r}; known: {', '.join(list(GROUPS) + list(REGISTRY))}")
        out += [REGISTRY[n] for n in GROUPS.get(name, (name,)) if REGISTRY[n] not in out]
    return out


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
