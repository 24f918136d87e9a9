"""Figures of the dense-branch chapter: receptive fields drawn on the mesh, meshes rendered side by side
(book chapter "The dense regression branch")."""

from __future__ import annotations

import numpy as np
import torch


def plot_receptive_field(ax, source: int, order: int, vertices: np.ndarray | None = None) -> None:
    """The mesh seen from the front with the vertices within ``order`` hops of ``source`` coloured by their hop
    count: the receptive field of one Chebyshev convolution of that order (chebconv eq. (2))."""
    from facelearn.data.synthface import TOPOLOGY
    from facelearn.detection.mesh.graph import hops, synthface_graph

    v = TOPOLOGY.vertices if vertices is None else vertices
    front = np.cos(TOPOLOGY.uv[TOPOLOGY.triangles, 0]).min(1) > -0.2
    ax.triplot(v[:, 0], v[:, 1], TOPOLOGY.triangles[front], lw=0.3, color="0.75")
    h = hops(synthface_graph().adjacency, source)
    inside = (h >= 0) & (h <= order) & (np.cos(TOPOLOGY.uv[:, 0]) > -0.2)
    sc = ax.scatter(v[inside, 0], v[inside, 1], c=h[inside], cmap="viridis_r", s=14, vmin=0, vmax=max(order, 1),
                    zorder=3)
    ax.set_title(f"K = {order}: {int(((h >= 0) & (h <= order)).sum())} vertices", fontsize=9)
    ax.set_aspect("equal")
    ax.invert_yaxis()
    ax.set_axis_off()
    return sc


def show_images(axes, images, titles=None) -> None:
    """Show (3, S, S) tensors / (S, S, 3) arrays in [0, 1] on a row of axes."""
    for i, (ax, im) in enumerate(zip(np.ravel(axes), images)):
        arr = im.permute(1, 2, 0).cpu().numpy() if isinstance(im, torch.Tensor) else np.asarray(im)
        ax.imshow(np.clip(arr, 0, 1))
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
