"""nbval support for notebooks committed without outputs (DESIGN.md "Notebook conventions").

A cell tagged ``nbval-check-output`` keeps the stdout it must reproduce in its metadata
(``metadata.facelearn.expected_stdout``), recorded by ``ci/record_expected.py``, because committed notebooks
carry no outputs. Before nbval compares, this hook installs that text as the cell's reference output.
"""

import nbformat


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is None or "nbval-check-output" not in cell.get("metadata", {}).get("tags", []):
            continue
        expected = cell.get("metadata", {}).get("facelearn", {}).get("expected_stdout")
        if expected is None:
            raise RuntimeError(f"{item.name}: a nbval-check-output cell has no recorded expected_stdout; "
                               "run ci/record_expected.py on the notebook")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=expected)]
        cell.execution_count = 1  # nbval treats a cell without a count as never run
