"""The autograder of the student notebooks (book: "For instructors").

``facelearn grade student/NN_name.ipynb`` executes a notebook in a fresh kernel with
``FACELEARN_SELFCHECK_LOG`` set, so that every :mod:`facelearn.selfcheck` verdict is logged, and scores one
point per check: a check counts as passed when its last verdict passed. Checks the notebook names but never
reached (a cell stopped with an error before them) count as failed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from facelearn import cli_types
from facelearn.cli import common, subparser
from facelearn.errors import DataError
from facelearn.selfcheck import LOG_VARIABLE
from facelearn.teaching.student import CHECK, EXERCISE, check_names, tags


@dataclass(frozen=True)
class Grade:
    """The verdict of each check, in the order the notebook names them, and the errors of its cells."""
    notebook: str
    passed: dict[str, bool]
    errors: tuple[str, ...]

    @property
    def score(self) -> int:
        return sum(self.passed.values())

    @property
    def total(self) -> int:
        return len(self.passed)


def expected_checks(nb) -> list[str]:
    """The check names of the exercise and check cells, in order (each once)."""
    names = [n for c in nb.cells if c.cell_type == "code" and {EXERCISE, CHECK} & set(tags(c))
             for n in check_names(c.source)]
    return list(dict.fromkeys(names))


def grade(path: str | Path, *, timeout: int = 600) -> Grade:
    """Execute the notebook at ``path`` (from its own folder) and score its self-checks."""
    from nbclient import NotebookClient

    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as err:  # nbformat raises several types for a file that is not a notebook
        raise DataError(f"{path}: not a readable notebook ({type(err).__name__}: {err})") from err
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "verdicts.jsonl"
        log.touch()
        previous = os.environ.get(LOG_VARIABLE)
        os.environ[LOG_VARIABLE] = str(log)
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                           resources={"metadata": {"path": str(path.parent.resolve())}}).execute()
        finally:
            if previous is None:
                del os.environ[LOG_VARIABLE]
            else:
                os.environ[LOG_VARIABLE] = previous
        verdicts = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    passed = {name: False for name in expected_checks(nb)}
    for v in verdicts:
        passed[v["name"]] = bool(v["passed"])
    errors = tuple(f"cell {i}: {o.get('ename')}: {o.get('evalue')}" for i, c in enumerate(nb.cells)
                   if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error")
    return Grade(str(path), passed, errors)


def _cmd_grade(args: argparse.Namespace) -> int:
    grades = [grade(p, timeout=args.timeout) for p in args.notebooks]
    if args.json:
        print(json.dumps([{"notebook": g.notebook, "score": g.score, "total": g.total, "checks": g.passed,
                           "errors": list(g.errors)} for g in grades], indent=2, ensure_ascii=False))
        return 0
    for g in grades:
        print(g.notebook)
        for name, ok in g.passed.items():
            print(f"  {'✓' if ok else '✗'} {name}")
        for error in g.errors:
            print(f"  error in {error}")
        print(f"  score: {g.score}/{g.total}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``grade`` at the top level."""
    p = subparser(subparsers, "grade", "execute student notebooks and score their self-checks (one point per check)",
                  "facelearn grade student/01_feature_normalisation.ipynb", _cmd_grade)
    p.add_argument("notebooks", nargs="+", type=cli_types.existing_file, metavar="NOTEBOOK", help="notebooks to grade")
    p.add_argument("--timeout", type=cli_types.int_at_least(1), default=600, help="seconds allowed per cell")
    common(p, json="print the scores as JSON")

