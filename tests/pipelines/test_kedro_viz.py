"""``kedro viz build`` on a copy of the project: the static site shows prime_iteration.

The build imports the project (settings.py hooks, the catalog with its ``${completed_iterations:...}``
and ``${runtime_params:...}`` resolvers, the custom dataset classes), so it fails when any of them
cannot be loaded without data. It runs no node and needs no ``data/``.
"""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from eurus_prime.pipeline_registry import register_pipelines
from tests.pipelines.helpers import KEDRO, make_project


@pytest.fixture(scope="module")
def viz_build(tmp_path_factory) -> Path:
    """The ``build/api`` folder of ``kedro viz build`` run in a fresh project copy."""
    project = make_project(tmp_path_factory.mktemp("viz"))
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
    start = time.perf_counter()
    proc = subprocess.run([KEDRO, "viz", "build"], cwd=project, capture_output=True, text=True, timeout=600, env=env)
    print(f"kedro viz build: {time.perf_counter() - start:.1f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return project / "build/api"


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_build_lists_prime_iteration(viz_build):
    assert "prime_iteration" in {p["id"] for p in _load(viz_build / "main")["pipelines"]}


def test_build_has_every_prime_iteration_node_and_dataset(viz_build):
    graph = _load(viz_build / "pipelines/prime_iteration")
    registered = register_pipelines()["prime_iteration"]
    tasks = {n["name"] for n in graph["nodes"] if n["type"] == "task"}
    data = {n["name"] for n in graph["nodes"] if n["type"] != "task"}
    assert tasks == {n.name for n in registered.nodes}
    assert registered.datasets() <= data


def test_prime_iteration_layers_are_shown(viz_build):
    """kedro-viz drops the layer bands when the catalog's layers form a cycle."""
    layers = _load(viz_build / "pipelines/prime_iteration")["layers"]
    assert layers, (
        "kedro-viz disabled the layers of prime_iteration: the catalog's kedro-viz layers "
        "form a cycle (models -> rollouts -> models: policy_in -> rollouts -> policy_out). "
        "Give policy_out and prm_out a layer of their own in conf/base/catalog.yml."
    )
