"""The tour notebook runs top to bottom, and is committed with its outputs stripped.

It is executed with nbclient in a kernel started from the interpreter running
the tests, with this checkout on its ``PYTHONPATH``, so it exercises the same
jaxops as the rest of the suite.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "tour.ipynb"
STRIP = "jupyter nbconvert --clear-output --inplace notebooks/tour.ipynb"


def _kernel_manager(tmp_path: Path):
    """A kernel manager whose only kernel is this interpreter, with this checkout importable."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = tmp_path / "kernels" / "jaxops-tour"
    spec_dir.mkdir(parents=True)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "jaxops tour (test)",
                "language": "python",
                "env": {
                    "PYTHONPATH": path,
                    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                },
            }
        )
    )
    specs = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)], ensure_native_kernel=False)
    return KernelManager(kernel_name="jaxops-tour", kernel_spec_manager=specs)


def test_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not dirty, f"cells {dirty} carry outputs; strip them: {STRIP}"


@pytest.mark.xdist_group("notebook")
def test_tour_executes(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        km=_kernel_manager(tmp_path),
        timeout=180,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the cell and traceback, if any cell fails
    elapsed = time.perf_counter() - start

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    pictures = sum("image/png" in o.get("data", {}) for o in outputs)
    tables = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert pictures >= 8, f"only {pictures} figures were drawn"
    assert tables and "| op |" in tables[0], "the parity table is missing"
    assert "FAIL" not in tables[0], tables[0]
    assert "test accuracy" in text
    print(f"tour.ipynb executed in {elapsed:.1f} s")  # shown with pytest -s; budget: under a minute


def strip_outputs(path: Path = NOTEBOOK) -> None:
    """Removes outputs and execution counts in place (``python tests/test_notebook.py --strip``)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)


if __name__ == "__main__":
    if sys.argv[1:] != ["--strip"]:
        raise SystemExit("usage: python tests/test_notebook.py --strip")
    strip_outputs()
