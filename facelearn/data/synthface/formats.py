"""File formats written by the SynthFace exporters: the official WIDER FACE val ``.mat`` files, the
easy/medium/hard settings and LFW-style verification pairs (book chapter "SynthFace")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: easy / medium / hard: minimum face height at WIDER's 1024-px scale, and the worst occlusion and blur
#: labels a face may have (in the spirit of WIDER FACE's detection-rate based settings).
SETTINGS = {"easy": (50.0, 1, 1), "medium": (30.0, 1, 2), "hard": (10.0, 2, 2)}


def difficulty(face, scale: float) -> dict:
    """{setting: bool}: whether a scene face counts in easy, medium and hard (see :data:`SETTINGS`)."""
    h = (face.render.box[3] - face.render.box[1]) / scale
    return {s: bool(not face.invalid and h >= m and face.occlusion <= o and face.blur <= b)
            for s, (m, o, b) in SETTINGS.items()}


def write_val_mats(folder: Path, records: dict[str, list], scale: float, version: str) -> None:
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
            diff = [difficulty(f, scale) for f in faces]
            for s in SETTINGS:
                idx = [k + 1 for k, d in enumerate(diff) if d[s]]
                dtype = np.uint8 if len(faces) < 256 else np.uint16
                per_gt[s][j, 0] = np.array(idx, dtype=dtype).reshape(-1, 1)
        for k in per:
            base[k][e, 0] = per[k]
        for s in SETTINGS:
            gts[s][e, 0] = per_gt[s]
    _savemat(folder / "wider_face_val.mat", base, version)
    for s in SETTINGS:
        _savemat(folder / f"wider_{s}_val.mat", {**base, "gt_list": gts[s]}, version)


def _savemat(path: Path, variables: dict, version: str) -> None:
    """``scipy.io.savemat`` (MATLAB 5 format) with a fixed 116-byte header text instead of the creation time,
    so the same seed gives the same bytes."""
    import io

    import scipy.io

    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, oned_as="column")
    data = bytearray(buf.getvalue())
    data[:116] = f"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created by {version}".ljust(116).encode("ascii")
    path.write_bytes(bytes(data))


def make_pairs(rng, n_people: int, m: int, families: dict[str, int]):
    """LFW-style pairs over test identities split into 10 disjoint folds: P matched and P mismatched pairs per
    fold (one mismatched pair in ten drawn from one family where a fold has one, the others at random, some of
    which are look-alikes too: :func:`look_alike_pairs` counts them); → (pairs, issame)."""
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
            if len(diff) % 10 == 0:  # one mismatched pair in ten is a look-alike pair where the fold has them
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


def write_pairs(path: Path, pairs: list) -> None:
    """LFW ``pairs.txt``: ``10<TAB>P`` then the pairs, fold by fold."""
    per_fold = sum(1 for p in pairs if len(p) == 3) // 10
    lines = [f"10\t{per_fold}"] + ["\t".join(str(x) for x in p) for p in pairs]
    path.write_text("\n".join(lines) + "\n")


def look_alike_pairs(root: Path) -> tuple[int, int]:
    """(mismatched pairs of two identities of one family, all mismatched pairs) in an identity export's
    ``pairs.txt``, families read from its ``meta.json``. One slot in ten is a look-alike by construction
    (:func:`make_pairs`); a fold holds whole families, so some of the random pairs are look-alikes too."""
    root = Path(root)
    identities = json.loads((root / "meta.json").read_text())["identities"]
    family = {key.split("/", 1)[1]: v["family"] for key, v in identities.items() if key.startswith("test/")}
    rows = (line.split("\t") for line in (root / "pairs.txt").read_text().splitlines()[1:])
    mismatched = [t for t in rows if len(t) == 4]
    return sum(family[t[0]] == family[t[2]] for t in mismatched), len(mismatched)
