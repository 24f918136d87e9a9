"""Figures of the PFLD chapter: the architecture, the loss weight against pose, faces, CED curves.

(book: chapter "PFLD landmark detection").
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import FancyArrowPatch, Rectangle

from facelearn.landmarks.loss import CATEGORIES, PoseThresholds, angle_weight, attribute_weight, categories
from facelearn.landmarks.metrics import ced
from facelearn.landmarks.pfld import PFLD, AuxiliaryNet, PFLDConfig
from facelearn.viz import palette


def draw_architecture(config: PFLDConfig = PFLDConfig(), ax=None):
    """Boxes for each stage with its output shape (run through the real model), the S1/S2/S3 fusion and the
    auxiliary branch. Returns the axes."""
    model, aux = PFLD(config).eval(), AuxiliaryNet(config).eval()
    shapes = {}
    for name in ("stem", "stage3", "stage4", "s1", "s2", "s3"):
        getattr(model, name).register_forward_hook(lambda m, i, o, n=name: shapes.__setitem__(n, tuple(o.shape[1:])))
    with torch.no_grad():
        _, feat = model(torch.zeros(1, 3, config.input_size, config.input_size))
        n_angles = aux(feat).shape[1]
    ax = ax or plt.subplots(figsize=(11, 4.2))[1]
    ax.set_xlim(0, 11)
    ax.set_ylim(0, 4.2)
    ax.axis("off")

    def box(x, y, text, colour, w=1.3, h=0.9):
        ax.add_patch(Rectangle((x, y), w, h, fc=colour, ec="k", lw=0.8))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=7.5)
        return x, y, w, h

    def arrow(a, b):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=9, lw=0.8))

    fmt = lambda s: f"{s[1]}×{s[2]}×{s[0]}"  # noqa: E731
    s = config.input_size
    row = [("input", f"{s}×{s}×3", "#eeeeee"), ("stem", "conv 3×3/2\nconv 3×3\n" + fmt(shapes["stem"]), "#cfe2f3"),
           ("stage3", "IR t=2 ×5\n" + fmt(shapes["stage3"]), "#cfe2f3"),
           ("stage4", "IR t=2/2, t=4 ×6\n" + fmt(shapes["stage4"]), "#cfe2f3"),
           ("s1", "S1: IR t=2\n" + fmt(shapes["s1"]), "#fce5cd"), ("s2", "S2: conv 3×3/2\n" + fmt(shapes["s2"]), "#fce5cd"),
           ("s3", f"S3: conv {s // 16}×{s // 16}\n" + fmt(shapes["s3"]), "#fce5cd")]
    xs = [0.1 + 1.55 * i for i in range(len(row))]
    for (name, text, colour), x in zip(row, xs):
        box(x, 2.9, text, colour)
    for a, b in zip(xs[:-1], xs[1:]):
        arrow((a + 1.3, 3.35), (b, 3.35))
    c = config.channels
    box(6.3, 1.3, f"concat\n{c(16)} + {c(32)} + {c(128)}", "#d9ead3", w=1.5)
    for x, label in zip(xs[4:], ("avg-pool", "avg-pool", "flatten")):
        arrow((x + 0.65, 2.9), (7.05, 2.2))
        ax.text(x + 0.3, 2.6, label, fontsize=6.5, color="0.3")
    box(8.3, 1.3, f"FC → {2 * config.n_points}\n({config.n_points} points)", "#d9ead3", w=1.5)
    arrow((7.8, 1.75), (8.3, 1.75))
    box(2.0, 0.2, "auxiliary net (training only)\n4 conv, max-pool, 2 FC", "#f4cccc", w=2.6)
    box(5.2, 0.2, f"yaw, pitch, roll\n({n_angles} angles)", "#f4cccc", w=1.5)
    arrow((xs[2] + 0.65, 2.9), (3.3, 1.1))
    arrow((4.6, 0.65), (5.2, 0.65))
    ax.set_title(f"PFLD {config.width:g}X: multi-scale fusion of S1, S2, S3 and the auxiliary angle branch")
    return ax


def plot_weight_vs_pose(omega: torch.Tensor, ax=None, thresholds: PoseThresholds = PoseThresholds()):
    """γ = (Σ_c ω^c) · Σ_k (1 − cos θ_k) for a face of yaw ψ whose auxiliary net predicts a frontal pose
    (θ = (ψ, 0, 0)), with and without the expression/occlusion attributes. Returns the axes."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    yaw = torch.linspace(-90, 90, 361)
    ang = torch.stack([torch.deg2rad(yaw), torch.zeros_like(yaw), torch.zeros_like(yaw)], 1)
    cases = ((torch.zeros(6), "no attribute"), (torch.tensor([0, 0, 0, 0, 1.0, 0]), "occluded"))
    for i, (flags, label) in enumerate(cases):
        w = attribute_weight(categories(ang, flags.expand(len(yaw), 6), thresholds), omega)
        ax.plot(yaw, w * angle_weight(ang, torch.zeros_like(ang)), label=label, color=palette.colour(i),
                ls=palette.linestyle(i))
    ax.plot(yaw, angle_weight(ang, torch.zeros_like(ang)), color="k", ls=":", label="angle term only")
    ax.set_xlabel("yaw ψ (degrees); auxiliary net predicts 0")
    ax.set_ylabel("weight γ")
    ax.legend(fontsize=8)
    return ax


