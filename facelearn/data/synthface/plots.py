"""Figures of the SynthFace chapter: the mesh, galleries, ground truth drawn on images, and statistics
beside WIDER FACE's (book chapter "SynthFace").
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from facelearn.data.synthface.model import Expression, Identity
from facelearn.data.synthface.render import draw_face
from facelearn.data.synthface.topology import TOPOLOGY, FaceTopology
from facelearn.viz import palette

#: WFLW-98 landmark groups (name, indices) for colouring.
GROUPS = (("contour", range(0, 33)), ("brows", range(33, 51)), ("nose", range(51, 60)), ("eyes", range(60, 76)),
          ("lips", range(76, 96)), ("pupils", range(96, 98)))


def plot_mesh(ax, vertices: np.ndarray | None = None, topology: FaceTopology = TOPOLOGY, numbers: bool = False) -> None:
    """The mesh seen from the front (x right, y down) with the 98 landmarks, one colour and marker per group."""
    v = topology.vertices if vertices is None else vertices
    front = np.cos(topology.uv[topology.triangles, 0]).min(1) > -0.2
    ax.triplot(v[:, 0], v[:, 1], topology.triangles[front], lw=0.3, color="0.6")
    lm = v[topology.landmarks98]
    for k, (name, idx) in enumerate(GROUPS):
        idx = list(idx)
        ax.scatter(lm[idx, 0], lm[idx, 1], s=9, label=name, zorder=3, color=palette.colour(k), marker=palette.marker(k))
        if numbers:
            for i in idx[::4]:
                ax.annotate(str(i), lm[i, :2], fontsize=6, xytext=(2, -2), textcoords="offset points")
    ax.set_aspect("equal")
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    ax.set_axis_off()


def render_gallery(faces: Sequence[tuple[Identity, Expression, tuple[float, float, float]]], size: int = 128,
                   background: tuple[int, int, int] = (200, 200, 200)) -> np.ndarray:
    """Render each (identity, expression, pose) into its own ``size``×``size`` tile; → (size, n·size, 3) RGB."""
    tiles = []
    for identity, expression, pose in faces:
        tile = np.full((size, size, 3), background, np.uint8)
        draw_face(tile, identity, expression, pose, (size / 2, size * 0.47), size * 0.62, clothes=np.array([70, 90, 120]),
                  visibility="none")
        tiles.append(tile)
    return cv2.cvtColor(np.concatenate(tiles, 1), cv2.COLOR_BGR2RGB)


def draw_landmarks(image: np.ndarray, points: np.ndarray, visible: np.ndarray | None = None, radius: int = 1) -> np.ndarray:
    """A copy of a BGR image with points drawn (visible: bluish-green dots, hidden: vermillion crosses); → RGB
    for matplotlib."""
    out = image.copy()
    visible = np.ones(len(points), bool) if visible is None else visible
    for (x, y), v in zip(points, visible):
        _draw_point(out, (int(round(x)), int(round(y))), bool(v), radius)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


#: Box colours by WIDER difficulty (BGR, Okabe–Ito), each box also labelled with its letter (e, m, h, i).
DIFFICULTY_COLOURS = {"easy": (115, 158, 0), "medium": (66, 228, 240), "hard": (0, 94, 213), "ignored": (150, 150, 150)}


def _draw_point(out: np.ndarray, xy: tuple[int, int], visible: bool, radius: int) -> None:
    """A visible point as a bluish-green dot, a hidden one as a vermillion cross (BGR image, in place)."""
    if visible:
        cv2.circle(out, xy, radius, (115, 158, 0), -1)
    else:
        cv2.drawMarker(out, xy, (0, 94, 213), cv2.MARKER_CROSS, 2 * radius + 3, 1)


def draw_scene_truth(image: np.ndarray, faces, image_size: float | None = None) -> np.ndarray:
    """A copy of a scene with each face's box coloured and lettered by difficulty (bluish green e: easy, yellow m:
    medium, vermillion h: hard, grey i: ignored) and its 5 points (visible: dots, hidden: crosses); → RGB."""
    from facelearn.data.synthface.formats import difficulty as _difficulty

    out = image.copy()
    scale = (image_size or image.shape[1]) / 1024.0
    for f in faces:
        d = _difficulty(f, scale)
        level = next((k for k in ("easy", "medium", "hard") if d[k]), "ignored")
        colour = DIFFICULTY_COLOURS[level]
        x1, y1, x2, y2 = np.round(f.render.box).astype(int)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 1)
        cv2.putText(out, level[0], (x1, max(y1 - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
        if f.render.box[3] - f.render.box[1] >= 10:
            five = f.render.landmarks98[[96, 97, 54, 76, 82]]
            for (x, y), v in zip(five, f.render.visible98[[96, 97, 54, 76, 82]]):
                _draw_point(out, (int(round(x)), int(round(y))), bool(v), 1)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


def compare_histograms(axes, real: dict, synth: dict) -> None:
    """Face heights (log bins) and faces per image, WIDER FACE val beside SynthFace (both as shares)."""
    bins = np.geomspace(2, 1024, 19)
    for k, (data, label) in enumerate(((real["heights"], "WIDER FACE val"), (synth["heights"], "SynthFace"))):
        axes[0].hist(np.clip(data, 2, 1023), bins=bins, weights=np.full(len(data), 1 / len(data)), histtype="step",
                     lw=2, color=palette.colour(k), ls=palette.linestyle(k), label=label)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("face height (px at 1024-px width)")
    axes[0].set_ylabel("share of faces")
    axes[0].legend()
    edges = np.array([1, 2, 3, 4, 6, 10, 20, 50, 100, 1000])
    for k, (data, label) in enumerate(((real["per_image"], "WIDER FACE val"), (synth["per_image"], "SynthFace"))):
        counts = np.histogram(data, edges)[0] / len(data)
        axes[1].bar(np.arange(len(counts)) + 0.4 * k - 0.2, counts, width=0.4, label=label, color=palette.colour(k),
                    hatch="//" if k else None, edgecolor="white")
    axes[1].set_xticks(range(len(edges) - 1))
    axes[1].set_xticklabels([f"{a}" if b - a == 1 else f"{a}–{b - 1}" for a, b in zip(edges[:-1], edges[1:])],
                            rotation=45, fontsize=8)
    axes[1].set_xlabel("faces per image")
    axes[1].set_ylabel("share of images")
    axes[1].legend()


def compare_attributes(ax, real: dict, synth: dict) -> None:
    """Share of faces with each non-zero WIDER attribute label, WIDER FACE val beside SynthFace."""
    names, r, s = [], [], []
    for a, levels in (("blur", (1, 2)), ("occlusion", (1, 2)), ("pose", (1,)), ("expression", (1,)),
                      ("illumination", (1,)), ("invalid", (1,))):
        rc, sc = np.array(real["attributes"][a], float), np.array(synth["attributes"][a], float)
        for lv in levels:
            names.append(f"{a}={lv}")
            r.append(rc[lv] / rc.sum())
            s.append(sc[lv] / max(sc.sum(), 1))
    x = np.arange(len(names))
    ax.bar(x - 0.2, r, width=0.4, label="WIDER FACE val", color=palette.colour(0), edgecolor="white")
    ax.bar(x + 0.2, s, width=0.4, label="SynthFace", color=palette.colour(1), hatch="//", edgecolor="white")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=45, fontsize=8)
    ax.set_ylabel("share of faces")
    ax.legend()
