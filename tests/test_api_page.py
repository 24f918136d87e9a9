"""book/api.md, the reference page of ``import facelearn as fl``: every public name has a section, every
example on the page runs (in order, in one namespace), and ``import facelearn`` stays light."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import facelearn

PAGE = Path(__file__).resolve().parents[1] / "book" / "api.md"


def _examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)


def test_every_public_name_has_a_section_with_its_signature():
    text = PAGE.read_text()
    for name in facelearn.API:
        assert f"### `fl.{name}`" in text, name
        obj = getattr(facelearn, name)
        params = list(inspect.signature(obj).parameters)
        # the section spells the call with the function's first parameter
        assert re.search(rf"`{name}\({params[0]}\b", text), (name, params)
    assert set(facelearn.__all__) == {"__version__", *facelearn.API}


def test_the_page_is_in_the_table_of_contents():
    toc = (PAGE.parents[1] / "_toc.yml").read_text()
    assert "- file: book/api" in toc


def test_every_example_runs(tmp_path, monkeypatch):
    import torch

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    examples = _examples()
    assert len(examples) >= len(facelearn.API)
    for code in examples:
        exec(compile(code, str(PAGE), "exec"), namespace)  # noqa: S102 (the page's own examples)
    assert namespace["result"].history and namespace["crops"].shape[1:] == (64, 64, 3)


def test_import_is_light():
    code = "import sys, facelearn; assert 'torch' not in sys.modules, 'torch imported'; print(facelearn.__version__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
