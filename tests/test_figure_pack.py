"""The instructors' figure pack (facelearn.teaching.figures): every captioned figure with its caption, as PNG and SVG."""

from __future__ import annotations

import base64
import json
import zipfile

import nbformat
import pytest

from facelearn.teaching import figures

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


def _cell(source, caption=None, name=None, outputs=()):
    cell = nbformat.v4.new_code_cell(source)
    if caption:
        cell.metadata["mystnb"] = {"figure": {"caption": caption, "name": name}, "image": {"alt": f"alt of {name}"}}
    cell.outputs = list(outputs)
    return cell


def _image(png=PNG):
    return nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(png).decode(),
                                                         "text/plain": "<Figure>"})


def test_captioned_cells_with_images_are_the_figures_in_page_order():
    nb = nbformat.v4.new_notebook(cells=[
        _cell("plot()", "First.", "fig-a", [_image()]),
        _cell("plot()", None, None, [_image()]),                       # no caption: not a figure of the pack
        _cell("print(1)", "Needs a download.", "fig-b", [nbformat.v4.new_output("stream", text="1\n")]),
        _cell("explorer()", "An explorer.", "fig-c", [nbformat.v4.new_output(
            "execute_result", data={"text/html": '<div><svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0"/></svg>'
                                                 "<script></script></div>", "text/plain": "<explorer>"})]),
    ])
    found = figures.figures_of(json.loads(nbformat.writes(nb)), "07_demo")
    assert [(f.number, f.name, f.caption) for f in found] == [(1, "fig-a", "First."), (2, "fig-c", "An explorer.")]
    assert found[0].png == PNG and found[0].svg is None and found[0].alt == "alt of fig-a"
    assert found[1].png is None and found[1].svg.startswith("<svg") and found[1].svg.endswith("</svg>")
    assert found[1].stem == "07-02-fig-c"


def test_pack_writes_files_captions_index_and_zip(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[_cell("plot()", "A <caption> & more.", "fig-a", [_image()])])
    src = tmp_path / "executed"
    src.mkdir()
    nbformat.write(nb, src / "03_demo.ipynb")
    written = figures.pack_from(src, tmp_path / "pack")
    assert len(written) == 1
    out = tmp_path / "pack"
    assert (out / "03-01-fig-a.png").read_bytes() == PNG
    records = json.loads((out / "captions.json").read_text())
    assert records == [{"chapter": "03_demo", "number": 1, "name": "fig-a", "caption": "A <caption> & more.",
                        "alt": "alt of fig-a", "files": ["03-01-fig-a.png"]}]
    index = (out / "index.html").read_text()
    assert "A &lt;caption&gt; &amp; more." in index and 'alt="alt of fig-a"' in index
    assert sorted(zipfile.ZipFile(out / "figures.zip").namelist()) == ["03-01-fig-a.png", "captions.json", "index.html"]


def test_bad_sources_say_which_file(tmp_path):
    with pytest.raises(ValueError, match="no chapter notebooks"):
        figures.pack_from(tmp_path, tmp_path / "pack")
    (tmp_path / "01_broken.ipynb").write_text("{not json")
    with pytest.raises(ValueError, match="01_broken.ipynb: not a readable notebook"):
        figures.pack_from(tmp_path, tmp_path / "pack")
    assert figures.main([str(tmp_path), str(tmp_path / "pack")]) == 2


def test_executing_a_chapter_writes_svg_beside_png(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[_cell(
        "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nplt.title('a line')\nplt.show()", "A line.", "fig-line")])
    nbformat.write(nb, tmp_path / "05_line.ipynb")
    written = figures.pack_from(tmp_path, tmp_path / "pack", run=True)
    assert len(written) == 1 and written[0].png.startswith(b"\x89PNG")
    assert "<svg" in (tmp_path / "pack" / "05-01-fig-line.svg").read_text()
    assert not any(c.source.startswith("%config") for c in nbformat.read(tmp_path / "05_line.ipynb", as_version=4).cells)
