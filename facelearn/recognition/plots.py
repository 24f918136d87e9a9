"""Figures of the loss chapters: target-logit curves, decision margins on the circle, embeddings, distances.

(book chapters "Metric learning", "Angular margins", "CosFace and ArcFace", "Beyond ArcFace")
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from facelearn.recognition import margins
from facelearn.viz.features import scatter_by_label
from facelearn.viz import palette

Psi = Callable[[torch.Tensor], torch.Tensor]


def standard_margins() -> dict[str, Psi]:
    """ψ(cos θ) of every margin of the chapters at its paper's setting (no scale)."""
    return {
        "softmax / NormFace: cos θ": lambda c: c,
        "SphereFace: cos(4θ) (ψ, m = 4)": lambda c: margins.lsoftmax_psi(c, 4),
        "CosFace: cos θ − 0.35": lambda c: margins.cosface_psi(c, 0.35),
        "ArcFace: cos(θ + 0.5)": lambda c: margins.arcface_psi(c, 0.5),
        "combined: cos(θ + 0.3) − 0.2": lambda c: margins.combined_psi(c, 1.0, 0.3, 0.2),
    }


def plot_target_logits(ax, curves: dict[str, Psi], degrees: bool = True) -> None:  # noqa: ANN001
    """Each target logit ψ(θ) on θ ∈ [0, π] (ArcFace Fig. 5 (b))."""
    theta = torch.linspace(0, math.pi, 721, dtype=torch.float64)
    x = np.degrees(theta.numpy()) if degrees else theta.numpy()
    for i, (name, fn) in enumerate(curves.items()):
        ax.plot(x, fn(torch.cos(theta)).numpy(), label=name, color=palette.colour(i), ls=palette.linestyle(i))
    ax.set_xlabel("angle θ between feature and its class weight (degrees)" if degrees else "θ (rad)")
    ax.set_ylabel("target logit ψ(θ)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend(fontsize=8)


def decision_boundary(psi: Psi, separation: float, n: int = 2001) -> float:
    """Angle θ₁ (from W₁, towards W₂) where class 1's margin logit equals class 2's plain logit:
    ψ(θ₁) = cos(separation − θ₁). Features with θ₁ below it are classified as class 1 with the margin.
    Found on a grid of ``n`` angles, then placed by linear interpolation where the gap changes sign."""
    theta = torch.linspace(0, separation, n, dtype=torch.float64)
    gap = psi(torch.cos(theta)) - torch.cos(separation - theta)
    inside = torch.nonzero(gap >= 0)
    if not len(inside):
        return 0.0
    i = int(inside[-1])
    if i + 1 == n:
        return float(theta[i])
    return float(theta[i] + (theta[i + 1] - theta[i]) * gap[i] / (gap[i] - gap[i + 1]))


def plot_decision_margins(ax, curves: dict[str, Psi], separation: float = math.radians(90),  # noqa: ANN001
                          legend: bool = True) -> None:
    """Two class weights ``separation`` apart on the unit circle and, for each margin, the two decision
    boundaries (one per class, one legend entry); the wedge between them is the margin no feature may occupy."""
    t = np.linspace(0, 2 * math.pi, 361)
    ax.plot(np.cos(t), np.sin(t), color="grey", lw=0.5)
    for angle, label in ((0.0, "W₁"), (separation, "W₂")):
        ax.annotate("", xy=(math.cos(angle), math.sin(angle)), xytext=(0, 0), arrowprops=dict(arrowstyle="->"))
        ax.text(1.08 * math.cos(angle), 1.08 * math.sin(angle), label)
    for i, (name, fn) in enumerate(curves.items()):
        b = decision_boundary(fn, separation)
        r = 1.0 - 0.1 * i
        for k, angle in enumerate((b, separation - b)):
            ax.plot([0, r * math.cos(angle)], [0, r * math.sin(angle)], color=palette.colour(i),
                    ls=palette.linestyle(i), label=None if k else name)
    ax.set_aspect("equal")
    ax.axis("off")
    if legend:
        ax.legend(fontsize=7, loc="lower left")


def plot_embeddings_2d(ax, features: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None,  # noqa: ANN001
                       normalise: bool = False, title: str = "") -> None:
    """Scatter of 2-D features (N, 2), one colour and marker per label; class weights (C, 2) drawn as arrows in
    their class's colour."""
    f = features.detach().float()
    if normalise:
        f = torch.nn.functional.normalize(f, dim=1)
    classes = np.unique(labels.numpy())
    scatter_by_label(ax, f.numpy(), labels.numpy(), size=4, alpha=0.7)
    if weights is not None:
        w = weights.detach().float()
        scale = float(f.norm(dim=1).quantile(0.9) / w.norm(dim=1).max())
        for i, v in enumerate(w * scale):
            k = int(np.searchsorted(classes, i))
            ax.annotate("", xy=tuple(v.tolist()), xytext=(0, 0),
                        arrowprops=dict(arrowstyle="->", color=palette.colour(k) if k < len(classes) else "0.3"))
    ax.set_aspect("equal")
    ax.set_title(title)


def pair_distances(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances of normalised embeddings (N, D) for all same-identity and all different pairs."""
    from facelearn.recognition.metric import pairwise_squared_distances

    e = torch.nn.functional.normalize(embeddings.detach().float(), dim=1)
    d = pairwise_squared_distances(e)
    iu = torch.triu_indices(len(e), len(e), 1)
    same = (labels[iu[0]] == labels[iu[1]]).numpy()
    dd = d[iu[0], iu[1]].numpy()
    return dd[same], dd[~same]


def plot_distance_histograms(ax, same: np.ndarray, different: np.ndarray, margin: float | None = None,  # noqa: ANN001
                             title: str = "") -> None:
    """Histograms of same- and different-identity squared distances (on the sphere: 0 … 4): same pairs
    filled blue, different pairs hatched orange with a dashed outline."""
    bins = np.linspace(0, 4, 61)
    ax.hist(same, bins, alpha=0.6, density=True, color=palette.colour(0), label="same identity")
    ax.hist(different, bins, density=True, histtype="stepfilled", facecolor="none", edgecolor=palette.colour(1),
            ls="--", lw=1.2, hatch="///", label="different identities")
    ax.set_xlabel("‖a − b‖²")
    ax.set_title(title)
    ax.legend(fontsize=8)
