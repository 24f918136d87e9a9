"""Open the built book in headless Chromium with the network cut off (run by `make test` after the build).

Every page must load with no console error and no request leaving localhost, every image must decode and
carry an alt text that describes it (not a file name), every figure of a chapter must have a numbered caption,
every math element must be typeset by the locally served MathJax, the chapters' exercises must render
with hidden solutions, embedded widgets must render, and the kernel-free explorers must redraw their figure
when a slider moves. Builds the book first if it is missing.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.book

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("FACELEARN_BOOK_HTML") or ROOT / "_build" / "html")
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


#: An alt text that is only a file name: a hash, or anything ending like an image file.
FILE_NAME_ALT = re.compile(r"^\s*([0-9a-f]{16,}|\S+\.(png|svg|jpe?g|gif|webp))\s*$", re.I)
CHAPTERS = ("01_feature_normalisation", "22_cosface_arcface", "30_pfld")


def _pages() -> list[Path]:
    skip = {"genindex.html", "search.html", "py-modindex.html"}
    return sorted(p for p in HTML.rglob("*.html") if p.name not in skip and "_static" not in p.parts
                  and "_sources" not in p.parts)


@pytest.fixture(scope="module")
def site():
    if not (HTML / "index.html").is_file():
        subprocess.run([str(Path(sys.executable).with_name("jupyter-book")), "build", ".", "--keep-going"],
                       cwd=ROOT, check=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    handler = type("QuietHandler", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a, **k: None})
    handler = functools.partial(handler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    playwright = pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        pytest.fail("no chromium found: `make chromium` installs Debian's chromium (or set $CHROMIUM)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def _visit(browser, url):
    """Load ``url`` offline; return (page, console errors, blocked external requests)."""
    context = browser.new_context()
    errors, blocked = [], []
    page = context.new_page()

    def route(r):
        host = urlparse(r.request.url).hostname
        if host in ("127.0.0.1", "localhost") or r.request.url.startswith("data:"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url, wait_until="load")
    page.wait_for_function("() => !window.MathJax || !MathJax.startup || MathJax.startup.promise !== undefined")
    page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
    page.wait_for_timeout(300)
    return context, page, errors, blocked


def test_every_page_renders_offline(site, browser):
    pages = _pages()
    assert pages, f"no pages under {HTML}"
    problems = []
    for path in pages:
        rel = path.relative_to(HTML).as_posix()
        context, page, errors, blocked = _visit(browser, f"{site}/{rel}")
        broken = page.evaluate("() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
        math = page.evaluate("() => document.querySelectorAll('.math, span.math, div.math').length")
        typeset = page.evaluate("() => document.querySelectorAll('mjx-container').length")
        errored = page.evaluate("() => document.querySelectorAll('mjx-merror').length")
        widgets = page.evaluate("() => document.querySelectorAll('script[type=\"application/vnd.jupyter.widget-view+json\"]').length")
        rendered_widgets = page.evaluate("() => document.querySelectorAll('.jupyter-widgets, .widget-slider, .widget-box').length")
        alts = page.evaluate("() => [...document.images].map(i => [i.getAttribute('src'), i.getAttribute('alt')])")
        uncaptioned = page.evaluate("""() => [...document.querySelectorAll('.cell_output img, .cell_output .explorer')]
            .filter(e => { const f = e.closest('figure');
                           return !f || !f.querySelector('figcaption .caption-number') || !f.querySelector('figcaption .caption-text'); })
            .map(e => e.getAttribute('src') || e.id)""")
        context.close()
        no_alt = [src for src, alt in alts if not alt or not alt.strip() or FILE_NAME_ALT.match(alt)]
        if no_alt:
            problems.append(f"{rel}: images whose alt text is missing or a file name {no_alt[:3]}")
        if uncaptioned:
            problems.append(f"{rel}: {len(uncaptioned)} figures without a numbered caption {uncaptioned[:3]}")
        if errors:
            problems.append(f"{rel}: console errors {errors[:3]}")
        if blocked:
            problems.append(f"{rel}: requests leaving localhost {sorted(set(blocked))[:3]}")
        if broken:
            problems.append(f"{rel}: images that do not load {broken[:3]}")
        if math and typeset < math:
            problems.append(f"{rel}: {math} math elements but only {typeset} typeset by MathJax")
        if errored:
            problems.append(f"{rel}: {errored} MathJax errors")
        if widgets and not rendered_widgets:
            problems.append(f"{rel}: {widgets} widgets embedded but none rendered")
    assert not problems, "\n".join(problems)


def test_first_chapter_shows_math_figures_and_hidden_solutions(site, browser):
    context, page, errors, _ = _visit(browser, f"{site}/notebooks/01_feature_normalisation.html")
    assert page.evaluate("() => document.querySelectorAll('mjx-container').length") >= 10
    assert page.evaluate("() => [...document.images].filter(i => i.naturalWidth > 100).length") >= 3
    assert page.evaluate("() => document.querySelectorAll('.exercise').length") >= 3
    hidden = page.evaluate("() => [...document.querySelectorAll('.solution')].every(s => s.tagName === 'DETAILS' ? !s.open : s.classList.contains('dropdown'))")
    assert hidden, "solutions must be hidden behind a toggle"
    context.close()


def test_figures_are_numbered_with_their_captions(site, browser):
    context, page, _, _ = _visit(browser, f"{site}/notebooks/10_anchors.html")
    numbers = page.evaluate("() => [...document.querySelectorAll('figure figcaption .caption-number')].map(e => e.textContent)")
    context.close()
    assert len(numbers) >= 3 and all(re.match(r"Fig\. \d+", n) for n in numbers), numbers
    assert len(set(numbers)) == len(numbers)


def _explorer_state(page):
    return page.evaluate("""() => { const e = document.querySelector('.explorer');
        return e && {frame: e.getAttribute('data-frame'),
                     parts: [...e.querySelectorAll('.explorer-figure [id*="-explorer-part-"]')].map(g => g.innerHTML).join('|'),
                     readout: (e.querySelector('.explorer-readout') || {}).textContent || '',
                     figure: !!e.querySelector('.explorer-figure svg')}; }""")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_moving_a_slider_redraws_the_explorer_without_a_kernel(site, browser, chapter):
    context, page, errors, blocked = _visit(browser, f"{site}/notebooks/{chapter}.html")
    before = _explorer_state(page)
    assert before, f"{chapter}: no explorer on the page"
    slider = page.locator(".explorer input[type=range]").first
    slider.fill("0")
    after = _explorer_state(page)
    context.close()
    assert not errors and not blocked, (errors, blocked)
    assert after["frame"] != before["frame"]
    if before["figure"]:
        assert after["parts"] != before["parts"], "the figure did not change when the slider moved"
    else:
        assert after["readout"] != before["readout"], "the readout did not change when the slider moved"
