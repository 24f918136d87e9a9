"""Open the built book in headless Chromium with the network cut off (run by `make test` after the build).

Every page must load with no console error and no request leaving localhost, every image must decode,
every math element must be typeset by the locally served MathJax, the chapters' exercises must render
with hidden solutions, and embedded widgets must render. Builds the book first if it is missing.
"""

from __future__ import annotations

import functools
import http.server
import os
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
        context.close()
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
