"""Plots of embeddings and of the scale bound (book chapter "Feature normalisation" and the loss chapters)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from facelearn.recognition.normalisation import min_scale_for_probability, normface_loss_lower_bound


def plot_embeddings_2d(ax: plt.Axes, features: torch.Tensor, labels: torch.Tensor, *, normalise: bool = False,
                       title: str = "", max_points: int = 2000) -> None:
    """Scatter 2-D ``features`` (N, 2) coloured by ``labels`` (N,); with ``normalise`` the points are
    projected onto the unit circle, which is drawn."""
    x = features[:max_points].detach().float().cpu().numpy()
    y = labels[:max_points].cpu().numpy()
    if x.shape[1] != 2:
        raise ValueError(f"expected 2-D features, got shape {tuple(features.shape)}")
    if normalise:
        x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
        t = np.linspace(0, 2 * np.pi, 200)
        ax.plot(np.cos(t), np.sin(t), color="0.7", lw=1)
    ax.scatter(x[:, 0], x[:, 1], c=y, cmap="tab10", s=6, alpha=0.8, vmin=0, vmax=9)
    ax.set_aspect("equal")
    ax.set_title(title)


def plot_scale_bound(ax: plt.Axes, n_classes: list[int], s_max: float = 64.0, p: float = 0.99) -> None:
    """NormFace's lower bound on the loss against s for each class count, with the loss −log p marked and
    the smallest s reaching it (dots)."""
    s = np.linspace(0.1, s_max, 400)
    for n in n_classes:
        line, = ax.plot(s, normface_loss_lower_bound(torch.from_numpy(s), n).numpy(), label=f"n = {n:,}")
        s_min = min_scale_for_probability(p, n)
        if s_min <= s_max:
            ax.plot([s_min], [-np.log(p)], "o", color=line.get_color())
    ax.axhline(-np.log(p), color="0.5", ls="--", lw=1, label=f"loss at p = {p}")
    ax.set_yscale("log")
    ax.set_xlabel("scale s")
    ax.set_ylabel("smallest reachable loss")
    ax.legend()
