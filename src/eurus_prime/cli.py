"""``eurus-prime``: the project's commands.

``eurus-prime train`` is the main job: it bootstraps the tiny world's SFT model if there is none,
then prints the held-out accuracy. (The PRIME iterations plug in here once the ``prime_iteration``
pipeline exists.) Every step is a Kedro run, so everything it makes is in ``data/`` and MLflow.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _session(project: Path, env: str | None, params: dict | None = None):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    bootstrap_project(project)
    return KedroSession.create(project_path=project, env=env, runtime_params=params or {})


def _run(project: Path, env: str | None, pipeline: str) -> None:
    import mlflow

    with _session(project, env) as session:
        session.run(pipeline_names=[pipeline])
    while mlflow.active_run():  # kedro-mlflow leaves the finished run on the fluent stack
        mlflow.end_run()


def _load(project: Path, env: str | None, name: str):
    with _session(project, env) as session:
        catalog = session.load_context().catalog
        return catalog.load(name) if catalog.exists(name) else None


def _format_report(report) -> str:
    rows = report[report["group"] != "data_source"]
    lines = [f"  {'':<10}{'n':>6}  accuracy"]
    lines += [f"  {r.name:<10}{r.n:>6}  {100 * r.accuracy:6.1f}%" for r in rows.itertuples()]
    per_source = report[report["group"] == "data_source"]
    lines += ["  by data source:"]
    lines += [f"    {r.name:<14}{r.n:>6}  {100 * r.accuracy:6.1f}%" for r in per_source.itertuples()]
    return "\n".join(lines)


@click.group()
def main() -> None:
    """eurus_prime: PRIME as a Kedro pipeline."""


@main.command()
@click.option("--env", default=None, help="Kedro config environment (default: base + local).")
@click.option("--project", type=click.Path(path_type=Path), default=None,
              help="Project root (default: this checkout).")
def train(env: str | None, project: Path | None) -> None:
    """Bootstrap the SFT model if missing, then report held-out accuracy."""
    project = (project or PROJECT_ROOT).resolve()
    if _load(project, env, "sft_eval_report") is None or _load(project, env, "sft_model") is None:
        click.echo("No evaluated SFT model yet: running `kedro run --pipelines=bootstrap` ...")
        _run(project, env, "bootstrap")
    else:
        click.echo("SFT model found (data/06_models/sft_model); skipping the bootstrap.")
    report = _load(project, env, "sft_eval_report")
    click.echo("\nHeld-out greedy pass@1 of the SFT model (before PRIME):")
    click.echo(_format_report(report))
    click.echo(
        "\nPRIME iterations: the prime_iteration pipeline is not implemented yet, so there is no "
        "'after' to report."
    )


#: Kedro loads ``<package>.cli.cli`` as the project's command group, so ``kedro train`` works too.
cli = main


if __name__ == "__main__":
    main()
