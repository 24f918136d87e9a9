"""Student notebooks from the chapters (book: "For instructors").

A chapter marks its exercises with cell tags:

- ``exercise``: a code cell the reader fills in. Its top-level assignments to ``my_…`` names and its
  top-level functions are the reader's answers; the student version replaces each value and each function
  body with ``...``. The cell may also call :mod:`facelearn.selfcheck` on those names.
- ``check``: a code cell that only checks the reader's names with :mod:`facelearn.selfcheck`.
- ``solution``: a code cell with the worked answer (the book shows it folded); the student version drops it.

Markdown ``{solution}`` blocks (sphinx-exercise) are dropped too, and outputs cleared. Exercise cells get
nbgrader's "autograded answer" metadata. ``python -m facelearn.teaching.student notebooks student``
(``make student``) writes ``student/NN_name.ipynb`` for every chapter that has exercises.
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
from pathlib import Path

import nbformat

EXERCISE, CHECK, SOLUTION = "exercise", "check", "solution"
CHECKERS = ("check", "check_function")
STUDENT_NOTE = ("*Student version: the solutions are removed. Replace each `...` with your answer, run the cell, "
                "and read the check's verdict. `facelearn grade` scores the whole notebook.*")

# a sphinx-exercise solution block: an opening fence (``` or :::, three or more) with {solution}, up to the
# same fence on a line of its own
_SOLUTION_BLOCK = re.compile(r"^(`{3,}|:{3,})\{solution\}[^\n]*\n.*?^\1[ \t]*(?:\n|\Z)", re.MULTILINE | re.DOTALL)


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def remove_solution_blocks(markdown: str) -> str:
    """``markdown`` without its ``{solution}`` blocks (and the blank lines they leave)."""
    return re.sub(r"\n{3,}", "\n\n", _SOLUTION_BLOCK.sub("", markdown)).strip("\n")


def solution_blocks(markdown: str) -> list[str]:
    """The ``{solution}`` blocks of ``markdown``, as written."""
    return [m.group(0) for m in _SOLUTION_BLOCK.finditer(markdown)]


def _offset(lines: list[str], lineno: int, col: int) -> tuple[int, int]:
    """ast's (1-based line, UTF-8 byte column) as (0-based line, character column)."""
    return lineno - 1, len(lines[lineno - 1].encode()[:col].decode())


def answer_spans(source: str) -> list[tuple[str, tuple[int, int], tuple[int, int]]]:
    """The reader's answers in an exercise cell: ``(name, start, end)`` of each top-level ``my_…`` value
    and each top-level function body, as (0-based line, character column) positions."""
    lines = source.splitlines()
    spans = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name) and t.id.startswith("my_")]
            if names:
                v = node.value
                spans.append((names[0], _offset(lines, v.lineno, v.col_offset), _offset(lines, v.end_lineno, v.end_col_offset)))
        elif isinstance(node, ast.FunctionDef):
            body = node.body
            if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):  # keep the docstring
                body = body[1:]
            first, last = body[0], body[-1]
            spans.append((node.name, _offset(lines, first.lineno, first.col_offset),
                          _offset(lines, last.end_lineno, last.end_col_offset)))
    return spans


def reader_names(source: str) -> set[str]:
    """The names an exercise cell asks the reader to define."""
    return {name for name, _, _ in answer_spans(source)}


def stub(source: str) -> str:
    """``source`` with every answer of :func:`answer_spans` replaced by ``...`` (comments after it kept)."""
    lines = source.splitlines()
    for _, (l0, c0), (l1, c1) in sorted(answer_spans(source), key=lambda s: s[1], reverse=True):
        lines[l0:l1 + 1] = [lines[l0][:c0] + "..." + lines[l1][c1:]]
    return "\n".join(lines)


def checker_calls(source: str) -> list[ast.Call]:
    """Every call of ``check`` or ``check_function`` in ``source``."""
    return [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) in CHECKERS]


def check_names(source: str) -> list[str]:
    """The ``name=`` of each self-check call in ``source`` that spells it as a string."""
    return [kw.value.value for call in checker_calls(source) for kw in call.keywords
            if kw.arg == "name" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)]


def has_exercises(nb) -> bool:
    return any(EXERCISE in tags(c) for c in nb.cells)


def student_notebook(nb):
    """The student version of a chapter notebook (a new notebook; ``nb`` is not changed)."""
    out = copy.deepcopy(nb)
    cells = []
    for index, cell in enumerate(out.cells):
        cell_tags = tags(cell)
        if SOLUTION in cell_tags:
            continue
        if cell.cell_type == "markdown":
            cell.source = remove_solution_blocks(cell.source)
            if not cell.source.strip():
                continue
        elif cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if EXERCISE in cell_tags:
                cell.source = stub(cell.source)
                cell.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False, "task": False,
                                             "grade_id": f"exercise-cell-{index}", "schema_version": 3}
        cells.append(cell)
    first = next((i for i, c in enumerate(cells) if c.cell_type == "markdown"), None)
    if first is not None:
        cells[first].source = cells[first].source.rstrip() + "\n\n" + STUDENT_NOTE
    out.cells = cells
    nbformat.validate(out)
    return out


def write_student_notebooks(chapters: Path, out: Path) -> list[Path]:
    """Write the student version of every notebook in ``chapters`` that has exercise cells into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(Path(chapters).glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        if has_exercises(nb):
            target = out / path.name
            nbformat.write(student_notebook(nb), target)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write the student notebooks of the chapters")
    parser.add_argument("chapters", type=Path, help="folder of chapter notebooks (notebooks/)")
    parser.add_argument("out", type=Path, help="output folder (student/)")
    args = parser.parse_args(argv)
    for path in write_student_notebooks(args.chapters, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
