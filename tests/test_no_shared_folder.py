"""Nothing outside the repository is required: the library and the chapters never look in a ``shared``
folder beside the checkout (which only the project's own test machines have), and every test that reads
one skips with a reason when it is absent."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A path component named "shared" in a string literal: "shared", 'shared/data', "../shared/…".
SHARED = re.compile(r"""["'](?:\.\./)?shared(?:["']|/)""")


def _code_of_notebook(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


@pytest.mark.parametrize("kind", ["library", "notebooks"])
def test_the_product_never_reads_a_shared_folder(kind):
    if kind == "library":
        sources = {p: p.read_text() for p in sorted((ROOT / "facelearn").rglob("*.py"))}
    else:
        sources = {p: _code_of_notebook(p) for p in sorted((ROOT / "notebooks").glob("*.ipynb"))}
    offenders = [f"{p.relative_to(ROOT)}:{text[:m.start()].count(chr(10)) + 1}"
                 for p, text in sources.items() for m in SHARED.finditer(text)]
    assert sources and not offenders, f"refers to a shared folder outside the repository: {offenders}"


def test_every_test_that_reads_a_shared_folder_skips_without_it():
    unguarded = [p.name for p in sorted((ROOT / "tests").glob("*.py"))
                 if p.name != Path(__file__).name and SHARED.search(text := p.read_text())
                 and not re.search(r"pytest\.(?:mark\.skipif|skip)\(", text)]
    assert not unguarded, f"read a shared folder without a skip guard: {unguarded}"


def test_the_rule_catches_what_it_should():
    assert SHARED.search('Path(__file__).parents[2] / "shared" / "data"')
    assert SHARED.search("'../shared/data/real_photos'")
    assert not SHARED.search("the shared features of both heads")
    assert not SHARED.search('"shared_weights"')
