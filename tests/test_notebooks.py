"""The notebooks: committed without outputs, equal to their generator, and run top to bottom.

Each notebook executes in a fresh kernel of this interpreter (small settings; RESTRANSFER_FULL=1
for the full-size experiments) in a temporary working directory, and any error fails the test.
"""

import importlib.util
import os
import time
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.tensorflow

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_quickstart.ipynb", "02_residual_learning.ipynb", "03_bottleneck_grouped_norm.ipynb",
         "04_transfer_what_to_freeze.ipynb"]


def generator():
    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOKS / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_notebooks_equal_the_generator_and_have_no_outputs():
    build = generator().build
    for name in NAMES:
        committed = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert committed == build(name), f"{name} differs from build_notebooks.py; rerun it"
        for cell in committed.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name} has stored outputs"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, tmp_path):
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    env_before = dict(os.environ)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}})
        start = time.perf_counter()
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    seconds = time.perf_counter() - start
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images, f"{name} drew no figure"
    print(f"{name}: {seconds:.0f} s")
