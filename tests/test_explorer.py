"""Kernel-free explorers (facelearn.viz.explorer): every setting precomputed, swapped in by inline JavaScript."""

from __future__ import annotations

import json
import re
import shutil

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from facelearn.viz.explorer import MAX_FRAMES, Slider, explorer, frames  # noqa: E402


def _line_explorer():
    x = np.linspace(0, 1, 50)
    fig, ax = plt.subplots(figsize=(3, 2))
    line, = ax.plot([], [])
    title = ax.set_title(" ")
    ax.set(xlim=(0, 1), ylim=(-3, 3))

    def update(a, b):
        line.set_data(x, a * x + b)
        title.set_text(f"a = {a}")  # depends on a only: stored once per a
        return [line, title]

    return explorer([Slider("a", [1, 2, 3], initial=2), Slider("b", [0, 1])], fig=fig, update=update, alt="a line")


def _data(html: str) -> dict:
    payload = re.search(r'<script type="application/json" class="explorer-data">(.*?)</script>', html, re.S).group(1)
    return json.loads(payload.replace("<\\/", "</"))


def test_frames_enumerate_every_combination_last_slider_fastest():
    assert frames([Slider("a", [1, 2]), Slider("b", ["x", "y", "z"])])[:4] == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"}, {"a": 2, "b": "x"}]


def test_every_setting_has_its_own_parts_and_identical_parts_are_stored_once():
    e = _line_explorer()
    data = _data(e.html())
    assert len(e) == 6 and data["strides"] == [2, 1]
    lines = {row[0] for row in data["table"]}
    titles = {row[1] for row in data["table"]}
    assert len(lines) == 6 and len(titles) == 3
    assert len(data["pieces"]) == 9
    assert e.start == 2  # a = 2 (index 1) × stride 2 + b = 0


def test_the_page_holds_the_initial_figure_with_prefixed_ids_and_no_external_reference():
    html = _line_explorer().html()
    ident = re.search(r'<div class="explorer" id="([^"]+)"', html).group(1)
    svg = html[html.index("<svg"):html.index("</svg>")]
    assert f'id="{ident}-explorer-part-0"' in svg and "a = 2" in svg
    ids = re.findall(r'\bid="([^"]+)"', svg)
    assert ids and all(i.startswith(ident + "-") for i in ids)
    assert all(u.startswith(ident + "-") for u in re.findall(r"url\(#([^)]+)\)", svg))
    assert not re.findall(r"(?:src|href)=\"(?:https?:)?//", html) and "<metadata>" not in html
    assert 'aria-label="a line"' in html and html.count('type="range"') == 2


def test_readout_only_explorer_with_a_check_box():
    e = explorer([Slider("n", [1, 2, 3], initial=3), Slider("twice", [False, True])],
                 readout=lambda n, twice: f"n = {n}\nvalue = {n * (2 if twice else 1)}")
    html = e.html()
    assert 'type="checkbox"' in html and ">n = 3\nvalue = 3</pre>" in html
    data = _data(html)
    assert len({row[0] for row in data["table"]}) == 3  # the first line depends on n only


def test_bad_explorers_are_refused():
    with pytest.raises(ValueError, match="initial value 5"):
        explorer([Slider("a", [1, 2], initial=5)], readout=str)
    with pytest.raises(ValueError, match="coarser steps"):
        explorer([Slider("a", list(range(MAX_FRAMES + 1)))], readout=str)
    with pytest.raises(ValueError, match="needs a figure"):
        explorer([Slider("a", [1])])


def test_moving_a_slider_in_chromium_changes_the_figure(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    sync = pytest.importorskip("playwright.sync_api")
    if chromium is None:
        pytest.skip("no chromium (`make chromium` installs it)")
    page_file = tmp_path / "explorer.html"
    page_file.write_text(f"<!doctype html><html><head><meta charset='utf-8'></head><body>{_line_explorer().html()}"
                         "</body></html>", encoding="utf-8")
    with sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.as_uri())
        path = "() => document.querySelector('[id$=\"-explorer-part-0\"] path').getAttribute('d')"
        before = page.evaluate(path)
        page.locator("input[type=range]").first.fill("0")
        after = page.evaluate(path)
        title = page.evaluate("() => document.querySelector('[id$=\"-explorer-part-1\"]').textContent")
        browser.close()
    assert not errors
    assert before != after and "a = 1" in title
