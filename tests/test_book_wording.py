"""The book speaks to readers only: no word of issues, notes, sessions, helpers or how the work is organised.

Checks every notebook cell (prose and code) and every page under book/, and, when the book has been built,
the text of each rendered page's article (the theme's header and its "open an issue" button are not the
book's words). A failure names the file and line.
"""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"

#: (pattern, what it is); matched case-insensitively, one line at a time.
WORK_TALK = [
    (r"\bthe issue\b", "the issue"),
    (r"\bissues?\s*#?\s*\d+", "an issue number"),
    (r"(?<!lab )\bsessions?\b", "a session (a 'lab session' is fine)"),
    (r"\bhelpers?\b(?! in `?facelearn)", "a helper (the 'helpers in facelearn.selfcheck' are code)"),
    (r"\b(source|our|my|the lead's|the) notes\b", "the notes behind the book"),
    (r"\bthe note\b(?! (below|above))", "the note"),
    (r"\blead engineer\b|\bthe lead (says|asked|wants)\b", "the lead"),
    (r"\b(the|this) brief\b", "the brief"),
    (r"\bdeliverables?\b", "a deliverable"),
    (r"\b(TODO|FIXME|XXX)\b", "a to-do marker"),
]
_PATTERNS = [(re.compile(p, re.IGNORECASE), what) for p, what in WORK_TALK]


def work_talk(text: str, where: str) -> list[str]:
    """'where line: what — the line' for each line of ``text`` that speaks about the work, not to the reader."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        for pattern, what in _PATTERNS:
            if pattern.search(line):
                found.append(f"{where} {n}: {what} — {line.strip()[:120]}")
    return found


def _notebook_texts():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            yield f"{path.relative_to(ROOT)}, cell {i} ({cell['cell_type']}), line", "".join(cell["source"])


def _page_texts():
    for path in sorted((ROOT / "book").rglob("*.md")):
        yield f"{path.relative_to(ROOT)}, line", path.read_text()


class _ArticleText(HTMLParser):
    """The text inside the page's <article> (the chapter itself), line by line; scripts and styles skipped."""

    def __init__(self) -> None:
        super().__init__()
        self.depth, self.skip, self.parts = 0, 0, []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        if tag == "article":
            self.depth += 1
        elif tag in ("script", "style"):
            self.skip += 1

    def handle_endtag(self, tag):  # noqa: ANN001
        if tag == "article":
            self.depth -= 1
        elif tag in ("script", "style"):
            self.skip -= 1

    def handle_data(self, data):  # noqa: ANN001
        if self.depth > 0 and not self.skip:
            self.parts.append(data)


def _html_texts():
    for folder in ("notebooks", "book"):
        for path in sorted((HTML / folder).glob("*.html")):
            parser = _ArticleText()
            parser.feed(path.read_text(encoding="utf-8"))
            yield f"{path.relative_to(ROOT)}, text line", "".join(parser.parts)


def test_the_check_catches_work_talk_and_spares_the_readers_words():
    assert work_talk("And the side-by-side the issue asks for: AP", "x")
    assert work_talk("as issue #23 says", "x") and work_talk("see issue 7", "x")
    assert work_talk("this session trained it", "x") and work_talk("a helper wrote it", "x")
    assert work_talk("The source notes of this book", "x") and work_talk("TODO: measure", "x")
    fine = ("Each chapter fits a lab session on student laptops.",
            "Self-check helpers in `facelearn.selfcheck` let students verify an answer.",
            "Note that the note below is about cosines.", "Open an issue? No: a known problem of the data set.")
    assert [work_talk(line, "x") for line in fine] == [[]] * len(fine)
    page = _ArticleText()
    page.feed('<header>Open an issue, session</header><article><p>the issue</p><script>x = "helper"</script></article>')
    assert "".join(page.parts) == "the issue"


def test_notebooks_speak_to_readers_only():
    found = [hit for where, text in _notebook_texts() for hit in work_talk(text, where)]
    assert not found, "wording about the work, not the subject:\n" + "\n".join(found)


def test_book_pages_speak_to_readers_only():
    found = [hit for where, text in _page_texts() for hit in work_talk(text, where)]
    assert not found, "wording about the work, not the subject:\n" + "\n".join(found)


@pytest.mark.skipif(not (HTML / "notebooks").is_dir(), reason="the book is not built (_build/html); `make book`")
def test_rendered_pages_speak_to_readers_only():
    texts = list(_html_texts())
    assert texts, f"no pages under {HTML}"
    found = [hit for where, text in texts for hit in work_talk(text, where)]
    assert not found, "wording about the work, not the subject, in the built book:\n" + "\n".join(found)
