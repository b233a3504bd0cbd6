"""The one way this project opens a Kedro session outside ``kedro run``: the training loop, the
rollout loaders of the notebook and the reports, and the benchmarks all come through here.

A campaign (``eurus-prime train``) holds one session for all its runs: Kedro's
``KedroServiceSession``, its session for repeated runs (:func:`campaign_session`). While it is
open, :func:`run_in_session` runs through it and :func:`open_context` loads its contexts, instead of
each creating a ``KedroSession`` (hooks registered, the project's git state described, a session
store) for a single run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: The open campaign sessions: (project folder, env) -> KedroServiceSession.
_SERVICE: dict[tuple[str, str | None], Any] = {}


def _key(project: Path | str, env: str | None) -> tuple[str, str | None]:
    return str(Path(project).resolve()), env


@contextmanager
def campaign_session(project: Path | str, env: str | None = None) -> Iterator[Any]:
    """One ``KedroServiceSession`` for every run of ``project`` in ``env`` inside the block (module
    docstring). Runtime parameters are given per run."""
    from kedro.framework.session import KedroServiceSession
    from kedro.framework.startup import bootstrap_project

    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    project = Path(project).resolve()
    bootstrap_project(project)
    session = KedroServiceSession.create(project_path=project, env=env)
    key = _key(project, env)
    outer = _SERVICE.get(key)
    _SERVICE[key] = session
    try:
        yield session
    finally:
        if outer is None:
            _SERVICE.pop(key, None)
        else:
            _SERVICE[key] = outer
        session.close()


def run_in_session(
    project: Path | str,
    env: str | None,
    pipeline: str,
    params: dict | None = None,
    *,
    from_nodes: list[str] | None = None,
    node_names: list[str] | None = None,
) -> None:
    """Run ``pipeline`` of ``project`` once in this process: through the campaign's session when
    one is open (:func:`campaign_session`), else in a session of its own."""
    service = _SERVICE.get(_key(project, env))
    if service is not None:
        service.run(
            pipeline_names=[pipeline], from_nodes=from_nodes, node_names=node_names, runtime_params=params or {}
        )
        return
    with create_session(project, env, params) as session:
        session.run(pipeline_names=[pipeline], from_nodes=from_nodes, node_names=node_names)


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
        service = _SERVICE.get(_key(project, env))
        if service is not None:
            yield service.load_context(params or {})
        else:
            with create_session(project, env, params) as session:
                yield session.load_context()
    finally:
        if in_project:
            os.chdir(cwd)
