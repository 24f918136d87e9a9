"""Record what each ``nbval-check-output`` cell prints, into the cell's metadata, and strip all outputs.

Usage: .venv/bin/python ci/record_expected.py notebooks/NN_name.ipynb [...]

Run it after changing a notebook. It executes the notebook (quick profile) with nbclient, stores each
tagged cell's stdout in ``metadata.facelearn.expected_stdout`` (checked by nbval through
notebooks/conftest.py) and writes the notebook back without outputs. Tagged cells must print text only.
"""

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def record(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    os.environ.setdefault("FACELEARN_PROFILE", "quick")
    NotebookClient(nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if "nbval-check-output" in cell.metadata.get("tags", []):
            kinds = {o.output_type if o.output_type != "stream" else f"stream:{o.name}" for o in cell.outputs}
            if kinds - {"stream:stdout"}:
                raise SystemExit(f"{path}: cell {i} is tagged nbval-check-output but produces {sorted(kinds)}; "
                                 "it must print text only (move figures to another cell)")
            cell.metadata.setdefault("facelearn", {})["expected_stdout"] = "".join(o.text for o in cell.outputs)
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)  # the run's timestamps
    nb.metadata.pop("widgets", None)  # the run's widget state
    nbformat.write(nb, path)
    print(f"recorded {path}")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        record(Path(arg))
