"""Statistics of a WIDER-FACE-style ground truth, to set SynthFace beside the real benchmark
(book chapter "SynthFace", section "How close to WIDER FACE?").

Both sides are read by the same reader, :func:`facelearn.data.widerface.read_val_ground_truth`, so the
comparison goes through the code path every detection chapter uses.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

HEIGHT_QUANTILES = (10, 25, 50, 75, 90)
ATTRIBUTES = ("blur", "occlusion", "pose", "expression", "illumination", "invalid")


def val_statistics(folder: str | os.PathLike, reference_width: float | None = None) -> dict:
    """Face-size, crowd and attribute statistics of the four val ``.mat`` files in ``folder``.

    reference_width: if given, face heights are rescaled to a ``1024``-px-wide image from this width (use the
    SynthFace export's ``image_size``), so small quick-profile images compare with WIDER's ~1024 px ones.
    Returns heights (all faces, px), per_image (faces per image), quantiles, the median height per setting,
    and attribute label counts.
    """
    import scipy.io

    from facelearn.data.widerface import read_val_ground_truth

    folder = Path(folder)
    gt = read_val_ground_truth(folder)
    scale = 1.0 if reference_width is None else 1024.0 / reference_width
    keys = list(gt.boxes)
    heights = np.concatenate([gt.boxes[k][:, 3] for k in keys]) * scale if keys else np.zeros(0)
    per_image = np.array([len(gt.boxes[k]) for k in keys])
    settings = {}
    for s, keep in gt.keep.items():
        h = np.concatenate([gt.boxes[k][keep[k], 3] for k in keys]) * scale if keys else np.zeros(0)
        settings[s] = {"faces": int(len(h)), "median_height": float(np.median(h)) if len(h) else float("nan")}
    mat = scipy.io.loadmat(folder / "wider_face_val.mat")
    attributes = {}
    for a in ATTRIBUTES:
        cells = mat[f"{a}_label_list"][:, 0]
        values = np.concatenate([c[j, 0].ravel() for c in cells for j in range(c.shape[0])]).astype(int)
        attributes[a] = np.bincount(values, minlength=3 if a in ("blur", "occlusion") else 2).tolist()
    return {"images": int(len(keys)), "faces": int(per_image.sum()), "heights": heights, "per_image": per_image,
            "height_quantiles": dict(zip(HEIGHT_QUANTILES, np.percentile(heights, HEIGHT_QUANTILES).round(1).tolist())),
            "faces_per_image": {"median": float(np.median(per_image)), "mean": float(per_image.mean()),
                                "p90": float(np.percentile(per_image, 90)), "max": int(per_image.max())},
            "settings": settings, "attributes": attributes}


def comparison_table(real: dict, synth: dict) -> str:
    """A plain-text table of the headline figures of two :func:`val_statistics` results."""
    rows = [("images", real["images"], synth["images"]), ("faces", real["faces"], synth["faces"])]
    rows += [(f"face height q{q} (px @1024)", real["height_quantiles"][q], synth["height_quantiles"][q])
             for q in HEIGHT_QUANTILES]
    rows += [(f"faces/image {k}", round(real["faces_per_image"][k], 1), round(synth["faces_per_image"][k], 1))
             for k in ("median", "mean", "p90", "max")]
    rows += [(f"{s} median height", round(real["settings"][s]["median_height"], 1),
              round(synth["settings"][s]["median_height"], 1)) for s in ("easy", "medium", "hard")]
    rows += [(f"{s} share of faces", round(real["settings"][s]["faces"] / real["faces"], 3),
              round(synth["settings"][s]["faces"] / max(synth["faces"], 1), 3)) for s in ("easy", "medium", "hard")]
    for a in ATTRIBUTES:
        r, s = np.array(real["attributes"][a], float), np.array(synth["attributes"][a], float)
        rows.append((f"{a} label shares", " / ".join(f"{v:.2f}" for v in r / r.sum()),
                     " / ".join(f"{v:.2f}" for v in s / max(s.sum(), 1))))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'':<{width}}  {'WIDER FACE val':>18}  {'SynthFace':>18}"]
    lines += [f"{name:<{width}}  {str(a):>18}  {str(b):>18}" for name, a, b in rows]
    return "\n".join(lines)