def describe_weight(omega: torch.Tensor, yaw: float, pitch: float, roll: float, error: float,
                    expression: bool = False, occlusion: bool = False,
                    thresholds: PoseThresholds = PoseThresholds()) -> str:
    """A one-face breakdown of γ: categories, Σ ω^c, angle term, product. Angles and error in degrees; the
    auxiliary net's prediction is off by ``error`` degrees in each angle."""
    ang = torch.deg2rad(torch.tensor([[yaw, pitch, roll]]))
    flags = torch.zeros(1, 6)
    flags[0, 1], flags[0, 4] = float(expression), float(occlusion)
    members = categories(ang, flags, thresholds)
    w = attribute_weight(members, omega).item()
    a = angle_weight(ang + math.radians(error), ang).item()
    names = ", ".join(c for c, m in zip(CATEGORIES, members[0].tolist()) if m)
    return f"categories: {names}\nΣ ω^c = {w:.2f}   Σ(1 − cos θ) = {a:.4f}   γ = {w * a:.4f}"


def show_faces(images: list[np.ndarray], landmarks: list[np.ndarray], titles: list[str] | None = None,
               preds: list[np.ndarray] | None = None):
    """A row of faces with ground-truth (bluish-green dots) and, if given, predicted (vermillion crosses)
    landmarks. Returns the figure."""
    fig, axes = plt.subplots(1, len(images), figsize=(2.4 * len(images), 2.6))
    for k, (ax, img, lm) in enumerate(zip(np.atleast_1d(axes), images, landmarks)):
        ax.imshow(img)
        ax.scatter(lm[:, 0], lm[:, 1], s=4, c=palette.POSITIVE, marker="o", linewidths=0,
                   label="ground truth" if k == 0 else None)
        if preds is not None:
            ax.scatter(preds[k][:, 0], preds[k][:, 1], s=6, c=palette.PREDICTED, marker="x", linewidths=0.6,
                       label="prediction" if k == 0 else None)
        ax.set_title(titles[k] if titles else "", fontsize=8)
        ax.axis("off")
    if preds is not None:
        fig.legend(loc="lower center", ncol=2, fontsize=7, markerscale=2, frameon=False)
    fig.tight_layout(rect=(0, 0.06 if preds is not None else 0, 1, 1))
    return fig


def plot_ced(curves: dict[str, np.ndarray], ax=None, title: str = ""):
    """CED curves of several error sets ``{label: per-face NME}`` on [0, 0.1]. Returns the axes."""
    ax = ax or plt.subplots(figsize=(4.5, 3.5))[1]
    for i, (label, errors) in enumerate(curves.items()):
        x, y = ced(errors)
        ax.plot(x, y, label=label, color=palette.colour(i), ls=palette.linestyle(i))
    ax.set_xlabel("NME (inter-ocular)")
    ax.set_ylabel("fraction of faces")
    ax.set_title(title)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return ax
