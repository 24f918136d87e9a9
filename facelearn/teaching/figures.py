"""The figure pack for instructors: every captioned figure of the book as PNG (and SVG where there is one) with
its caption and alt text, in one folder to put in slides (book page "For instructors").

The figures come from executed chapters: the notebooks the book build executes (``_build/jupyter_execute``,
which ``make figures`` builds first), or, with ``--execute``, the chapters run here with matplotlib writing
SVG beside PNG. A figure is a code cell with ``mystnb: figure: {caption, name}`` metadata; its image outputs
are the figure, and an explorer's initial setting (its inline SVG) stands in for the interactive view.

    python -m facelearn.teaching.figures _build/figures                       # from the built book
    python -m facelearn.teaching.figures --execute notebooks _build/figures   # runs the chapters (slow)
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import re
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SOURCE = Path("_build/jupyter_execute/notebooks")
#: Makes the inline backend write SVG beside PNG, for ``--execute``.
SVG_SETUP = '%config InlineBackend.figure_formats = ["png", "svg"]'


@dataclass(frozen=True)
class Figure:
    """One figure of a chapter: ``number`` counts the chapter's captioned figures from 1, in page order."""

    chapter: str
    number: int
    name: str
    caption: str
    alt: str
    png: bytes | None
    svg: str | None

    @property
    def stem(self) -> str:
        return f"{self.chapter[:2]}-{self.number:02d}-{self.name}"


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _explorer_svg(page: str) -> str | None:
    match = re.search(r"<svg\b.*?</svg>", page, re.S)
    return match.group(0) if match else None


def figures_of(notebook: dict, chapter: str) -> list[Figure]:
    """The captioned figures of one executed notebook (nbformat 4 JSON), in page order. A cell whose caption
    has no image output (a cell that needs a download, a readout-only explorer) gives none."""
    found = []
    for cell in notebook.get("cells", []):
        meta = cell.get("metadata", {}).get("mystnb", {})
        figure = meta.get("figure") if isinstance(meta, dict) else None
        if cell.get("cell_type") != "code" or not isinstance(figure, dict) or not figure.get("caption"):
            continue
        png = svg = None
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data and png is None:
                png = base64.b64decode(_text(data["image/png"]))
            if "image/svg+xml" in data and svg is None:
                svg = _text(data["image/svg+xml"])
            if "text/html" in data and svg is None and png is None:
                svg = _explorer_svg(_text(data["text/html"]))
        if png is None and svg is None:
            continue
        found.append(Figure(chapter, len(found) + 1, str(figure.get("name") or f"figure-{len(found) + 1}"),
                            str(figure["caption"]), str(meta.get("image", {}).get("alt", "")), png, svg))
    return found


def read_notebook(path: Path) -> dict:
    """An executed notebook's JSON, or a one-line error naming the file."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable notebook ({err})") from None


def execute(notebook: Path, timeout: int = 600) -> dict:
    """Run one chapter in a fresh kernel (in its own folder) with SVG figures enabled; → the executed JSON."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(SVG_SETUP))
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook.parent)}}).execute()
    nb.cells.pop(0)
    return json.loads(nbformat.writes(nb))


def write_pack(figures: Iterable[Figure], out: Path) -> list[Figure]:
    """Write each figure as ``out/NN-kk-name.png`` (and ``.svg``), ``captions.json``, an ``index.html`` that
    shows them with their captions, and ``figures.zip`` holding all of it. Returns the figures written."""
    figures = list(figures)
    out.mkdir(parents=True, exist_ok=True)
    records, rows = [], []
    for f in figures:
        files = []
        if f.png is not None:
            (out / f"{f.stem}.png").write_bytes(f.png)
            files.append(f"{f.stem}.png")
        if f.svg is not None:
            (out / f"{f.stem}.svg").write_text(f.svg, encoding="utf-8")
            files.append(f"{f.stem}.svg")
        records.append({"chapter": f.chapter, "number": f.number, "name": f.name, "caption": f.caption,
                        "alt": f.alt, "files": files})
        links = " ".join(f'<a href="{n}">{n.rsplit(".", 1)[1].upper()}</a>' for n in files)
        rows.append(f'<figure><img src="{files[0]}" alt="{html.escape(f.alt, quote=True)}">'
                    f"<figcaption><b>{html.escape(f.chapter)}, figure {f.number}.</b> {html.escape(f.caption)} "
                    f"({links})</figcaption></figure>")
    (out / "captions.json").write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "index.html").write_text(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>facelearn figures</title>'
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}img{max-width:100%}"
        "figure{margin:2em 0}</style></head><body><h1>facelearn: the book's figures</h1>"
        f"<p>{len(figures)} figures, each as PNG (and SVG where there is one), with its caption; "
        '<a href="figures.zip">all of them in one zip</a>, captions in '
        '<a href="captions.json">captions.json</a>.</p>' + "".join(rows) + "</body></html>\n", encoding="utf-8")
    with zipfile.ZipFile(out / "figures.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ["captions.json", "index.html"] + [n for r in records for n in r["files"]]:
            archive.write(out / name, name)
    return figures


def pack_from(source: Path, out: Path, *, run: bool = False) -> list[Figure]:
    """The pack of every chapter ``NN_*.ipynb`` in ``source``: executed notebooks, or chapters to ``run``."""
    chapters = sorted(source.glob("[0-9][0-9]_*.ipynb"))
    if not chapters:
        hint = "" if run else " (build the book first: `make book`, or pass --execute with the notebooks folder)"
        raise ValueError(f"{source}: no chapter notebooks NN_*.ipynb{hint}")
    figures = []
    for path in chapters:
        figures += figures_of(execute(path) if run else read_notebook(path), path.stem)
    return write_pack(figures, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facelearn.teaching.figures", description=__doc__.split("\n\n")[0],
                                     epilog="example: python -m facelearn.teaching.figures _build/figures",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", type=Path, help=f"executed notebooks (default {DEFAULT_SOURCE}); "
                        "with --execute, the chapters to run")
    parser.add_argument("out", type=Path, help="folder to write the pack into")
    parser.add_argument("--execute", action="store_true", help="run the chapters here, writing SVG beside PNG")
    args = parser.parse_args(argv)
    source = args.source or (Path("notebooks") if args.execute else DEFAULT_SOURCE)
    try:
        figures = pack_from(source, args.out, run=args.execute)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    chapters = len({f.chapter for f in figures})
    print(f"{len(figures)} figures of {chapters} chapters written to {args.out} (index.html, figures.zip)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
