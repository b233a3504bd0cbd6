"""Learning curves of a training campaign: one row per iteration, one PNG of small panels.

The frame's columns carry the MLflow metric names of ``docs/tables.md`` (``eval/all``,
``prm/loss``, ``ppo/ppo_kl``, ...), so it can be built either way:

- ``iteration_metrics(project)`` recomputes them from the iteration tables on disk (the latest
  version of each, as Kedro loads it), with the same functions the nodes log them with: it needs
  no MLflow and it shows exactly what the tables hold;
- ``mlflow_metrics(tracking_uri)`` reads what the iterations' MLflow runs logged.

Both add the derived columns ``filter/selected_share`` (selected / drawn: the keep-rate) and
``time/iteration``, and a baseline row at ``iteration = -1`` holding the SFT model's held-out
accuracy, which the accuracy panel draws as dashed lines. ``plot_learning_curves`` takes either.
``eurus-prime curves`` writes ``data/08_reporting/learning_curves.{png,csv}``.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from eurus_prime.datasets.atomic import write_file_atomically
from eurus_prime.datasets.versions import latest_version
from eurus_prime.prime import prm_eval
from eurus_prime.prime.config import PrimeConfig
from eurus_prime.prime.policy import advantage_metrics, ppo_metrics
from eurus_prime.prime.prm import prm_metrics
from eurus_prime.prime.rollouts import filter_metrics, outcome_metrics, rollout_metrics
from eurus_prime.runs import manifests
from eurus_prime.runs.layout import iter_dir
from eurus_prime.runs.progress import LAST_STAGE, completed_iterations
from eurus_prime.runs.session import open_context

#: The iteration of the baseline row (the SFT model, before any PRIME iteration).
BASELINE = -1
#: Columns every frame has (NaN where an iteration did not log them), beside ``iteration``.
CORE_COLUMNS = (
    "eval/all",
    "eval/math",
    "eval/code",
    "eval/in_distribution",
    "eval/novel",
    "train_verify_score/all",
    "train_verify_score/math",
    "train_verify_score/code",
    "prm/loss",
    "prm/acc_before",
    "prm/acc_after",
    "prm_eval/fresh_pairwise_acc",
    "prm_eval/fixed_pairwise_acc",
    "prm_eval/fresh_auc",
    "prm_eval/fixed_auc",
    "prm_eval/fresh_localisation",
    "prm_eval/fixed_localisation",
    "filter/in_band_share",
    "filter/selected_share",
    "rollout/response_length_mean",
    "rollout/response_length_max",
    "rollout/truncated_share",
    "ppo/pg_loss",
    "ppo/pg_clipfrac",
    "ppo/ppo_kl",
    "ppo/entropy",
    "ppo/grad_norm",
    "prm/grad_norm",
    "time/iteration",
)
DEFAULT_TITLE = "PRIME learning curves"
PNG = Path("data/08_reporting/learning_curves.png")
CSV = Path("data/08_reporting/learning_curves.csv")


# --------------------------------------------------------------------------- from the tables
@functools.lru_cache(maxsize=8)
def _catalog_paths(project: Path) -> dict[str, str]:
    """Where the project's catalog keeps each iteration table, as a pattern with ``{iter}`` for the
    iteration folder: the catalog decides the paths, this module only fills in the iteration."""
    with open_context(project, params={"iteration": 0}) as context:
        catalog = context.config_loader["catalog"]
    return {
        name: entry["filepath"].replace(iter_dir(0), "{iter}")
        for name, entry in catalog.items()
        if isinstance(entry, dict) and "filepath" in entry
    }


def _table_path(project: Path, iteration: int | None, name: str) -> Path:
    pattern = _catalog_paths(project)[name]
    return project / (pattern if iteration is None else pattern.format(iter=iter_dir(iteration)))


def _table(project: Path, iteration: int, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    """The latest version of one iteration table (its catalog entry's path for ``iteration``)."""
    folder = _table_path(project, iteration, name)
    path = latest_version(folder)
    if path is None:
        raise FileNotFoundError(
            f"{folder} has no saved version, though iteration {iteration} is complete: was it deleted by hand?"
        )
    return pd.read_parquet(path, columns=columns)


def _prm_metrics(project: Path, iteration: int, outcomes: pd.DataFrame, report: pd.DataFrame) -> dict[str, float]:
    """``prm/...`` through ``prime.prm.prm_metrics``; the two settings it reads (samples per prompt,
    ``prm_update``) come from the tables themselves."""
    key = ["prompt_id", "sample_idx"]
    process = _table(project, iteration, "process_rewards", key + ["sequence_score"])
    rewards = _table(project, iteration, "prm_rewards", key + ["prm_update", "sequence_score"])
    stats = _table(project, iteration, "prm_stats")
    cfg = dataclasses.replace(
        PrimeConfig(),
        samples_per_prompt=int(report["n"].iloc[0]),
        prm_update=str(rewards["prm_update"].iloc[0]) if len(rewards) else "after",
    )
    return prm_metrics(process, rewards, outcomes, stats, cfg)


def _prm_eval_metrics(project: Path, iteration: int) -> dict[str, float]:
    """``prm_eval/<set>_<metric>`` from the iteration's ``prm_eval`` table ({} for iterations run
    before the PRM evaluation existed)."""
    if latest_version(_table_path(project, iteration, "prm_eval")) is None:
        return {}
    return prm_eval.table_metrics(_table(project, iteration, "prm_eval"))


def _eval_metrics(report: pd.DataFrame) -> dict[str, float]:
    """``eval/<name>`` from an accuracy report (``eval/all``, per ability and data source)."""
    return {f"eval/{row.name}": float(row.accuracy) for row in report.itertuples()}


def _stage_seconds(project: Path, iteration: int) -> float:
    """Wall time of the iteration's stages (their latest manifests, saves included)."""
    from eurus_prime.pipelines.prime_iteration.pipeline import PPO_STAGES  # every stage of either pipeline

    root = project / manifests.ROOT
    records = [manifests.latest(iter_dir(iteration), stage, root) for stage in PPO_STAGES]
    return float(sum(r["seconds"] for r in records if r))


def _iteration_row(project: Path, iteration: int) -> dict[str, float]:
    """Every metric of one completed iteration, recomputed from its tables."""
    rollouts = _table(project, iteration, "rollouts", ["iteration", "response_length", "finish_reason"])
    outcomes = _table(project, iteration, "outcomes", ["prompt_id", "sample_idx", "ability", "score"])
    report = _table(project, iteration, "filter_report")
    return {
        "iteration": iteration,
        **rollout_metrics(rollouts),
        **outcome_metrics(outcomes),
        **filter_metrics(report),
        **_prm_metrics(project, iteration, outcomes, report),
        **_prm_eval_metrics(project, iteration),
        **advantage_metrics(_table(project, iteration, "advantages", ["advantages", "returns"])),
        **ppo_metrics(_table(project, iteration, "ppo_stats")),
        **_eval_metrics(_table(project, iteration, "eval_report")),
        "time/iteration": _stage_seconds(project, iteration),
    }


def sft_baseline(project: Path, items: int | None = None) -> dict[str, float]:
    """The SFT model's held-out accuracy as ``eval/<name>``, {} when it was not evaluated.

    The iterations evaluate only the first ``prime.eval_max_items`` test prompts, in the order of
    the SFT report: given ``items``, the baseline is scored on those same first items (from
    ``sft_eval_items``), so the dashed line and the curve compare item for item."""
    reporting = latest_version(_table_path(project, None, "sft_eval_report"))
    scored = latest_version(_table_path(project, None, "sft_eval_items"))
    if items is not None and scored is not None:
        from eurus_prime.eval.evaluation import accuracy_report

        return _eval_metrics(accuracy_report(pd.read_parquet(scored).head(items)))
    return {} if reporting is None else _eval_metrics(pd.read_parquet(reporting))


def _evaluated_items(project: Path, iterations: Iterable[int]) -> int | None:
    """How many held-out prompts the evaluated iterations scored (None if none was evaluated)."""
    sizes = [
        report.loc[report["group"] == "all", "n"].max()
        for report in (_table(project, i, "eval_report") for i in iterations)
        if len(report)
    ]
    return int(max(sizes)) if sizes else None


def iteration_metrics(project: Path) -> pd.DataFrame:
    """One row per completed iteration (``iteration`` 0, 1, ...), recomputed from the tables on
    disk, and the SFT baseline row (``iteration = -1``, only ``eval/*``) when the SFT model was
    evaluated. Raises FileNotFoundError when no iteration is complete."""
    project = Path(project).resolve()
    done = completed_iterations(project / manifests.ROOT)
    if done == 0:
        raise FileNotFoundError(
            f"no completed PRIME iteration in {project / 'data'} (no "
            f"iter_0000/{LAST_STAGE} manifest under {manifests.ROOT}): run "
            "`eurus-prime train --iterations N` first"
        )
    rows = [_iteration_row(project, i) for i in range(done)]
    baseline = sft_baseline(project, _evaluated_items(project, range(done)))
    return _finish(([{"iteration": BASELINE, **baseline}] if baseline else []) + rows)


def _finish(rows: list[dict]) -> pd.DataFrame:
    """Rows -> the frame: derived columns, the core columns always present, sorted by iteration,
    ``iteration`` first and the metrics in name order."""
    frame = pd.DataFrame(rows)
    if {"filter/selected", "filter/drawn"} <= set(frame.columns):
        frame["filter/selected_share"] = frame["filter/selected"] / frame["filter/drawn"]
    frame = frame.reindex(columns=sorted((set(frame.columns) | set(CORE_COLUMNS)) - {"iteration"}))
    frame.insert(0, "iteration", [r["iteration"] for r in rows])
    return frame.astype({"iteration": int}).sort_values("iteration").reset_index(drop=True)


# --------------------------------------------------------------------------- from MLflow
def _campaign_run(client, experiment_id: str, campaign: str | None):
    """The given campaign run, or the experiment's newest one."""
    if campaign is not None:
        return client.get_run(campaign)
    runs = client.search_runs(
        [experiment_id], "tags.`eurus_prime.role` = 'campaign'", order_by=["attributes.start_time DESC"], max_results=1
    )
    if not runs:
        raise LookupError(f"experiment {experiment_id} has no campaign run: run `eurus-prime train` first")
    return runs[0]


def _mlflow_baseline(client, experiment_id: str, before: int) -> dict[str, float]:
    """``val/test_score/<name>`` of the newest SFT evaluation run started before the campaign
    (all test prompts: MLflow has no per-item results to cut to the iterations' subset)."""
    runs = client.search_runs(
        [experiment_id], "metrics.`val/test_score/all` >= 0", order_by=["attributes.start_time DESC"]
    )
    earlier = [r for r in runs if r.info.start_time <= before]
    if not earlier:
        return {}
    prefix = "val/test_score/"
    return {f"eval/{k[len(prefix) :]}": v for k, v in earlier[0].data.metrics.items() if k.startswith(prefix)}


def mlflow_metrics(tracking_uri: str, experiment: str = "eurus_prime", campaign: str | None = None) -> pd.DataFrame:
    """The frame of ``iteration_metrics`` from MLflow: the metrics of the campaign's iteration
    runs (children tagged ``eurus_prime.iteration``; the newest campaign unless ``campaign`` names
    its run id). Each node logs its metrics once per run at step = iteration, so a run's latest
    value is its history's only point; when an iteration has several runs (a resample, changed
    parameters) the later ones win, as on the campaign run. ``time/iteration`` is the sum of the
    ``time/<node>`` seconds (inside the nodes, without I/O)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise LookupError(f"no MLflow experiment {experiment!r} at {tracking_uri}")
    parent = _campaign_run(client, exp.experiment_id, campaign)
    children = client.search_runs(
        [exp.experiment_id],
        f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=50000,
    )
    by_iteration: dict[int, dict[str, float]] = {}
    for run in children:
        i = int(run.data.tags["eurus_prime.iteration"])
        by_iteration.setdefault(i, {"iteration": i}).update(run.data.metrics)
    if not by_iteration:
        raise LookupError(f"campaign run {parent.info.run_id} has no iteration runs yet")
    rows = [_with_time(by_iteration[i]) for i in sorted(by_iteration)]
    baseline = _mlflow_baseline(client, exp.experiment_id, parent.info.start_time)
    return _finish(([{"iteration": BASELINE, **baseline}] if baseline else []) + rows)


def _with_time(row: dict[str, float]) -> dict[str, float]:
    """``row`` and its ``time/iteration``: the sum of its ``time/<node>`` seconds."""
    seconds = [v for k, v in row.items() if k.startswith("time/") and k != "time/iteration_wall"]
    return {**row, "time/iteration": float(sum(seconds))}


# --------------------------------------------------------------------------- the picture
#: (panel title, y label, [(column, legend label)], kind). Kinds: "accuracy" (percent, SFT
#: baseline dashed where it has the column, at least ``ACCURACY_SPAN`` points tall), "percent"
#: (100 x value), "chance" (0.5 dotted), "plain".
PANELS: tuple[tuple[str, str, tuple[tuple[str, str], ...], str], ...] = (
    (
        "held-out greedy pass@1",
        "%",
        (
            ("eval/all", "all"),
            ("eval/math", "math"),
            ("eval/code", "code"),
            ("eval/in_distribution", "in-distribution"),
            ("eval/novel", "novel"),
        ),
        "accuracy",
    ),
    (
        "train verify score (before filter)",
        "%",
        (("train_verify_score/all", "all"), ("train_verify_score/math", "math"), ("train_verify_score/code", "code")),
        "accuracy",
    ),
    ("PRM loss (cross-entropy)", "", (("prm/loss", "loss"),), "plain"),
    ("PRM pairwise accuracy", "", (("prm/acc_before", "before update"), ("prm/acc_after", "after update")), "chance"),
    (
        "PRM quality: fresh rollouts / fixed set",
        "",
        (
            ("prm_eval/fresh_auc", "AUC, fresh"),
            ("prm_eval/fixed_auc", "AUC, fixed"),
            ("prm_eval/fixed_pairwise_acc", "pairwise, fixed"),
        ),
        "chance",
    ),
    (
        "PRM first-error localisation",
        "share of wrong rollouts",
        (("prm_eval/fresh_localisation", "fresh"), ("prm_eval/fixed_localisation", "fixed")),
        "plain",
    ),
    (
        "filter keep-rate",
        "%",
        (("filter/in_band_share", "in band"), ("filter/selected_share", "selected / drawn")),
        "percent",
    ),
    (
        "response length",
        "tokens",
        (("rollout/response_length_mean", "mean"), ("rollout/response_length_max", "max")),
        "plain",
    ),
    ("truncated responses", "%", (("rollout/truncated_share", "finish_reason = length"),), "percent"),
    ("PPO policy-gradient loss", "", (("ppo/pg_loss", "pg_loss"),), "plain"),
    ("PPO clip fraction", "%", (("ppo/pg_clipfrac", "pg_clipfrac"),), "percent"),
    ("PPO approx. KL (old -> new)", "", (("ppo/ppo_kl", "ppo_kl"),), "plain"),
    ("policy entropy", "nats / token", (("ppo/entropy", "entropy"),), "plain"),
    ("grad norm (before clipping)", "", (("ppo/grad_norm", "policy"), ("prm/grad_norm", "PRM")), "plain"),
    ("time per iteration", "s", (("time/iteration", "stages"),), "plain"),
)
NCOLS = 4
ACCURACY_SPAN = 10.0
#: Above this many iterations the lines carry no markers (evaluated points always do).
MARKER_LIMIT = 60


def _panel(ax, title: str, ylabel: str, series, kind: str, curves: pd.DataFrame, baseline: dict[str, float]) -> None:
    """One small panel: each column against the iteration, its missing iterations skipped."""
    from matplotlib.lines import Line2D

    scale = 1.0 if kind in ("plain", "chance") else 100.0
    drawn, dashed = 0, False
    for k, (column, label) in enumerate(series):
        if column not in curves or curves[column].isna().all():
            continue
        points = curves[["iteration", column]].dropna()
        sparse = len(points) < len(curves) or len(points) <= MARKER_LIMIT
        ax.plot(
            points["iteration"],
            scale * points[column],
            label=label,
            color=f"C{k}",
            marker="o" if sparse else None,
            markersize=4,
            linewidth=1.5,
        )
        drawn += 1
        if kind == "accuracy" and column in baseline:
            ax.axhline(scale * baseline[column], color=f"C{k}", linestyle="--", linewidth=1)
            dashed = True
    handles, labels = ax.get_legend_handles_labels()
    if dashed:
        handles.append(Line2D([], [], color="grey", linestyle="--", linewidth=1))
        labels.append("SFT model")
    if kind == "chance":
        handles.append(ax.axhline(0.5, color="grey", linestyle=":", linewidth=1))
        labels.append("chance")
    if kind == "accuracy":
        _min_span(ax, ACCURACY_SPAN)
    if not drawn:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="grey")
    if len(labels) > 1:
        ax.legend(handles, labels, fontsize=8, loc="best", framealpha=0.8)
    ax.set_title(title, fontsize=11)
    ax.set_ylabel(ylabel)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.grid(alpha=0.3)


def _min_span(ax, span: float) -> None:
    """Widen the y range to at least ``span`` around its middle, so flat curves stay flat."""
    lo, hi = ax.get_ylim()
    if hi - lo < span:
        middle = (lo + hi) / 2
        ax.set_ylim(middle - span / 2, middle + span / 2)


def _iteration_axis(ax, first: int, last: int) -> None:
    """The same iteration range on every panel (a panel with one evaluated point included)."""
    from matplotlib.ticker import MaxNLocator

    pad = max(0.3, 0.03 * (last - first))
    ax.set_xlim(first - pad, last + pad)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def summary_lines(curves: pd.DataFrame, baseline: dict[str, float]) -> list[str]:
    """The headline numbers, printed beside the panels: SFT, last and best held-out accuracy."""
    lines = [
        f"{len(curves)} iterations (0-{int(curves['iteration'].max())}), "
        f"{_duration(curves['time/iteration'].sum())} in the stages"
    ]
    if "eval/all" in baseline:
        lines.append(f"SFT model: {100 * baseline['eval/all']:.1f}% held-out pass@1")
    evaluated = curves.dropna(subset=["eval/all"])
    if len(evaluated):
        last, best = evaluated.iloc[-1], evaluated.loc[evaluated["eval/all"].idxmax()]
        gain = f" ({100 * (last['eval/all'] - baseline['eval/all']):+.1f} points)" if "eval/all" in baseline else ""
        split = (
            f"; in-distribution {100 * last['eval/in_distribution']:.1f}%, novel {100 * last['eval/novel']:.1f}%"
            if pd.notna(last.get("eval/novel")) and pd.notna(last.get("eval/in_distribution"))
            else ""
        )
        lines.append(f"last evaluated, iteration {int(last['iteration'])}: {100 * last['eval/all']:.1f}%{gain}{split}")
        lines.append(f"best, iteration {int(best['iteration'])}: {100 * best['eval/all']:.1f}%")
    else:
        lines.append("no iteration evaluated yet (prime.eval_every)")
    return lines


def plot_learning_curves(frame: pd.DataFrame, out_path: Path, title: str = DEFAULT_TITLE) -> Path:
    """Draw ``frame`` (from ``iteration_metrics`` or ``mlflow_metrics``) as one PNG, a grid of
    small panels against the iteration and a summary; the SFT baseline row (``iteration = -1``)
    is the dashed lines of the accuracy panel. Written atomically (temp file, then rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = frame[frame["iteration"] >= 0].sort_values("iteration")
    if curves.empty:
        raise ValueError("the frame has no iteration rows to plot")
    base = frame[frame["iteration"] == BASELINE]
    baseline = {} if base.empty else base.iloc[0].drop("iteration").dropna().to_dict()
    nrows = len(PANELS) // NCOLS + 1  # the last row ends with the summary
    fig = plt.figure(figsize=(4.2 * NCOLS, 3.1 * nrows))
    grid = fig.add_gridspec(nrows, NCOLS)
    first, last = int(curves["iteration"].min()), int(curves["iteration"].max())
    for k, (name, ylabel, series, kind) in enumerate(PANELS):
        ax = fig.add_subplot(grid[divmod(k, NCOLS)])
        _panel(ax, name, ylabel, series, kind, curves, baseline)
        _iteration_axis(ax, first, last)
    text = fig.add_subplot(grid[nrows - 1, len(PANELS) % NCOLS :])
    text.axis("off")
    text.text(0.05, 0.5, "\n".join(summary_lines(curves, baseline)), va="center", fontsize=12, linespacing=1.8)
    fig.suptitle(title, fontsize=14)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_file_atomically(Path(out_path), buffer.getvalue())
    return Path(out_path)


def write_learning_curves(project: Path, out_dir: Path | None = None, source: str = "tables") -> tuple[Path, Path]:
    """``learning_curves.png`` and ``learning_curves.csv`` (the frame) of ``project``'s completed
    iterations, in ``out_dir`` (default ``data/08_reporting``); returns (png, csv). ``source`` is
    ``tables`` (the iteration tables on disk) or ``mlflow`` (the project's ``mlflow.db`` runs)."""
    project = Path(project).resolve()
    if source == "tables":
        frame = iteration_metrics(project)
    elif source == "mlflow":
        frame = mlflow_metrics(f"sqlite:///{project / 'mlflow.db'}")
    else:
        raise ValueError(f"source must be 'tables' or 'mlflow', got {source!r}")
    folder = project / PNG.parent if out_dir is None else Path(out_dir)
    png = plot_learning_curves(frame, folder / PNG.name, f"{DEFAULT_TITLE}: {project.name}")
    csv = folder / CSV.name
    write_file_atomically(csv, frame.to_csv(index=False))
    return png, csv
