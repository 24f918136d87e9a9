"""facelearn.data is a leaf package: data sets, readers and SynthFace import no task package, so the tasks
depend on the data and never the other way round."""

import ast
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "facelearn" / "data"
TASKS = ("facelearn.detection", "facelearn.recognition", "facelearn.landmarks")


def task_imports(path: Path) -> list[str]:
    """'file:line module' for every import of a task package in the Python file at ``path`` (top level or
    inside a function, ``import x`` or ``from x import y``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "facelearn"]
        else:
            continue
        found += [f"{path.name}:{node.lineno} {n}" for n in names if n in TASKS or n.startswith(tuple(t + "." for t in TASKS))]
    return found


def test_nothing_under_facelearn_data_imports_a_task_package():
    files = sorted(DATA.rglob("*.py"))
    assert len(files) > 10  # the walk found the package
    assert [hit for f in files for hit in task_imports(f)] == []


def test_the_check_catches_every_form_of_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import facelearn.detection.loss\nfrom facelearn.recognition.alignment import align_face\n"
                 "from facelearn import landmarks\ndef g():\n    from facelearn.data import files\n"
                 "    import facelearn.detection as d\n", encoding="utf-8")
    assert task_imports(f) == ["m.py:1 facelearn.detection.loss", "m.py:2 facelearn.recognition.alignment",
                               "m.py:3 facelearn.landmarks", "m.py:6 facelearn.detection"]
