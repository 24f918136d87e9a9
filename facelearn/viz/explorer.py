"""Slider explorers that need no kernel: every setting is computed in Python beforehand, and a few lines of
inline JavaScript swap the precomputed parts of an SVG figure (and a text readout) as the reader moves a
slider. They work the same in Jupyter, on Colab and in the static HTML book, offline (book chapters "Feature
normalisation", "CosFace and ArcFace", "PFLD landmark detection").

A figure is drawn once with matplotlib; ``update(**values)`` changes its artists for one setting and returns
the ones it changed. Each returned artist is tagged, the figure is written as SVG for every combination of
the slider values, and only the tagged groups are kept per combination (identical groups stored once).
"""

from __future__ import annotations

import hashlib
import html
import io
import itertools
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

SVG_NS = "http://www.w3.org/2000/svg"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")

#: More combinations than this make a page heavy; choose coarser slider steps instead.
MAX_FRAMES = 5000


@dataclass(frozen=True)
class Slider:
    """One control: ``name`` is the keyword passed to ``update``/``readout``; ``values`` the settings it steps
    through (booleans make a check box); ``initial`` the value shown first; ``label`` what the reader sees."""

    name: str
    values: Sequence
    initial: object = None
    label: str = ""

    def index(self) -> int:
        if self.initial is None:
            return 0
        matches = [i for i, v in enumerate(self.values) if v == self.initial]
        if not matches:
            raise ValueError(f"slider {self.name!r}: initial value {self.initial!r} is not one of its values")
        return matches[0]


def _svg(fig) -> str:
    """The whole figure as SVG, text as text, without the metadata block (its date would change every page)."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "facelearn", "path.simplify_threshold": 0.3}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return re.sub(r"\s*<metadata>.*?</metadata>", "", buffer.getvalue(), flags=re.S)


def _round_numbers(text: str) -> str:
    """Path data with coordinates to a tenth of a point and no spaces around commands (a third of its size)."""
    def path(m: re.Match) -> str:
        d = re.sub(r"-?\d+\.\d+", lambda n: f"{float(n.group()):.1f}".rstrip("0").rstrip("."), m.group(1))
        return 'd="' + re.sub(r"\s*([MLCZQHVz])\s*", r"\1", d).strip() + '"'

    return re.sub(r'\bd="([^"]*)"', path, text)


def _inner(element: ET.Element) -> str:
    text = "".join(ET.tostring(child, encoding="unicode") for child in element)
    return _round_numbers(text.replace(f' xmlns="{SVG_NS}"', ""))


def _prefix_ids(text: str, prefix: str) -> str:
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", text)
    return re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', text)


def frames(sliders: Sequence[Slider]) -> list[dict]:
    """Every combination of the slider values, the last slider varying fastest (the order the page indexes)."""
    names = [s.name for s in sliders]
    return [dict(zip(names, combo)) for combo in itertools.product(*(s.values for s in sliders))]


def explorer(sliders: Sequence[Slider], *, fig=None, update: Callable[..., Iterable] | None = None,
             readout: Callable[..., str] | None = None, alt: str = "") -> "ExplorerHTML":
    """A self-contained HTML explorer over ``sliders``: the figure ``fig`` whose artists ``update(**values)``
    changes (it returns those artists), and/or a text ``readout(**values)``. ``alt`` describes the figure for
    screen readers. The figure is laid out once (``tight_layout`` after the first setting) and closed
    afterwards: it is shown through the explorer only."""
    combos = frames(sliders)
    if len(combos) > MAX_FRAMES:
        raise ValueError(f"{len(combos)} slider combinations (more than {MAX_FRAMES}): use coarser steps")
    if fig is None and readout is None:
        raise ValueError("an explorer needs a figure with an update function, or a readout")
    start = int(sum(s.index() * _stride(sliders, k) for k, s in enumerate(sliders)))
    pieces: dict[str, int] = {}

    def piece(text: str) -> int:
        return pieces.setdefault(text, len(pieces))

    table, svg, gids = [], "", []
    if fig is not None:  # the whole figure once, at the initial setting; this also fixes the layout and titles
        gids, _ = _tag(update(**combos[start]), None)
        fig.tight_layout()
        svg = _svg(fig)
    for values in combos:
        row = []
        if fig is not None:  # then only what changes, drawn on its own in the same coordinates
            _, changed = _tag(update(**values), gids)
            root = ET.fromstring(_parts_svg(fig, changed))
            for gid in gids:
                found = root.find(f".//*[@id='{gid}']")
                if found is None:
                    raise ValueError(f"update returned an artist that draws nothing (part {gid})")
                row.append(piece(_inner(found)))
        if readout is not None:  # one piece per line, so that lines shared by many settings are stored once
            row.extend(piece(line) for line in readout(**values).split("\n"))
        table.append(row)
    if fig is not None:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return ExplorerHTML(sliders, svg, gids, list(pieces), table, start, readout is not None, alt)


def _tag(changed: Iterable, gids: list[str] | None) -> tuple[list[str], list]:
    """Give the artists ``update`` returned their part ids (made on the first call); → (ids, artists)."""
    changed = list(changed)
    if gids is None:
        gids = [f"explorer-part-{k}" for k in range(len(changed))]
    elif len(changed) != len(gids):
        raise ValueError(f"update returned {len(changed)} artists for one setting and {len(gids)} for another")
    for gid, artist in zip(gids, changed):
        artist.set_gid(gid)
    return gids, changed


def _parts_svg(fig, artists: list) -> str:
    """SVG of ``artists`` alone, in the coordinates the whole figure's SVG uses (72 dpi, same layout)."""
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_svg import RendererSVG

    buffer, dpi = io.StringIO(), fig.dpi
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "facelearn", "path.simplify_threshold": 0.3}):
        fig.set_dpi(72)
        try:
            width, height = fig.get_size_inches() * 72
            renderer = RendererSVG(width, height, buffer, image_dpi=72)
            for artist in artists:
                artist.draw(renderer)
            renderer.finalize()
        finally:
            fig.set_dpi(dpi)
    return buffer.getvalue()


