"""SynthFace exporters: write scenes, landmark photos and identities in the real data sets' on-disk formats
(WIDER FACE + RetinaFace labels + official val ``.mat``; WFLW; identity folders + LFW ``pairs.txt`` +
insightface ``.bin``), each with a ``meta.json`` of the true parameters (book chapter "SynthFace").

Every export is deterministic for its seed: sample i of a split is drawn from
``np.random.default_rng([seed, split, i])``, and files are written in a fixed order.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from facelearn.data.synthface.model import look_alike, sample_identity
from facelearn.data.synthface.samplers import render_identity_crop, render_landmark_photo, render_scene

GENERATOR_VERSION = "synthface-1.0"
#: WIDER-style event folders, chosen by the number of faces in the scene.
EVENTS = ((1, "0--Portrait"), (3, "1--Pair"), (9, "2--Group"), (29, "3--Large_Group"), (99, "4--Crowd"),
          (10 ** 9, "5--Dense_Crowd"))
#: easy / medium / hard: minimum face height at WIDER's 1024-px scale, and the worst occlusion and blur
#: labels a face may have (in the spirit of WIDER FACE's detection-rate based settings).
SETTINGS = {"easy": (50.0, 1, 1), "medium": (30.0, 1, 2), "hard": (10.0, 2, 2)}
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


def _difficulty(face, scale: float) -> dict:
    h = (face.render.box[3] - face.render.box[1]) / scale
    return {s: bool(not face.invalid and h >= m and face.occlusion <= o and face.blur <= b)
            for s, (m, o, b) in SETTINGS.items()}


def export_widerface(out, *, n_train: int, n_val: int, image_size: int = 640, seed: int = 0,
                     progress: bool = True) -> dict:
    """Write a WIDER-FACE-formatted SynthFace detection set under ``out`` and return its summary.

    Layout: ``WIDER_{train,val}/images/<event>/<name>.jpg``; ``{train,val}/label.txt`` (RetinaFace: a line
    ``# <event>/<name>.jpg`` then per face ``x y w h`` + 5 × ``(x y flag)`` + ``blur``; flag 0 visible,
    1 hidden, all −1 for faces under 10 px or invalid; ``blur`` is a quality score 0.9/0.6/0.3 for the blur
    labels 0/1/2 like the RetinaFace release's last column); ``wider_face_split/wider_face_val.mat`` and
    ``wider_{easy,medium,hard}_val.mat`` with the official variables. Images are ``image_size`` wide.
    """
    out = _check_args(out, n_train=n_train, n_val=n_val, image_size=image_size, seed=seed)
    if image_size < 32:
        raise ValueError(f"image_size must be at least 32 pixels, got {image_size}")
    scale = image_size / 1024.0
    meta = {"generator": GENERATOR_VERSION, "kind": "widerface", "seed": int(seed), "image_size": int(image_size),
            "counts": {}, "settings": {k: list(v) for k, v in SETTINGS.items()}, "images": {}}
    for split, n in (("train", n_train), ("val", n_val)):
        lines: list[str] = []
        records: dict[str, list] = {name: [] for _, name in EVENTS}
        n_faces = 0
        for i in _progress(range(n), n, f"widerface {split}", progress):
            rng = np.random.default_rng([seed, _SPLITS[split], i])
            aspect = float(rng.choice([0.625, 0.75, 1.0, 1.25], p=[0.3, 0.4, 0.2, 0.1]))
            img, faces = render_scene(rng, image_size, int(round(image_size * aspect)))
            event = next(name for limit, name in EVENTS if len(faces) <= limit)
            name = f"{event.split('--')[0]}_{event.split('--')[1]}_synth_{split}_{i:06d}"
            rel = f"{event}/{name}.jpg"
            _imwrite(out / f"WIDER_{split}" / "images" / rel, img, int(rng.integers(70, 96)))
            lines.append(f"# {rel}")
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
                                  "exaggerated_expression": f.exaggerated, **_difficulty(f, scale)})
            n_faces += len(faces)
            records[event].append((name, faces))
            meta["images"][f"{split}/{rel}"] = face_meta
        (out / split).mkdir(parents=True, exist_ok=True)
        (out / split / "label.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        meta["counts"][split] = {"images": n, "faces": n_faces}
        if split == "val":
            _write_val_mats(out / "wider_face_split", records, scale)
    _write_meta(out, meta)
    return {"out": str(out), **meta["counts"]}


def _write_val_mats(folder: Path, records: dict[str, list], scale: float) -> None:
    """The official val ground truth: cell arrays (E, 1) of per-image cells, boxes int32 (k, 4) x y w h."""
    folder.mkdir(parents=True, exist_ok=True)
    events = [e for e in records if records[e]]
    E = len(events)

    def cells(n):
        return np.empty((n, 1), dtype=object)

    base = {k: cells(E) for k in ("event_list", "file_list", "face_bbx_list", "blur_label_list", "expression_label_list",
                                  "illumination_label_list", "invalid_label_list", "occlusion_label_list",
                                  "pose_label_list")}
    gts = {s: cells(E) for s in SETTINGS}
    for e, event in enumerate(events):
        items = records[event]
        base["event_list"][e, 0] = np.array([event])
        per = {k: cells(len(items)) for k in base if k != "event_list"}
        per_gt = {s: cells(len(items)) for s in SETTINGS}
        for j, (name, faces) in enumerate(items):
            per["file_list"][j, 0] = np.array([name])
            boxes = np.array([[f.render.box[0], f.render.box[1], f.render.box[2] - f.render.box[0],
                               f.render.box[3] - f.render.box[1]] for f in faces], dtype=np.float64).reshape(-1, 4)
            per["face_bbx_list"][j, 0] = np.round(boxes).astype(np.int32)
            col = lambda vals: np.array(vals, dtype=np.uint8).reshape(-1, 1)  # noqa: E731
            per["blur_label_list"][j, 0] = col([f.blur for f in faces])
            per["expression_label_list"][j, 0] = col([f.exaggerated for f in faces])
            per["illumination_label_list"][j, 0] = col([f.illumination for f in faces])
            per["invalid_label_list"][j, 0] = col([f.invalid for f in faces])
            per["occlusion_label_list"][j, 0] = col([f.occlusion for f in faces])
            per["pose_label_list"][j, 0] = col([f.atypical_pose for f in faces])
            diff = [_difficulty(f, scale) for f in faces]
            for s in SETTINGS:
                idx = [k + 1 for k, d in enumerate(diff) if d[s]]
                dtype = np.uint8 if len(faces) < 256 else np.uint16
                per_gt[s][j, 0] = np.array(idx, dtype=dtype).reshape(-1, 1)
        for k in per:
            base[k][e, 0] = per[k]
        for s in SETTINGS:
            gts[s][e, 0] = per_gt[s]
    _savemat(folder / "wider_face_val.mat", base)
    for s in SETTINGS:
        _savemat(folder / f"wider_{s}_val.mat", {**base, "gt_list": gts[s]})


def _savemat(path: Path, variables: dict) -> None:
    """``scipy.io.savemat`` (MATLAB 5 format) with a fixed 116-byte header text instead of the creation time,
    so the same seed gives the same bytes."""
    import io

    import scipy.io

    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, oned_as="column")
    data = bytearray(buf.getvalue())
    data[:116] = f"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created by {GENERATOR_VERSION}".ljust(116).encode("ascii")
    path.write_bytes(bytes(data))


def export_wflw(out, *, n_train: int, n_test: int, seed: int = 0, progress: bool = True) -> dict:
    """Write a WFLW-formatted SynthFace landmark set under ``out`` and return its summary.

    ``WFLW_images/<event>/<name>.jpg`` (one face per photo, 160–256 px) and
    ``WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt``: per line 196
    coordinates (x0 y0 … x97 y97), the box x_min y_min x_max y_max, six flags (pose expression
    illumination make-up occlusion blur) and the image path relative to ``WFLW_images``. ``meta.json``
    holds each image's true yaw, pitch, roll (degrees, conventions of :mod:`...render`) and visibility.
    """
    out = _check_args(out, n_train=n_train, n_test=n_test, seed=seed)
    ann = out / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    ann.mkdir(parents=True, exist_ok=True)
    meta = {"generator": GENERATOR_VERSION, "kind": "wflw", "seed": int(seed), "counts": {}, "images": {},
            "attributes": ["pose", "expression", "illumination", "make-up", "occlusion", "blur"],
            "angles": "yaw > 0 turns the face to the image's right; pitch > 0 lifts the chin; roll > 0 clockwise"}
    for split, n in (("train", n_train), ("test", n_test)):
        lines = []
        for i in _progress(range(n), n, f"wflw {split}", progress):
            rng = np.random.default_rng([seed, _SPLITS[split], i])
            s = render_landmark_photo(rng)
            event = "0--Portrait" if s.attributes[0] == 0 else "1--Pose"
            rel = f"{event}/{event.split('--')[0]}_synth_{split}_{i:06d}.jpg"
            _imwrite(out / "WFLW_images" / rel, s.image, int(rng.integers(75, 96)))
            x1, y1, x2, y2 = s.render.box
            coords = " ".join(f"{v:.6f}" for v in s.render.landmarks98.ravel())
            box = f"{int(np.floor(x1))} {int(np.floor(y1))} {int(np.ceil(x2))} {int(np.ceil(y2))}"
            lines.append(f"{coords} {box} {' '.join(str(a) for a in s.attributes)} {rel}")
            meta["images"][rel] = {"split": split, "yaw": round(s.pose[0], 3), "pitch": round(s.pose[1], 3),
                                   "roll": round(s.pose[2], 3), "visible": s.render.visible98.astype(int).tolist(),
                                   "expression": s.expression.to_json(), "identity": s.identity.to_json()}
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
                people.append(look_alike(base, rng, closeness=float(rng.uniform(0.55, 0.8))))
                family.append(f)
    return people, family


def export_identities(out, *, n_identities: int, images_per_identity: int, n_test_identities: int,
                      image_size: int = 112, seed: int = 0, progress: bool = True) -> dict:
    """Write a SynthFace identity set under ``out`` and return its summary.

    ``train/<identity>/<k>.jpg`` and ``test/<identity>/<k>.jpg`` (k = 1 … images_per_identity, aligned to
    insightface's template at ``image_size``), ``pairs.txt`` in LFW's format over ``test/`` (first line
    ``10<TAB>P``, then per fold P matched lines ``name<TAB>k1<TAB>k2`` and P mismatched lines
    ``name1<TAB>k1<TAB>name2<TAB>k2``; test identities are split into 10 disjoint folds; half the mismatched
    pairs are look-alikes), and ``synthface.bin`` (pickled ``(list of JPEG bytes, list of bool)``, the
    pairs in ``pairs.txt`` order).
    """
    out = _check_args(out, n_identities=n_identities, images_per_identity=images_per_identity,
                      n_test_identities=n_test_identities, image_size=image_size, seed=seed)
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
    if n_test_identities and (n_test_identities < 20 or images_per_identity < 2):
        raise ValueError("verification pairs need n_test_identities >= 20 (10 folds of 2) and images_per_identity >= 2")
    meta = {"generator": GENERATOR_VERSION, "kind": "identities", "seed": int(seed), "image_size": int(image_size),
            "counts": {"train_identities": n_identities, "test_identities": n_test_identities,
                       "images_per_identity": images_per_identity}, "identities": {}, "images": {}}
    jpeg: dict[tuple[str, int], bytes] = {}
    families: dict[str, int] = {}
    for split, n in (("train", n_identities), ("test", n_test_identities)):
        people, family = _identities(np.random.default_rng([seed, _SPLITS[split], 10 ** 6]), n)
        total = n * images_per_identity
        for j in _progress(range(total), total, f"identities {split}", progress):
            p, k = divmod(j, images_per_identity)
            name = f"{'id' if split == 'train' else 'test'}{p:05d}"
            rng = np.random.default_rng([seed, _SPLITS[split], p, k])
            crop, params = render_identity_crop(rng, people[p], image_size)
            data = _imwrite(out / split / name / f"{k + 1}.jpg", crop, int(rng.integers(80, 96)))
            meta["images"][f"{split}/{name}/{k + 1}.jpg"] = params
            if k == 0:
                meta["identities"][f"{split}/{name}"] = {"family": f"{split}-{family[p]}", **people[p].to_json()}
            if split == "test":
                jpeg[name, k + 1] = data
                families[name] = family[p]
    if n_test_identities:
        pairs, issame = _pairs(np.random.default_rng([seed, 99]), n_test_identities, images_per_identity, families)
        _write_pairs(out / "pairs.txt", pairs)
        bins = []
        for pr in pairs:
            a, b = ((pr[0], pr[1]), (pr[0], pr[2])) if len(pr) == 3 else ((pr[0], pr[1]), (pr[2], pr[3]))
            bins += [jpeg[a], jpeg[b]]
        with open(out / "synthface.bin", "wb") as fh:
            pickle.dump((bins, issame), fh, protocol=4)
        meta["counts"]["pairs"] = len(pairs)
    _write_meta(out, meta)
    return {"out": str(out), **meta["counts"]}


def _pairs(rng, n_people: int, m: int, families: dict[str, int]):
    names = [f"test{p:05d}" for p in range(n_people)]
    folds = np.array_split(np.arange(n_people), 10)
    per_fold = min(300, min(len(f) * m * (m - 1) // 2 for f in folds), min(len(f) * (len(f) - 1) // 2 * m * m for f in folds))
    all_pairs, issame = [], []
    for fold in folds:
        same, diff = [], []
        seen = set()
        while len(same) < per_fold:
            p = names[int(rng.choice(fold))]
            a, b = sorted(rng.choice(m, 2, replace=False).tolist())
            if (p, a, b) not in seen:
                seen.add((p, a, b))
                same.append((p, a + 1, b + 1))
        seen = set()
        while len(diff) < per_fold:
            p, q = rng.choice(fold, 2, replace=False).tolist()
            if len(diff) % 2 == 0:  # half the mismatched pairs are look-alikes where the fold has them
                kin = [x for x in fold.tolist() if x != p and families[names[x]] == families[names[p]]]
                if kin:
                    q = int(rng.choice(kin))
            key = (min(p, q), max(p, q), int(rng.integers(m)), int(rng.integers(m)))
            if key not in seen:
                seen.add(key)
                diff.append((names[key[0]], key[2] + 1, names[key[1]], key[3] + 1))
        all_pairs += same + diff
        issame += [True] * len(same) + [False] * len(diff)
    return all_pairs, issame


def _write_pairs(path: Path, pairs: list) -> None:
    per_fold = sum(1 for p in pairs if len(p) == 3) // 10
    lines = [f"10\t{per_fold}"] + ["\t".join(str(x) for x in p) for p in pairs]
    path.write_text("\n".join(lines) + "\n")
