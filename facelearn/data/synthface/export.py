"""SynthFace exporters: write scenes, landmark photos and identities in the real data sets' on-disk formats
(WIDER FACE + RetinaFace labels + official val ``.mat``; WFLW; identity folders + LFW ``pairs.txt`` +
insightface ``.bin``), each with a ``meta.json`` of the true parameters (book chapter "SynthFace").

Every export is deterministic for its seed: sample i of a split is drawn from
``np.random.default_rng([seed, split, i])``, and files are written in a fixed order.
"""

from __future__ import annotations

import json
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

from facelearn.data.synthface.formats import SETTINGS, difficulty, make_pairs, write_pairs, write_val_mats
from facelearn.data.synthface.model import look_alike, sample_identity
from facelearn.data.synthface.samplers import render_identity_crop, render_landmark_photo, render_scene

GENERATOR_VERSION = "synthface-1.0"
#: WIDER-style event folders, chosen by the number of faces in the scene.
EVENTS = ((1, "0--Portrait"), (3, "1--Pair"), (9, "2--Group"), (29, "3--Large_Group"), (99, "4--Crowd"),
          (10 ** 9, "5--Dense_Crowd"))
_SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class ExportSizes:
    """Named sizes of the three exports: ``quick`` (CPU chapters, seconds) and ``full`` (the real data
    sets' sizes)."""

    widerface: tuple[int, int, int]  # n_train, n_val, image_size
    wflw: tuple[int, int]  # n_train, n_test
    identities: tuple[int, int, int]  # n_identities, images_per_identity, n_test_identities


PRESETS = {"quick": ExportSizes((400, 100, 320), (1500, 500), (200, 10, 50)),
           "full": ExportSizes((12880, 3226, 1024), (7500, 2500), (10000, 20, 600))}


def _progress(items: Iterable, total: int, desc: str, show: bool):
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, total=total, desc=desc, leave=False)