def _stride(sliders: Sequence[Slider], k: int) -> int:
    stride = 1
    for s in sliders[k + 1:]:
        stride *= len(s.values)
    return stride


def _value_text(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


_SCRIPT = r"""(function () {
  var root = document.getElementById("%(id)s");
  var data = JSON.parse(root.querySelector("script.explorer-data").textContent);
  var inputs = root.querySelectorAll("[data-explorer-slider]");
  function show() {
    var index = 0;
    inputs.forEach(function (input, k) {
      var position = input.type === "checkbox" ? (input.checked ? 1 : 0) : parseInt(input.value, 10);
      index += position * data.strides[k];
      var out = root.querySelector('output[data-for="' + k + '"]');
      if (out) { out.textContent = data.labels[k][position]; }
    });
    var row = data.table[index];
    data.parts.forEach(function (gid, j) {
      var group = root.querySelector('[id="' + data.prefix + gid + '"]');
      if (group) { group.innerHTML = data.pieces[row[j]].split('id="').join('id="' + data.prefix)
        .split('url(#').join('url(#' + data.prefix).split('href="#').join('href="#' + data.prefix); }
    });
    var text = root.querySelector(".explorer-readout");
    if (text) {
      text.textContent = row.slice(data.parts.length).map(function (i) { return data.pieces[i]; }).join("\n");
    }
    root.setAttribute("data-frame", index);
  }
  inputs.forEach(function (input) { input.addEventListener("input", show); input.addEventListener("change", show); });
  show();
})();"""


class ExplorerHTML:
    """The explorer as HTML (``_repr_html_`` for Jupyter and the book; :meth:`html` for a file)."""

    def __init__(self, sliders, svg, parts, pieces, table, start, has_readout, alt):
        self.sliders, self.svg, self.parts, self.pieces = list(sliders), svg, parts, pieces
        self.table, self.start, self.has_readout, self.alt = table, start, has_readout, alt

    def html(self) -> str:
        body = json.dumps(self.table) + json.dumps(self.pieces) + self.svg + self.alt
        ident = "explorer-" + hashlib.sha256(body.encode()).hexdigest()[:10]
        prefix = ident + "-"
        controls = []
        for k, s in enumerate(self.sliders):
            label = html.escape(s.label or s.name)
            if all(isinstance(v, bool) for v in s.values) and len(s.values) == 2:
                checked = " checked" if s.values[s.index()] else ""
                controls.append(f'<label class="explorer-control">{label} <input type="checkbox" data-explorer-slider '
                                f'aria-label="{label}"{checked}></label>')
            else:
                controls.append(
                    f'<label class="explorer-control">{label} <input type="range" min="0" max="{len(s.values) - 1}" '
                    f'step="1" value="{s.index()}" data-explorer-slider aria-label="{label}"> '
                    f'<output data-for="{k}">{html.escape(_value_text(s.values[s.index()]))}</output></label>')
        parts = []
        if self.svg:
            svg = self.svg[self.svg.index("<svg"):]
            svg = _prefix_ids(_round_numbers(svg), prefix)
            svg = svg.replace("<svg ", '<svg style="max-width: 100%; height: auto" ', 1)
            parts.append(f'<div class="explorer-figure" role="img" aria-label="{html.escape(self.alt)}">{svg}</div>')
        if self.has_readout:
            first = "\n".join(self.pieces[i] for i in self.table[self.start][len(self.parts):])
            parts.append(f'<pre class="explorer-readout" aria-live="polite">{html.escape(first)}</pre>')
        data = {"prefix": prefix, "parts": self.parts, "pieces": self.pieces, "table": self.table,
                "strides": [_stride(self.sliders, k) for k in range(len(self.sliders))],
                "labels": [[_value_text(v) for v in s.values] for s in self.sliders]}
        payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
        return (f'<div class="explorer" id="{ident}" data-frame="{self.start}">'
                '<div class="explorer-controls" style="display: flex; flex-wrap: wrap; gap: 0.4em 1.5em; '
                f'align-items: center">{" ".join(controls)}</div>{"".join(parts)}'
                f'<script type="application/json" class="explorer-data">{payload}</script>'
                f"<script>{_SCRIPT % {'id': ident}}</script></div>")

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self.sliders)
        return f"<explorer over {names}: {len(self.table)} settings>"

    def __len__(self) -> int:
        """The number of settings the explorer holds."""
        return len(self.table)
