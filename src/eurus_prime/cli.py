"""``eurus-prime``: the project's commands.

``eurus-prime train`` is the main job: it bootstraps the tiny world's SFT model if there is none,
runs PRIME iterations until ``--iterations`` are complete (resuming an interrupted run at the
stage it stopped in) and prints held-out accuracy before and after. Every step is a Kedro run, so
everything it makes is in ``data/`` and MLflow.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from eurus_prime.lock import Busy
from eurus_prime.prime.stages import NonFiniteError, NothingSelected
from eurus_prime.training import load_dataset, parse_params, project_params, run_pipeline
from eurus_prime.training import train as train_iterations
from eurus_prime.watchdog import StageTimeout

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Errors that stop training on purpose, each with a message that says what to do.
STOPS = (NothingSelected, NonFiniteError, StageTimeout, Busy)


def _project(option: Path | None) -> Path:
    """``--project``, else the Kedro project in the current directory, else this checkout."""
    if option is not None:
        return option.resolve()
    from kedro.utils import find_kedro_project

    found = find_kedro_project(Path.cwd())
    return Path(found).resolve() if found else PROJECT_ROOT


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
@click.option("--iterations", type=click.IntRange(min=0), default=None,
              help="Train until this many PRIME iterations are complete (default: params train.iterations).")
@click.option("--params", "params_text", default=None,
              help="Parameter overrides for every iteration, as kedro run --params: prime.policy_lr=1e-4,...")
@click.option("--time-budget", type=float, default=None,
              help="Start no new iteration after this many seconds.")
@click.option("--env", default=None, help="Kedro config environment (default: base + local).")
@click.option("--project", type=click.Path(path_type=Path), default=None,
              help="Project root (default: the Kedro project in the current directory, else this checkout).")
def train(iterations: int | None, params_text: str | None, time_budget: float | None, env: str | None,
          project: Path | None) -> None:
    """Bootstrap the SFT model if missing, then run PRIME iterations (resuming where a previous
    run stopped) and report held-out accuracy before and after."""
    project = _project(project)
    os.chdir(project)
    if load_dataset(project, env, "sft_eval_report") is None or load_dataset(project, env, "sft_model") is None:
        click.echo("No evaluated SFT model yet: running `kedro run --pipelines=bootstrap` ...")
        run_pipeline(project, env, "bootstrap")
    else:
        click.echo("SFT model found (data/06_models/sft_model); skipping the bootstrap.")
    sft_report = load_dataset(project, env, "sft_eval_report")
    click.echo("\nHeld-out greedy pass@1 of the SFT model (before PRIME):")
    click.echo(_format_report(sft_report))
    if iterations is None:
        iterations = int(project_params(project, env)["train"]["iterations"])
    click.echo(f"\nPRIME: training until {iterations} iterations are complete "
               "(kedro run --pipelines=prime_iteration per iteration)")
    overrides = parse_params(params_text)
    keep = project_params(project, env, overrides)["train"].get("keep_checkpoints")
    try:
        train_iterations(project, env, iterations, echo=click.echo, params=overrides, time_budget=time_budget,
                         keep_checkpoints=keep)
    except STOPS as err:  # a run that stopped on purpose: its message, not a traceback
        raise click.ClickException(f"{type(err).__name__}: {err}") from err
    _report_after(project, env)


def _report_after(project: Path, env: str | None) -> None:
    """Compare the last evaluated iteration with the SFT model on the same test items."""
    import pandas as pd

    from eurus_prime.datasets.versions import latest_version
    from eurus_prime.prime.progress import completed_iterations, iter_dir

    items = None
    for i in reversed(range(completed_iterations(project / "data/09_manifests"))):
        path = latest_version(project / "data/07_model_output" / iter_dir(i) / "eval_items.parquet")
        items = pd.read_parquet(path) if path else None
        if items is not None and len(items):
            break
    if items is None or not len(items):
        click.echo("No PRIME iteration has been evaluated yet.")
        return
    sft = load_dataset(project, env, "sft_eval_items")
    same = sft[sft["index"].isin(set(items["index"]))]
    click.echo(f"\nHeld-out greedy pass@1 on the same {len(items)} test prompts:")
    click.echo(f"  {'':<14}{'SFT':>8}{'iter ' + str(i):>10}")
    for name, key in [("all", None), ("math", "math"), ("code", "code")]:
        a = same if key is None else same[same["ability"] == key]
        b = items if key is None else items[items["ability"] == key]
        click.echo(f"  {name:<14}{100 * a['correct'].mean():7.1f}%{100 * b['correct'].mean():9.1f}%")


@main.command()
@click.option("--keep-versions", type=click.IntRange(min=1), default=1, show_default=True,
              help="Versions kept per dataset folder (besides those the stages' latest manifests use).")
@click.option("--keep-checkpoints", type=click.IntRange(min=1), default=None,
              help="Also keep only the policy/PRM checkpoints of this many last iterations (+ the best).")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--project", type=click.Path(path_type=Path), default=None,
              help="Project root (default: the Kedro project in the current directory, else this checkout).")
def gc(keep_versions: int, keep_checkpoints: int | None, dry_run: bool, project: Path | None) -> None:
    """Free disk: delete old versions of tables and checkpoints that no stage's latest manifest uses,
    and temporary files of interrupted writes. Tables are otherwise kept forever."""
    from eurus_prime.lock import Busy, data_lock
    from eurus_prime.retention import gc as collect

    project = _project(project)
    try:
        with data_lock(project, "eurus-prime gc"):
            pruned = collect(project, keep_versions=keep_versions, keep_checkpoints=keep_checkpoints,
                             dry_run=dry_run)
    except Busy as err:
        raise click.ClickException(str(err)) from err
    for path in pruned.paths:
        click.echo(f"{'would delete' if dry_run else 'deleted'} {path.relative_to(project)}")
    click.echo(f"{'would free' if dry_run else 'freed'} {pruned.bytes / 2**20:.1f} MiB in {len(pruned.paths)} "
               "version(s) and leftover(s)")


@main.command()
@click.option("--input", "input_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Rows to score: .parquet or .jsonl with `response`, `ability` and `ground_truth` (or the "
                   "Eurus-2 schema's `reward_model.ground_truth`).")
@click.option("--output", "output_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the rows with their scores (.parquet or .jsonl).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes (default: every core).")
def verify(input_path: Path, output_path: Path, workers: int | None) -> None:
    """Score responses with the outcome verifiers and print a summary (accuracy by ability,
    timeouts, errors, the code sandbox in force)."""
    import time

    import pandas as pd

    from eurus_prime.verifiers import summarise, verify_table

    rows = _read_rows(input_path)
    if "ground_truth" not in rows.columns and "reward_model" in rows.columns:
        rows = rows.assign(ground_truth=[rm["ground_truth"] for rm in rows["reward_model"]])
    try:
        start = time.perf_counter()
        scored = verify_table(rows, workers=workers)
    except ValueError as err:
        raise click.ClickException(f"{input_path}: {err}") from err
    seconds = time.perf_counter() - start
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(f".{output_path.name}.tmp")
    if output_path.suffix == ".jsonl":
        scored.to_json(tmp, orient="records", lines=True)
    else:
        scored.to_parquet(tmp)
    tmp.replace(output_path)
    click.echo(summarise(scored))
    click.echo(f"scored in {seconds:.1f} s ({len(scored) / max(seconds, 1e-9):.0f} rows/s); wrote {output_path}")


def _read_rows(path: Path):
    import pandas as pd

    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix in (".jsonl", ".json"):
        try:
            return pd.read_json(path, lines=path.suffix == ".jsonl")
        except ValueError as err:
            raise click.ClickException(f"{path}: not valid JSON lines ({err})") from err
    raise click.ClickException(f"{path}: expected a .parquet or .jsonl file")


#: Kedro loads ``<package>.cli.cli`` as the project's command group, so ``kedro train`` works too.
cli = main


if __name__ == "__main__":
    main()
