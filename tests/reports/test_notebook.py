"""``notebooks/inspect_rollouts.ipynb`` runs headless against a trained project and shows its heatmaps.

The kernel is this test's own Python (a kernelspec installed into a temporary folder that
``JUPYTER_PATH`` puts first), so the notebook imports the same environment whatever kernels the
machine has installed."""

import json
import shutil
import sys
from pathlib import Path

import nbformat
from ipykernel.kernelspec import install
from nbclient import NotebookClient

from tests import ROOT

NOTEBOOK = ROOT / "notebooks/inspect_rollouts.ipynb"
KERNEL = "eurus-prime-test"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])


def test_notebook_runs_headless_on_the_latest_iteration(trained_project, tmp_path, monkeypatch):
    project = Path(shutil.copytree(trained_project, tmp_path / "project"))
    (project / "notebooks").mkdir()
    notebook = Path(shutil.copy(NOTEBOOK, project / "notebooks"))
    spec = Path(install(kernel_name=KERNEL, prefix=str(tmp_path / "jupyter")))
    assert json.loads((spec / "kernel.json").read_text())["argv"][0] == sys.executable
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter/share/jupyter"))
    for name in ("EURUS_PRIME_PROJECT", "EURUS_PRIME_ITERATION", "EURUS_PRIME_ENV"):
        monkeypatch.delenv(name, raising=False)  # the defaults: this project, its latest iteration

    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(
        nb, kernel_name=KERNEL, timeout=180, resources={"metadata": {"path": str(notebook.parent)}}
    ).execute()

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert f"{project.name}, iteration 1:" in text  # two iterations trained: 0 and 1
    html = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    heatmaps = [h for h in html if 'class="ep-tokens"' in h and "background:#" in h]
    assert len(heatmaps) == 2  # the best and the worst rollouts
    assert not (project / "notebooks/mlflow.db").exists()  # the project's paths, not the notebook folder's
