"""The student notebooks (facelearn.teaching.student) and the autograder (facelearn.teaching.grade)."""

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

from facelearn import selfcheck
from facelearn.teaching import grade, student

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FAST_CHAPTER = ROOT / "notebooks" / "23_beyond_arcface.ipynb"  # formulas and plots only: seconds to execute


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    return {p.name: p for p in student.write_student_notebooks(ROOT / "notebooks", out)}


def _read(path):
    return nbformat.read(path, as_version=4)


def _solution_texts(nb):
    """Lines of the book's solution blocks and solution cells long enough to identify them."""
    lines = []
    for c in nb.cells:
        if "solution" in student.tags(c):  # the answer, less the check calls it shares with the exercise
            lines += [x for x in c.source.splitlines() if not re.search(r"check(_function)?\(|^\s+name=", x)]
        elif c.cell_type == "markdown":
            lines += [x for b in student.solution_blocks(c.source) for x in b.splitlines()[1:-1]]
    return [x.strip() for x in lines if len(x.strip()) > 25 and not x.strip().startswith((":class:", "def "))]


def _is_stub(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in (None, Ellipsis)


def _assert_stubs(source: str, allowed=(Ellipsis,)):
    """Every reader answer of an exercise cell is ``...`` (or one of ``allowed``)."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "").startswith("my_") for t in node.targets):
            assert isinstance(node.value, ast.Constant) and node.value.value in allowed, ast.unparse(node)
        if isinstance(node, ast.FunctionDef):
            body = [n for n in node.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
                                                 and isinstance(n.value.value, str) and n is node.body[0])]
            assert len(body) == 1, ast.unparse(node)
            only = body[0]
            value = only.value if isinstance(only, (ast.Expr, ast.Return)) else None
            assert value is not None and isinstance(value, ast.Constant) and value.value in allowed, ast.unparse(node)


def test_every_chapter_with_exercises_has_a_student_version(generated):
    with_exercises = [p.name for p in CHAPTERS if "{exercise}" in p.read_text(encoding="utf-8")]
    assert with_exercises and set(with_exercises) <= set(generated)


def test_student_notebooks_are_valid_and_hold_no_solution(generated):
    for name, path in generated.items():
        nb = _read(path)
        nbformat.validate(nb)
        text = "\n".join(c.source for c in nb.cells)
        assert "{solution}" not in text, name
        assert not any("solution" in student.tags(c) for c in nb.cells), name
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), name
        for line in _solution_texts(_read(ROOT / "notebooks" / name)):
            assert line not in text, (name, line)


def test_exercise_cells_are_stubs_in_both_versions(generated):
    for name, path in generated.items():
        book = [c for c in _read(ROOT / "notebooks" / name).cells if "exercise" in student.tags(c)]
        ours = [c for c in _read(path).cells if "exercise" in student.tags(c)]
        assert ours and len(ours) == len(book), name
        for b, s in zip(book, ours):
            assert student.reader_names(s.source), (name, s.source)
            _assert_stubs(s.source)
            _assert_stubs(b.source, allowed=(None, Ellipsis))  # the book shows the question, not the answer
            assert s.metadata["nbgrader"]["solution"] is True


def test_checks_test_the_readers_names_only(generated):
    """Every self-check of a student notebook sits in an exercise or check cell and checks a reader's name,
    so no check can pass on an answer written into the check itself."""
    for name, path in generated.items():
        nb = _read(path)
        names = set().union(*(student.reader_names(c.source) for c in nb.cells if "exercise" in student.tags(c)))
        for c in nb.cells:
            if c.cell_type != "code":
                continue
            calls = student.checker_calls(c.source)
            if not calls:
                continue
            assert {"exercise", "check"} & set(student.tags(c)), (name, c.source)
            for call in calls:
                used = {n.id for n in ast.walk(call.args[0]) if isinstance(n, ast.Name)}
                assert used & names, (name, ast.unparse(call))


def test_stub_to_code_keeps_the_rest_of_the_cell():
    source = ('my_x = [1.0,\n        2.0]  # your answer θ\ndef f(a):\n    """Doc."""\n    b = a + 1\n    return b\n'
              'check(my_x, [1, 2], name="x")')
    assert student.stub(source) == ('my_x = ...  # your answer θ\ndef f(a):\n    """Doc."""\n    ...\n'
                                    'check(my_x, [1, 2], name="x")')
    assert student.reader_names(source) == {"my_x", "f"}
    assert student.check_names(source) == ["x"]


def test_markdown_solution_blocks_are_removed():
    md = "Text.\n\n```{exercise}\n:label: e\nQ?\n```\n\n````{solution} e\n:class: dropdown\n```python\nx = 1\n```\n````\n\nAfter."
    assert student.remove_solution_blocks(md) == "Text.\n\n```{exercise}\n:label: e\nQ?\n```\n\nAfter."


def test_stubs_fail_the_checks(capsys):
    assert not selfcheck.check(..., 1.0, name="a")
    assert not selfcheck.check(None, 1.0, name="b")
    assert not selfcheck.check_function(lambda x: ..., lambda x: x, [(1.0,)], name="c")
    assert not selfcheck.check_function(lambda x: None, lambda x: x, [(1.0,)], name="d")
    assert selfcheck.check(2.0, 2.0, name="e") and selfcheck.check_function(lambda x: x, lambda x: x, [(1.0,)], name="f")
    out = capsys.readouterr().out
    assert out.count("✗") == 4 and out.count("✓") == 2


def test_verdicts_are_logged_for_the_autograder(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(selfcheck.LOG_VARIABLE, str(log))
    selfcheck.check(..., 1.0, name="stub")
    selfcheck.check(1.0, 1.0, name="right")
    assert [json.loads(x) for x in log.read_text().splitlines()] == [
        {"name": "stub", "passed": False}, {"name": "right", "passed": True}]


def test_grade_scores_stubs_zero_and_solutions_full(generated, monkeypatch):
    monkeypatch.setenv("FACELEARN_PROFILE", "quick")
    book = grade.grade(FAST_CHAPTER)
    assert book.total >= 1 and book.score == book.total and not book.errors, book
    stubs = grade.grade(generated[FAST_CHAPTER.name])
    assert stubs.total == book.total and stubs.score == 0, stubs


def test_grade_command_reports_a_bad_notebook(tmp_path, capsys):
    from facelearn.cli import main

    bad = tmp_path / "x.ipynb"
    bad.write_text("not json")
    assert main(["grade", str(bad)]) == 2
    assert re.search(r"x\.ipynb: not a readable notebook", capsys.readouterr().err)


def test_book_extension_links_each_chapter_to_its_student_version(tmp_path):
    import importlib.util
    from types import SimpleNamespace

    from docutils import nodes

    spec = importlib.util.spec_from_file_location("facelearn_book", ROOT / "book" / "_ext" / "facelearn_book.py")
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    app = SimpleNamespace(srcdir=str(ROOT), outdir=str(tmp_path),
                          builder=SimpleNamespace(format="html"))
    page = nodes.document("", None)
    page += nodes.section("", nodes.title("", "Beyond ArcFace"), nodes.paragraph("", "Objectives."))
    ext._link_student_version(app, page, "notebooks/23_beyond_arcface")
    link = next(iter(page.findall(nodes.reference)))
    assert link["refuri"] == "../student/23_beyond_arcface.ipynb"
    ext._write_student_notebooks(app, None)
    assert (tmp_path / "student" / "23_beyond_arcface.ipynb").is_file()
    untouched = nodes.document("", None)
    untouched += nodes.section("", nodes.title("", "Glossary"))
    ext._link_student_version(app, untouched, "book/glossary")
    assert not list(untouched.findall(nodes.reference))


def test_instructors_page_runs_and_lists_every_chapter():
    """The instructors' page is a MyST notebook: its study-time cell runs, and its syllabus and objectives
    tables name every chapter and every exercise label of the book."""
    from myst_nb.core.read import read_myst_markdown_notebook
    from nbclient import NotebookClient

    page = ROOT / "book" / "instructors.md"
    text = page.read_text(encoding="utf-8")
    nb = read_myst_markdown_notebook(text)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(page.parent)}}).execute()
    html = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    for path in CHAPTERS:
        assert f"<td>{path.stem}</td>" in html and f"<../notebooks/{path.stem}>" in text, path.name
        for label in re.findall(r"\{exercise\}\s*\n:label: (\S+)", path.read_text(encoding="utf-8").replace("\\n", "\n")):
            assert f"`{label}`" in text, (path.name, label)


def test_study_time_counts_prose_code_and_exercises():
    from facelearn.teaching import syllabus

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(" ".join(["word"] * 250) + " $a + b = c$\n\n```{exercise}\n:label: a\nQ\n```\n"
                                              "```{exercise}\n:label: b\nQ\n```"),
                nbformat.v4.new_code_cell("def f(x):\n    return None\nmy_y = None", metadata={"tags": ["exercise"]}),
                nbformat.v4.new_code_cell("print(1)")]
    t = syllabus.study_time(nb)
    assert (t.words, t.code_cells, t.exercises, t.coding_exercises) == (252, 2, 2, 1)
    assert (t.reading, t.exercising) == (round(252 / 100 + 2), 20 + 10)