@contextmanager
def _renderers(workers: int) -> Iterator[Callable]:
    """``run(fn, items, chunksize)`` → fn(item) for every item, in order: in this process when ``workers`` is 1,
    else in that many spawned processes (each sample draws from its own generator, so the bytes are the same)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        yield lambda fn, items, chunksize: map(fn, items)
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield lambda fn, items, chunksize: pool.map(fn, items, chunksize=chunksize)
    finally:
        pool.shutdown()


def _check_args(out, **counts) -> Path:
    for name, value in counts.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".synthface-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise PermissionError(f"{out}: cannot write there ({err.strerror or err})") from None
    return out


def _imwrite(path: Path, image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"{path}: JPEG encoding failed")
    data = buf.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _write_meta(out: Path, meta: dict) -> None:
    (out / "meta.json").write_text(json.dumps(meta, indent=None, separators=(",", ":")) + "\n")


def _wider_image(out: Path, seed: int, split: str, image_size: int, i: int) -> tuple[str, str, list[str], list[dict], list]:
    """Render scene ``i`` of ``split`` and write its image → (event, name, label lines, meta entries, faces).

    The faces keep what the val ``.mat`` files need (boxes and labels), not every projected vertex."""
    rng = np.random.default_rng([seed, _SPLITS[split], i])
    aspect = float(rng.choice([0.625, 0.75, 1.0, 1.25], p=[0.3, 0.4, 0.2, 0.1]))
    img, faces = render_scene(rng, image_size, int(round(image_size * aspect)))
    event = next(name for limit, name in EVENTS if len(faces) <= limit)
    name = f"{event.split('--')[0]}_{event.split('--')[1]}_synth_{split}_{i:06d}"
    rel = f"{event}/{name}.jpg"
    _imwrite(out / f"WIDER_{split}" / "images" / rel, img, int(rng.integers(70, 96)))
    lines = [f"# {rel}"]
    face_meta = []
    for f in faces:
        x1, y1, x2, y2 = f.render.box
        w, h = x2 - x1, y2 - y1
        vals = [x1, y1, w, h]
        if h >= 10 and not f.invalid:
            five = f.render.landmarks98[[96, 97, 54, 76, 82]]
            vis = f.render.visible98[[96, 97, 54, 76, 82]]
            for (px, py), v in zip(five, vis):
                vals += [px, py, 0.0 if v else 1.0]
        else:
            vals += [-1.0] * 15
        vals.append([0.9, 0.6, 0.3][f.blur])
        lines.append(" ".join(f"{v:.2f}" for v in vals))
        face_meta.append({"pose": [round(a, 2) for a in f.pose], "expression": f.expression.to_json(),
                          "identity": f.identity.to_json(), "blur": f.blur, "occlusion": f.occlusion,
                          "occluded_fraction": round(f.occluded_fraction, 3), "illumination": f.illumination,
                          "invalid": f.invalid, "atypical_pose": f.atypical_pose,
                          "exaggerated_expression": f.exaggerated, **difficulty(f, image_size / 1024.0)})
    slim = [replace(f, render=replace(f.render, points=f.render.points[:0], depth=f.render.depth[:0])) for f in faces]
    return event, name, lines, face_meta, slim


def export_widerface(out, *, n_train: int, n_val: int, image_size: int = 640, seed: int = 0,
                     progress: bool = True, workers: int = 1) -> dict:
    """Write a WIDER-FACE-formatted SynthFace detection set under ``out`` and return its summary.

    Layout: ``WIDER_{train,val}/images/<event>/<name>.jpg``; ``{train,val}/label.txt`` (RetinaFace: a line
    ``# <event>/<name>.jpg`` then per face ``x y w h`` + 5 × ``(x y flag)`` + ``blur``; flag 0 visible,
    1 hidden, all −1 for faces under 10 px or invalid; ``blur`` is a quality score 0.9/0.6/0.3 for the blur
    labels 0/1/2 like the RetinaFace release's last column); ``wider_face_split/wider_face_val.mat`` and
    ``wider_{easy,medium,hard}_val.mat`` with the official variables. Images are ``image_size`` wide.
    ``workers`` > 1 renders scenes in that many spawned processes (as in :func:`export_wflw`); the files
    are the same byte for byte.
    """
    out = _check_args(out, n_train=n_train, n_val=n_val, image_size=image_size, seed=seed, workers=workers)
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    scale = image_size / 1024.0
    meta = {"generator": GENERATOR_VERSION, "kind": "widerface", "seed": int(seed), "image_size": int(image_size),
            "counts": {}, "settings": {k: list(v) for k, v in SETTINGS.items()}, "images": {}}
    with _renderers(workers) as run:
        for split, n in (("train", n_train), ("val", n_val)):
            lines: list[str] = []
            records: dict[str, list] = {name: [] for _, name in EVENTS}
            n_faces = 0
            scenes = run(partial(_wider_image, out, int(seed), split, int(image_size)), range(n), 4)
            for event, name, face_lines, face_meta, faces in _progress(scenes, n, f"widerface {split}", progress):
                lines += face_lines
                n_faces += len(faces)
                records[event].append((name, faces))
                meta["images"][f"{split}/{event}/{name}.jpg"] = face_meta
            (out / split).mkdir(parents=True, exist_ok=True)
            (out / split / "label.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
            meta["counts"][split] = {"images": n, "faces": n_faces}
            if split == "val":
                write_val_mats(out / "wider_face_split", records, scale, GENERATOR_VERSION)
    _write_meta(out, meta)
    return {"out": str(out), **meta["counts"]}


def _wflw_face(out: Path, seed: int, split: str, i: int) -> tuple[str, str, dict]:
    """Render face ``i`` of ``split``, write its image and return (annotation line, image path, meta entry)."""
    rng = np.random.default_rng([seed, _SPLITS[split], i])
    s = render_landmark_photo(rng)
    event = "0--Portrait" if s.attributes[0] == 0 else "1--Pose"
    rel = f"{event}/{event.split('--')[0]}_synth_{split}_{i:06d}.jpg"
    _imwrite(out / "WFLW_images" / rel, s.image, int(rng.integers(75, 96)))
    x1, y1, x2, y2 = s.render.box
    coords = " ".join(f"{v:.6f}" for v in s.render.landmarks98.ravel())
    box = f"{int(np.floor(x1))} {int(np.floor(y1))} {int(np.ceil(x2))} {int(np.ceil(y2))}"
    line = f"{coords} {box} {' '.join(str(a) for a in s.attributes)} {rel}"
    entry = {"split": split, "yaw": round(s.pose[0], 3), "pitch": round(s.pose[1], 3),
             "roll": round(s.pose[2], 3), "visible": s.render.visible98.astype(int).tolist(),
             "expression": s.expression.to_json(), "identity": s.identity.to_json()}
    return line, rel, entry


def export_wflw(out, *, n_train: int, n_test: int, seed: int = 0, progress: bool = True, workers: int = 1) -> dict:
    """Write a WFLW-formatted SynthFace landmark set under ``out`` and return its summary.

    ``WFLW_images/<event>/<name>.jpg`` (one face per photo, 160–256 px) and
    ``WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt``: per line 196
    coordinates (x0 y0 … x97 y97), the box x_min y_min x_max y_max, six flags (pose expression
    illumination make-up occlusion blur) and the image path relative to ``WFLW_images``. ``meta.json``
    holds each image's true yaw, pitch, roll (degrees, conventions of :mod:`...render`) and visibility.
    ``workers`` > 1 renders faces in that many spawned processes (so call it from a script, a notebook or
    ``python -c``, not from code piped into ``python -``); the files are the same byte for byte.
    """
    out = _check_args(out, n_train=n_train, n_test=n_test, seed=seed, workers=workers)
    ann = out / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    meta = {"generator": GENERATOR_VERSION, "kind": "wflw", "seed": int(seed), "counts": {}, "images": {},
            "attributes": ["pose", "expression", "illumination", "make-up", "occlusion", "blur"],
            "angles": "yaw > 0 turns the face to the image's right; pitch > 0 lifts the chin; roll > 0 clockwise"}
    with _renderers(workers) as run:
        ann.mkdir(parents=True, exist_ok=True)
        for split, n in (("train", n_train), ("test", n_test)):
            faces = run(partial(_wflw_face, out, int(seed), split), range(n), 16)
            lines = []
            for line, rel, entry in _progress(faces, n, f"wflw {split}", progress):
                lines.append(line)
                meta["images"][rel] = entry
            (ann / f"list_98pt_rect_attr_{split}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
            meta["counts"][split] = n
    _write_meta(out, meta)
    return {"out": str(out), **meta["counts"]}


def _identities(rng: np.random.Generator, n: int) -> tuple[list, list[int]]:
    """n identities in families: each family starts from a fresh identity and adds look-alikes."""
    people, family = [], []
    f = -1
    while len(people) < n:
        f += 1
        base = sample_identity(rng)
        people.append(base)
        family.append(f)
        for _ in range(int(rng.integers(0, 3))):
            if len(people) < n:
                people.append(look_alike(base, rng, closeness=float(rng.uniform(0.2, 0.5))))
                family.append(f)
    return people, family


def _identity_crop(out: Path, seed: int, split: str, image_size: int, job: tuple) -> tuple[dict, bytes]:
    """Render photo k of identity p (``job`` = (p, k, identity)) and write it → (parameters, JPEG bytes)."""
    p, k, identity = job
    name = f"{'id' if split == 'train' else 'test'}{p:05d}"
    rng = np.random.default_rng([seed, _SPLITS[split], p, k])
    crop, params = render_identity_crop(rng, identity, image_size)
    return params, _imwrite(out / split / name / f"{k + 1}.jpg", crop, int(rng.integers(80, 96)))


def export_identities(out, *, n_identities: int, images_per_identity: int, n_test_identities: int,
                      image_size: int = 112, seed: int = 0, progress: bool = True, workers: int = 1) -> dict:
    """Write a SynthFace identity set under ``out`` and return its summary.

    ``train/<identity>/<k>.jpg`` and ``test/<identity>/<k>.jpg`` (k = 1 … images_per_identity, aligned to
    insightface's template at ``image_size``), ``pairs.txt`` in LFW's format over ``test/`` (first line
    ``10<TAB>P``, then per fold P matched lines ``name<TAB>k1<TAB>k2`` and P mismatched lines
    ``name1<TAB>k1<TAB>name2<TAB>k2``; test identities are split into 10 disjoint folds; one mismatched pair
    in ten is drawn from one family, the others at random as in LFW), and ``synthface.bin`` (pickled ``(list of JPEG bytes, list of bool)``, the
    pairs in ``pairs.txt`` order). ``workers`` > 1 renders photos in that many spawned processes (as in
    :func:`export_wflw`); the files are the same byte for byte.
    """
    out = _check_args(out, n_identities=n_identities, images_per_identity=images_per_identity,
                      n_test_identities=n_test_identities, image_size=image_size, seed=seed, workers=workers)
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    if n_test_identities and (n_test_identities < 20 or images_per_identity < 2):
        raise ValueError("verification pairs need n_test_identities >= 20 (10 folds of 2) and images_per_identity >= 2")
    meta = {"generator": GENERATOR_VERSION, "kind": "identities", "seed": int(seed), "image_size": int(image_size),
            "counts": {"train_identities": n_identities, "test_identities": n_test_identities,
                       "images_per_identity": images_per_identity}, "identities": {}, "images": {}}
    jpeg: dict[tuple[str, int], bytes] = {}
    families: dict[str, int] = {}
    with _renderers(workers) as run:
        for split, n in (("train", n_identities), ("test", n_test_identities)):
            people, family = _identities(np.random.default_rng([seed, _SPLITS[split], 10 ** 6]), n)
            total = n * images_per_identity
            jobs = ((p, k, people[p]) for p in range(n) for k in range(images_per_identity))
            crops = run(partial(_identity_crop, out, int(seed), split, int(image_size)), jobs, 64)
            for j, (params, data) in enumerate(_progress(crops, total, f"identities {split}", progress)):
                p, k = divmod(j, images_per_identity)
                name = f"{'id' if split == 'train' else 'test'}{p:05d}"
                meta["images"][f"{split}/{name}/{k + 1}.jpg"] = params
                if k == 0:
                    meta["identities"][f"{split}/{name}"] = {"family": f"{split}-{family[p]}", **people[p].to_json()}
                if split == "test":
                    jpeg[name, k + 1] = data
                    families[name] = family[p]
    if n_test_identities:
        pairs, issame = make_pairs(np.random.default_rng([seed, 99]), n_test_identities, images_per_identity, families)
        write_pairs(out / "pairs.txt", pairs)
        bins = []
        for pr in pairs:
            a, b = ((pr[0], pr[1]), (pr[0], pr[2])) if len(pr) == 3 else ((pr[0], pr[1]), (pr[2], pr[3]))
            bins += [jpeg[a], jpeg[b]]
        with open(out / "synthface.bin", "wb") as fh:
            pickle.dump((bins, issame), fh, protocol=4)
        meta["counts"]["pairs"] = len(pairs)
    _write_meta(out, meta)
    return {"out": str(out), **meta["counts"]}
