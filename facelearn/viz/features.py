"""Plots of embeddings and of the scale bound (book chapter "Feature normalisation" and the loss chapters)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from facelearn.recognition.normalisation import min_scale_for_probability, normface_loss_lower_bound
from facelearn.viz import palette


def plot_embeddings_2d(ax: plt.Axes, features: torch.Tensor, labels: torch.Tensor, *, normalise: bool = False,
                       title: str = "", max_points: int = 2000) -> None:
    """Scatter 2-D ``features`` (N, 2), one colour and one marker per label (N,) (legend under the axes);
    with ``normalise`` the points are projected onto the unit circle, which is drawn."""
    x = features[:max_points].detach().float().cpu().numpy()
    y = labels[:max_points].cpu().numpy()
    if x.shape[1] != 2:
        raise ValueError(f"expected 2-D features, got shape {tuple(features.shape)}")
    if normalise:
        x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
        t = np.linspace(0, 2 * np.pi, 200)
        ax.plot(np.cos(t), np.sin(t), color="0.7", lw=1)
    scatter_by_label(ax, x, y, size=6)
    ax.set_aspect("equal")
    ax.set_title(title)


def scatter_by_label(ax: plt.Axes, points: np.ndarray, labels: np.ndarray, size: float = 6, alpha: float = 0.8) -> None:
    """Scatter ``points`` (N, 2) with one Okabe–Ito colour and one marker per distinct label (N,), with a
    legend; labels are told apart by shape as well as colour."""
    for k, label in enumerate(np.unique(labels)):
        sel = labels == label
        ax.scatter(points[sel, 0], points[sel, 1], s=size, alpha=alpha, color=palette.colour(k),
                   marker=palette.marker(k), linewidths=0, label=str(label))
    ax.legend(fontsize=6, markerscale=2, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False,
              columnspacing=0.8, handletextpad=0.1)


def plot_scale_bound(ax: plt.Axes, n_classes: list[int], s_max: float = 64.0, p: float = 0.99) -> None:
    """NormFace's lower bound on the loss against s for each class count, with the loss −log p marked and
    the smallest s reaching it (dots)."""
    s = np.linspace(0.1, s_max, 400)
    for i, n in enumerate(n_classes):
        line, = ax.plot(s, normface_loss_lower_bound(torch.from_numpy(s), n).numpy(), label=f"n = {n:,}",
                        color=palette.colour(i), ls=palette.linestyle(i))
        s_min = min_scale_for_probability(p, n)
        if s_min <= s_max:
            ax.plot([s_min], [-np.log(p)], palette.marker(i), color=line.get_color())
    ax.axhline(-np.log(p), color="0.5", ls="--", lw=1, label=f"loss at p = {p}")
    ax.set_yscale("log")
    ax.set_xlabel("scale s")
    ax.set_ylabel("smallest reachable loss")
    ax.legend()
