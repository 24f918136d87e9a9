"""Study time of a chapter (book: "For instructors").

A student's time is reading plus exercises, not the machine's run time the chapter headers give. The
estimate counts the chapter's prose and exercises:

    minutes = words / WORDS_PER_MINUTE + MINUTES_PER_CODE_CELL · code cells
              + MINUTES_PER_CODING_EXERCISE · coding exercises + MINUTES_PER_EXERCISE · other exercises

Words are those of the markdown cells outside ``$…$`` math and directive fences; a coding exercise is a function the reader
writes in an ``exercise`` cell (:mod:`facelearn.teaching.student`); the other exercises are the
``{exercise}`` blocks that ask for a number, a prediction or an explanation.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from facelearn.teaching.student import EXERCISE, tags

WORDS_PER_MINUTE = 100          # technical prose with equations, read carefully once
MINUTES_PER_CODE_CELL = 1       # read a cell, run it, look at its output
MINUTES_PER_CODING_EXERCISE = 20
MINUTES_PER_EXERCISE = 10


@dataclass(frozen=True)
class StudyTime:
    """Minutes of reading (prose and code cells) and of exercises for one chapter."""
    words: int
    code_cells: int
    exercises: int
    coding_exercises: int

    @property
    def reading(self) -> int:
        return round(self.words / WORDS_PER_MINUTE + MINUTES_PER_CODE_CELL * self.code_cells)

    @property
    def exercising(self) -> int:
        return (MINUTES_PER_CODING_EXERCISE * self.coding_exercises
                + MINUTES_PER_EXERCISE * (self.exercises - self.coding_exercises))

    @property
    def total(self) -> int:
        return self.reading + self.exercising


def study_time(nb) -> StudyTime:
    """The study-time estimate of a chapter notebook (see the module docstring)."""
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    text = re.sub(r"\$\$.*?\$\$|\$[^$\n]*\$", " ", prose, flags=re.DOTALL)        # math
    text = re.sub(r"^(`{3,}|:{3,}).*$|^:\w+:.*$", " ", text, flags=re.MULTILINE)   # directive fences, options
    words = len(re.findall(r"\w+", text))
    coding = sum(isinstance(node, ast.FunctionDef) for c in nb.cells if EXERCISE in tags(c)
                 for node in ast.parse(c.source).body)
    return StudyTime(words=words, code_cells=sum(c.cell_type == "code" for c in nb.cells),
                     exercises=len(re.findall(r"^(`{3,}|:{3,})\{exercise\}", prose, re.MULTILINE)),
                     coding_exercises=coding)


def study_table(chapters) -> str:
    """A markdown table of :func:`study_time` for each ``(path, notebook)`` in ``chapters``."""
    rows = ["| chapter | words | exercises (coding) | reading, min | exercises, min | total, min |",
            "|---|---|---|---|---|---|"]
    for path, nb in chapters:
        t = study_time(nb)
        rows.append(f"| {path.stem[:2]} | {t.words} | {t.exercises} ({t.coding_exercises}) | {t.reading} | "
                    f"{t.exercising} | {t.total} |")
    return "\n".join(rows)


if __name__ == "__main__":
    from pathlib import Path

    import nbformat

    paths = sorted(Path("notebooks").glob("[0-9][0-9]_*.ipynb"))
    print(study_table([(p, nbformat.read(p, as_version=4)) for p in paths]))
