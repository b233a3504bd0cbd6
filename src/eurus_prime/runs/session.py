"""The one way this project opens a Kedro session outside ``kedro run``: the training loop, the
rollout loaders of the notebook and the reports, and the benchmarks all come through here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def create_session(project: Path | str, env: str | None = None, params: dict | None = None) -> Any:
    """A ``KedroSession`` of ``project`` (bootstrapped, telemetry off unless asked for) with
    ``params`` as runtime parameters (``--params``). Use it as a context manager."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    project = Path(project).resolve()
    bootstrap_project(project)
    return KedroSession.create(project_path=project, env=env, runtime_params=params or {})


@contextmanager
def open_context(
    project: Path | str, env: str | None = None, params: dict | None = None, *, in_project: bool = False
) -> Iterator[Any]:
    """The Kedro context (``.catalog``, ``.params``) of ``project``. ``in_project``: run the block
    from the project folder, where the project's relative paths (``data/``, the MLflow sqlite URI)
    resolve; a notebook in ``notebooks/`` would otherwise start a second ``mlflow.db`` there."""
    cwd = Path.cwd()
    if in_project:
        os.chdir(Path(project).resolve())
    try:
        with create_session(project, env, params) as session:
            yield session.load_context()
    finally:
        if in_project:
            os.chdir(cwd)
