"""Colours, line styles and markers every figure of the book draws with (all chapters; "How to run this book").

The colours are Okabe and Ito's palette, which stays distinguishable under the common colour-vision
deficiencies; wherever colour tells things apart, a line style or a marker tells them apart as well, so a
figure also reads in greyscale. ``plt.style.use("facelearn.viz.accessible")`` sets the same cycle for plots a
notebook draws itself.
"""

from __future__ import annotations

#: Okabe–Ito colours, in the order the figures use them (blue, orange, bluish green, vermillion, reddish
#: purple, sky blue, black, yellow).
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
#: One line style per series, paired with :data:`COLOURS` by index.
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (8, 2, 2, 2)))
#: One marker per class (ten, for the digits of the loss chapters).
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")

#: Named roles on photographs (light colours that stay visible on faces and backgrounds).
POSITIVE = "#009E73"   # matched anchors, detections, ground-truth points: bluish green, solid / dots
IGNORED = "#F0E442"    # ignored anchors: yellow, dashed
REFERENCE = "#FFFFFF"  # ground-truth boxes drawn under predictions: white
PREDICTED = "#D55E00"  # predictions drawn over ground truth: vermillion, crosses


def colour(i: int) -> str:
    """The ``i``-th colour of the cycle (wraps around)."""
    return COLOURS[i % len(COLOURS)]


def linestyle(i: int):
    """The ``i``-th line style of the cycle (wraps around)."""
    return LINESTYLES[i % len(LINESTYLES)]


def marker(i: int) -> str:
    """The ``i``-th marker of the cycle (wraps around)."""
    return MARKERS[i % len(MARKERS)]


def rgb(hex_colour: str) -> tuple[int, int, int]:
    """``"#RRGGBB"`` → (r, g, b) in 0 … 255, for OpenCV drawing (reverse it for BGR images)."""
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
