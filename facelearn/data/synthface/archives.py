"""SynthFace exports packed as the real data sets' published archives (book chapter "SynthFace"; "How to
run it"): the files a mirror of WIDER FACE, RetinaFace's labels, WFLW or insightface's packages would serve,
with the same names and member layout, so that ``facelearn fetch --mirror`` can be exercised end to end
without the real data.

- :func:`pack_widerface`: ``WIDER_train.zip`` (``WIDER_train/images/<event>/…``), ``WIDER_val.zip``,
  ``wider_face_split.zip`` (``wider_face_split/`` with the val ``.mat`` files and ``wider_face_{train,val}_bbx_gt.txt``),
  ``retinaface_gt_v1.1.zip`` (``train/label.txt``, ``val/label.txt``);
- :func:`pack_wflw`: ``WFLW_images.tar.gz`` (``WFLW_images/<event>/…``) and ``WFLW_annotations.tar.gz``;
- :func:`pack_identities`: insightface's ``faces_emore.zip`` (``faces_emore/train.rec``, ``train.idx``,
  ``property``, ``lfw.bin``) and a loose ``lfw.bin``.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from pathlib import Path

from facelearn.data.widerface import read_labels


def _zip(archive: Path, root: Path, members: list[str], texts: dict[str, str] | None = None) -> Path:
    """``archive`` holding ``root/<member>`` (files, or folders taken whole) under the member names, and
    ``texts`` (member name → contents)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        for member in members:
            path = root / member
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for f in files:
                z.write(f, f.relative_to(root).as_posix())
        for name, text in (texts or {}).items():
            z.writestr(name, text)
    return archive


def _bbx_gt(label_txt: Path) -> str:
    """WIDER FACE's ``wider_face_*_bbx_gt.txt`` from a RetinaFace ``label.txt``: name, count, then per face
    ``x y w h blur expression illumination invalid occlusion pose`` (SynthFace labels blur only; the other
    attributes are written 0; a line of zeros for an image without faces, as the official file has)."""
    blur = {0.9: 0, 0.6: 1, 0.3: 2}
    lines = []
    for image in read_labels(label_txt):
        lines += [image.name, str(len(image.boxes))]
        lines += [" ".join(f"{v:g}" for v in box) + f" {blur.get(round(float(b), 1), 0)} 0 0 0 0 0"
                  for box, b in zip(image.boxes.tolist(), image.blur.tolist())] or ["0 0 0 0 0 0 0 0 0 0"]
    return "\n".join(lines) + "\n"


def pack_widerface(export: str | os.PathLike, out: str | os.PathLike) -> dict[str, Path]:
    """Pack a :func:`~facelearn.data.synthface.export_widerface` folder as WIDER FACE's and RetinaFace's
    archives under ``out``; returns file name → path."""
    export, out = Path(export), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [_zip(out / f"WIDER_{s}.zip", export, [f"WIDER_{s}"]) for s in ("train", "val")]
    texts = {f"wider_face_split/wider_face_{s}_bbx_gt.txt": _bbx_gt(export / s / "label.txt") for s in ("train", "val")}
    files.append(_zip(out / "wider_face_split.zip", export, ["wider_face_split"], texts))
    files.append(_zip(out / "retinaface_gt_v1.1.zip", export, ["train/label.txt", "val/label.txt"]))
    return {f.name: f for f in files}


def pack_wflw(export: str | os.PathLike, out: str | os.PathLike) -> dict[str, Path]:
    """Pack a :func:`~facelearn.data.synthface.export_wflw` folder as WFLW's two tarballs under ``out``."""
    export, out = Path(export), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for member in ("WFLW_images", "WFLW_annotations"):
        with tarfile.open(out / f"{member}.tar.gz", "w:gz") as t:
            t.add(export / member, arcname=member)
        files[f"{member}.tar.gz"] = out / f"{member}.tar.gz"
    return files


def pack_identities(export: str | os.PathLike, out: str | os.PathLike, size: int = 112) -> dict[str, Path]:
    """Pack a :func:`~facelearn.data.synthface.export_identities` folder as insightface's ``faces_emore.zip``
    under ``out``: ``train.rec``/``train.idx`` (record 0 a header whose labels (images + 1, images + 1 +
    identities) say, as MS1MV2's does, that records 1 … images are images; then one record per training image
    labelled with its identity's index), ``property``
    (``identities,size,size``) and the pairs as ``lfw.bin``; also ``lfw.bin`` on its own."""
    from facelearn.data.identities import IMAGE_SUFFIXES, pack_record, write_recordio

    export, out = Path(export), Path(out)
    stage = out / "faces_emore"
    stage.mkdir(parents=True, exist_ok=True)
    people = sorted(p for p in (export / "train").iterdir() if p.is_dir())
    images = [(label, f) for label, p in enumerate(people) for f in sorted(p.iterdir()) if f.suffix in IMAGE_SUFFIXES]
    payloads = [pack_record([len(images) + 1, len(images) + 1 + len(people)], b"")]
    payloads += [pack_record(label, f.read_bytes(), k + 1) for k, (label, f) in enumerate(images)]
    write_recordio(stage / "train.rec", stage / "train.idx", payloads)
    (stage / "property").write_text(f"{len(people)},{size},{size}")
    shutil.copyfile(export / "synthface.bin", stage / "lfw.bin")
    shutil.copyfile(export / "synthface.bin", out / "lfw.bin")
    archive = _zip(out / "faces_emore.zip", out, ["faces_emore"])
    shutil.rmtree(stage)
    return {"faces_emore.zip": archive, "lfw.bin": out / "lfw.bin"}
