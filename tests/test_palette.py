"""The book's colours: the matplotlib style and the palette agree, and every series differs in more than colour."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from facelearn.viz import palette  # noqa: E402
from facelearn.viz.features import plot_embeddings_2d  # noqa: E402


def test_style_cycles_the_palette_colours_each_with_a_line_style():
    with plt.style.context("facelearn.viz.accessible"):
        cycle = plt.rcParams["axes.prop_cycle"].by_key()
    assert [c.lstrip("#").upper() for c in cycle["color"]] == [c.lstrip("#").upper() for c in palette.COLOURS]
    pairs = list(zip(cycle["color"], cycle["linestyle"]))
    assert len(set(pairs)) == len(pairs)
    assert len(set(cycle["linestyle"])) >= 4


def test_embeddings_tell_ten_classes_apart_by_marker_as_well_as_colour():
    fig, ax = plt.subplots()
    plot_embeddings_2d(ax, torch.randn(200, 2, generator=torch.Generator().manual_seed(0)), torch.arange(200) % 10)
    styles = {(tuple(np.round(c.get_facecolor()[0][:3], 3)), c.get_paths()[0].vertices.round(3).tobytes())
              for c in ax.collections}
    plt.close(fig)
    assert len(ax.collections) == 10 and len(styles) == 10
    assert len({c.get_paths()[0].vertices.round(3).tobytes() for c in ax.collections}) == 10


def test_rgb_reads_hex():
    assert palette.rgb("#0072B2") == (0, 114, 178)
