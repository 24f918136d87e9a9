"""The book's structure: every notebook listed, no outputs, the Colab bootstrap first, dependencies consistent."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _toc_files(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("file", "root"):
                yield value
            else:
                yield from _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from _toc_files(item)


def _config():
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _metadata(path):
    return json.loads(path.read_text())["metadata"]


def test_there_are_chapters():
    assert NOTEBOOKS, "no notebooks found"


def test_every_notebook_and_page_is_in_the_toc_and_exists():
    listed = set(_toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text())))
    for nb in NOTEBOOKS:
        assert f"notebooks/{nb.stem}" in listed, f"{nb.name} is not listed in _toc.yml"
    for entry in listed:
        assert any((ROOT / (entry + ext)).is_file() for ext in ("", ".md", ".ipynb")), f"_toc.yml lists missing {entry}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs(nb):
    for i, cell in enumerate(_cells(nb)):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"{nb.name} cell {i} has outputs"
        assert "execution" not in cell.get("metadata", {}), f"{nb.name} cell {i} keeps a run's timestamps"
    assert "widgets" not in _metadata(nb), f"{nb.name} keeps a run's widget state"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_the_colab_bootstrap_then_parameters(nb):
    code = [c for c in _cells(nb) if c["cell_type"] == "code"]
    first = "".join(code[0]["source"])
    repo = _config()["repository"]
    url = repo["url"].replace("https://", "git+https://") + "@" + repo["branch"]
    assert '"google.colab" in sys.modules' in first, f"{nb.name}: first code cell is not the Colab bootstrap"
    assert url in first, f"{nb.name}: the bootstrap must install from _config.yml's repository ({url})"
    assert not re.search(r"\b(torch|numpy)\s*[=<>]=", first), f"{nb.name}: the bootstrap must not pin torch/numpy"
    tagged = [i for i, c in enumerate(code) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert tagged and tagged[0] <= 2, f"{nb.name}: a parameters cell must follow the imports"
    params = "".join(code[tagged[0]]["source"])
    assert "PROFILE" in params and "runtime.profile()" in params, f"{nb.name}: the parameters cell sets PROFILE"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_uses_tags_not_comments(nb):
    for cell in _cells(nb):
        assert not re.search(r"#\s*NBVAL_", "".join(cell["source"])), f"{nb.name}: use nbval cell tags, not comments"


def _names(requirements):
    return {re.split(r"[<>=!\[; ]", r.strip(), maxsplit=1)[0].lower().replace("_", "-"): r.replace(" ", "")
            for r in requirements}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"] + project["optional-dependencies"]["book"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    have = _names([p for p in pip if not p.startswith("-e")])
    assert have == wanted, "environment.yml and pyproject.toml (dependencies + book extra) must name the same specifiers"


def test_pyproject_has_lower_bounds_only_for_torch_and_numpy():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        if re.match(r"(torch|torchvision|numpy)\b", dep):
            assert ">=" in dep and "==" not in dep and "<" not in dep, dep
    book = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["book"]
    assert any(re.match(r"jupyter-book.*<2", d) for d in book), "jupyter-book must stay below 2"


def test_book_config_is_offline_and_strict():
    cfg = _config()
    assert cfg["only_build_toc_files"] is True
    assert cfg["execute"]["timeout"] > 30
    assert cfg["repository"]["branch"] == "main" and cfg["repository"]["url"].startswith("https://")
    sphinx = cfg["sphinx"]["config"]
    assert "://" not in sphinx["mathjax_path"]
    assert all("://" not in k for k in sphinx["nb_ipywidgets_js"])
    assert "sphinx_exercise" in cfg["sphinx"]["extra_extensions"]
    assert (ROOT / cfg["bibtex_bibfiles"][0]).is_file()


def test_every_citation_is_in_the_bibliography():
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    sources = [p.read_text() for p in (ROOT / "book").glob("*.md")] + [nb.read_text() for nb in NOTEBOOKS]
    cited = {k.strip() for s in sources for group in re.findall(r"\{cite[pt]?\}`([^`]+)`", s) for k in group.split(",")}
    assert cited <= keys, f"cited but not in references.bib: {sorted(cited - keys)}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_check_output_cells_carry_their_expected_stdout(nb):
    tagged = [c for c in _cells(nb) if c["cell_type"] == "code" and "nbval-check-output" in c.get("metadata", {}).get("tags", [])]
    for cell in tagged:
        assert "expected_stdout" in cell["metadata"].get("facelearn", {}), (
            f"{nb.name}: a nbval-check-output cell has no recorded output; run ci/record_expected.py {nb}")
