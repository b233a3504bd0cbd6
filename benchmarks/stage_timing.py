"""Where an iteration's wall time and memory go: each node's own work, dataset I/O, the rest of
Kedro, and each node's peak resident memory, at the default batch and at K times it.

    python benchmarks/stage_timing.py --iterations 4            # 1x and 4x the batch, ~4 min on 2 quiet cores
    python benchmarks/stage_timing.py --iterations 3 --scale 1  # the default size only, ~1 min
    python benchmarks/stage_timing.py --params prime.rollout_engine=hf   # any prime params, every size

For each scale K (default 1 and 4) it runs ``eurus-prime train --iterations N`` on a fresh copy of
the project that has this checkout's SFT model, with ``prime.prompts_per_step`` = K x its default
(64), and reads ``data/08_reporting/train_log.jsonl``:

- ``time/<node>``: seconds inside each node function (the algorithm's work);
- ``time/io_load`` / ``time/io_save``: seconds in dataset loads and saves (Parquet tables, HF
  checkpoint folders; measured by ``hooks.IOTimingHooks``);
- ``seconds``: the whole Kedro session of the iteration. What is left after nodes and I/O is
  Kedro itself (session, config, catalog, hooks, kedro-mlflow logging);
- the loop's own bookkeeping between iterations (stage checks, MLflow campaign copy) is the gap
  between consecutive ``elapsed`` values and ``seconds``;
- ``memory/<node>_peak_rss_mb`` / ``memory/<node>_rss_before_mb``: the process's peak RSS while
  the node ran and its RSS when it started (``hooks.MemoryHooks``, Linux), and
  ``memory/peak_rss_mb``, the peak of the whole iteration (loads and saves included).

Scaling the batch keeps ``oversample_factor`` (2: 2B prompts drawn), ``samples_per_prompt`` (4)
and the chunk sizes: ``generation_batch_size`` (256 sequences per ``generate`` call), and
``micro_batch`` (64 rows per forward/backward), so the activation memory of one chunk does not
grow; the mini-batches (``ppo_mini_batch`` 64, ``prm_mini_batch`` 256) stay too, so Kx the batch
takes Kx the optimizer steps (``--scale-mini-batches`` multiplies them instead, same steps).

Iteration 0 is reported but excluded from the means (first-call warm-up). ``evaluate_policy``
only evaluates at iteration 0 and every ``prime.eval_every`` (5) iterations; its mean is over the
iterations measured, evaluating or not (the table says which). Results, all sizes side by side:
``benchmarks/results/stage_timing.{json,md}`` (the JSON's top-level keys are the first size's,
as before; ``by_scale`` holds every size). A size measured while other processes used over a
quarter of a core (``_project.LoadMonitor``) is run again (``--retries``, default 1), keeping the
faster run. ``--from-json`` re-renders the Markdown of an earlier result.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import (  # noqa: E402
    BUSY_OTHER_CORES,
    ROOT,
    busy,
    default_prime,
    extra_draws,
    fresh_project,
    prime_stages,
    run_logged,
    split_iterations,
    split_params,
    train_command,
    train_log,
    write_json,
)

#: The nodes timed: every prime_iteration stage but sample_prompts (below) and evaluate_prm (its
#: seconds fall into "Kedro other").
NODES = prime_stages(without=("sample_prompts", "evaluate_prm"))
#: sample_prompts times nothing of its own (its seconds are in "Kedro other"), but has a peak RSS.
MEMORY_NODES = ("sample_prompts",) + NODES
OVERHEAD_PARTS = (
    ("io_load_seconds", "dataset loads (Parquet, checkpoints)"),
    ("io_save_seconds", "dataset saves (Parquet, checkpoints)"),
    ("kedro_other_seconds", "Kedro session, catalog, hooks, kedro-mlflow"),
    ("loop_bookkeeping_seconds", "training loop: stage checks, MLflow campaign"),
)


def scaled_params(user: str, scale: int, scale_mini_batches: bool = False, base: dict | None = None) -> str:
    """``--params`` for scale K: the user's items, with ``prime.prompts_per_step`` (and, with
    ``scale_mini_batches``, the PPO/PRM mini-batches) multiplied by K. A value the user sets is the
    one multiplied."""
    base = dict(base or default_prime())
    items = split_params(user)
    scaled = ["prompts_per_step"] + (["ppo_mini_batch", "prm_mini_batch"] if scale_mini_batches else [])
    keep = []
    for item in items:
        key, _, value = item.partition("=")
        name = key.strip().removeprefix("prime.")
        if key.strip().startswith("prime.") and name in scaled:
            base[name] = yaml.safe_load(value)
        else:
            keep.append(item)
    return ",".join(keep + [f"prime.{name}={int(base[name]) * scale}" for name in scaled])


def run_train(project: Path, iterations: int, params: str) -> tuple[float, dict]:
    cmd = train_command(project, iterations, params)
    code, seconds, load = run_logged(cmd, project)
    if code:
        tail = "\n".join((project / "train.log").read_text().splitlines()[-40:])
        raise SystemExit(f"{' '.join(cmd)} failed ({code}); the end of {project / 'train.log'}:\n{tail}")
    return seconds, load.summary()


def per_iteration(rows: list[dict]) -> list[dict]:
    out = []
    for r, part in zip(rows, split_iterations(rows, NODES)):
        out.append(
            {
                "iteration": r["iteration"],
                "session_seconds": r["seconds"],
                "nodes": part["nodes"],
                "node_seconds": sum(part["nodes"].values()),
                "io_load": part["io_load"],
                "io_save": part["io_save"],
                "kedro_other": part["kedro_other"],
                "loop_bookkeeping": part["loop_bookkeeping"],
                "evaluated": "eval/all" in r,
                "rollouts": r.get("rollout/responses"),
                "response_length_mean": r.get("rollout/response_length_mean"),
                "groups_drawn": r.get("filter/drawn"),
                "groups_selected": r.get("filter/selected"),
                "resamples": extra_draws(r),
                "peak_rss_mb": r.get("memory/peak_rss_mb"),
                "node_peak_rss_mb": {
                    n: r[f"memory/{n}_peak_rss_mb"] for n in MEMORY_NODES if f"memory/{n}_peak_rss_mb" in r
                },
                "node_rss_before_mb": {
                    n: r[f"memory/{n}_rss_before_mb"] for n in MEMORY_NODES if f"memory/{n}_rss_before_mb" in r
                },
            }
        )
    return out


def summarise(iters: list[dict]) -> dict:
    """Means over the iterations after the first (all of them when there is only one); peaks are
    the largest over the same iterations."""
    steady = iters[1:] or iters

    def mean(key, sub=None):
        vals = [(p[key][sub] if sub else p[key]) for p in steady]
        vals = [v for v in vals if v is not None]
        return sum(vals) / len(vals) if vals else None

    def peak(key, sub=None):
        vals = [(p[key].get(sub) if sub else p[key]) for p in steady]
        vals = [v for v in vals if v is not None]
        return round(max(vals), 1) if vals else None

    wall = mean("session_seconds") + mean("loop_bookkeeping")
    s = {
        "mean_iteration_wall_seconds": round(wall, 2),
        "node_seconds": {n: round(mean("nodes", n), 2) for n in NODES},
        "io_load_seconds": round(mean("io_load"), 2),
        "io_save_seconds": round(mean("io_save"), 2),
        "kedro_other_seconds": round(mean("kedro_other"), 2),
        "loop_bookkeeping_seconds": round(mean("loop_bookkeeping"), 2),
    }
    s["node_share"] = {n: round(v / wall, 4) for n, v in s["node_seconds"].items()}
    overhead = sum(s[k] for k, _ in OVERHEAD_PARTS)
    s["overhead_share"] = round(overhead / wall, 4)
    s["kedro_parquet_overhead_share"] = round(
        (s["io_load_seconds"] + s["io_save_seconds"] + s["kedro_other_seconds"]) / wall, 4
    )
    s["node_peak_rss_mb"] = {n: peak("node_peak_rss_mb", n) for n in MEMORY_NODES}
    s["node_rss_before_mb"] = {n: peak("node_rss_before_mb", n) for n in MEMORY_NODES}
    s["peak_rss_mb"] = peak("peak_rss_mb")
    # Iteration 0: each node's first run, before the heap holds what earlier iterations freed.
    s["iteration0_node_peak_rss_mb"] = dict(iters[0]["node_peak_rss_mb"]) if iters else {}
    s["iteration0_node_rss_before_mb"] = dict(iters[0]["node_rss_before_mb"]) if iters else {}
    s["iteration0_peak_rss_mb"] = iters[0]["peak_rss_mb"] if iters else None
    for key, name in (
        ("rollouts", "mean_rollouts"),
        ("response_length_mean", "mean_response_length"),
        ("groups_drawn", "mean_groups_drawn"),
        ("groups_selected", "mean_groups_selected"),
    ):
        v = mean(key)
        s[name] = round(v, 1) if v is not None else None
    s["measured_iterations"] = [p["iteration"] for p in steady]
    s["evaluated_iterations"] = [p["iteration"] for p in steady if p["evaluated"]]
    s["resamples"] = sum(p["resamples"] or 0 for p in steady)
    return s


def _num(v, fmt: str = "{:.0f}") -> str:
    return "–" if v is None else fmt.format(v)


def _fmt_mem(summary: dict, node: str, prefix: str = "") -> str:
    peak = summary.get(f"{prefix}node_peak_rss_mb", {}).get(node)
    before = summary.get(f"{prefix}node_rss_before_mb", {}).get(node)
    if peak is None:
        return "–"
    return f"{peak:.0f} (+{max(0.0, peak - before):.0f})" if before is not None else f"{peak:.0f}"


def render_markdown(result: dict) -> str:
    runs = result["by_scale"]
    labels = list(runs)
    lines = ["# Stage timing and memory (tiny world)", "", f"Command: `{result['command']}`", ""]
    lines.append(
        f"`eurus-prime train --iterations {result['iterations']}` on a fresh project copy per size "
        f"(extra params: `{result['params'] or 'none'}`). Means over iterations "
        f"1..{result['iterations'] - 1} (iteration 0 is warm-up). Peak RSS: the process's "
        "highest resident memory while the node ran, in MB (in brackets: above its RSS when "
        'the node started), the largest over the measured iterations; "it. 0": the same in '
        "iteration 0. RSS includes heap that earlier nodes freed but the allocator kept (a node "
        "reuses it without growing RSS), so a node's own need shows best in its bracket at "
        "iteration 0, and the iteration's peak is what the process needs."
    )
    lines.append("")
    for lab in labels:
        r = runs[lab]
        lines.append(
            f"- **{lab}** (`{r['params']}`): {r['mean_iteration_wall_seconds']:.1f} s per iteration; "
            f"{_num(r['mean_rollouts'])} rollouts generated from {_num(r['mean_groups_drawn'])} prompts, "
            f"{_num(r['mean_groups_selected'])} groups trained on, mean response "
            f"{_num(r['mean_response_length'], '{:.1f}')} tokens; iteration peak RSS "
            f"{_num(r['peak_rss_mb'])} MB; "
            f"evaluated iterations among the measured: {r['evaluated_iterations'] or 'none'}"
            + (f"; {r['resamples']} resample(s)" if r["resamples"] else "")
            + (
                f"; other work on the machine used {_num(r['load'].get('other_cores'), '{:.2f}')} cores "
                f"on average (1-min load average {r['load']['load_mean']:.1f}, max "
                f"{r['load']['load_max']:.1f}, {r['load']['cpus']} CPUs)"
                if r.get("load")
                else ""
            )
            + (f"; runs: {r['attempts']}, the fastest kept" if r.get("attempts", 1) > 1 else "")
        )
    disturbed = [lab for lab in labels if busy(runs[lab].get("load"))]
    if disturbed:
        lines += [
            "",
            f"**Warning:** the machine was busy with other work during {', '.join(disturbed)} (other "
            "processes used more than a quarter of a core on average, or the load average stayed above "
            "the CPU count): wall times are inflated, compare shares rather than seconds, and rerun on "
            "a quiet machine.",
        ]
    lines.append("")
    head = "| part |" + "".join(
        f" {lab} s | {lab} share | {lab} peak RSS MB | {lab} it. 0 peak RSS MB |" for lab in labels
    )
    if len(labels) > 1:
        head += f" {labels[-1]} / {labels[0]} time |"
    lines += [head, "|---|" + "---|---|---|---|" * len(labels) + ("---|" if len(labels) > 1 else "")]

    def ratio(a, b):
        return f" {a / b:.2f}x |" if b and b > 0.005 else " – |"

    for n in MEMORY_NODES:
        row = f"| node `{n}` |"
        for lab in labels:
            r = runs[lab]
            sec = r["node_seconds"].get(n)
            row += (
                f" {sec:.2f} | {100 * sec / r['mean_iteration_wall_seconds']:.1f}% |"
                if sec is not None
                else " (in Kedro other) | – |"
            ) + f" {_fmt_mem(r, n)} | {_fmt_mem(r, n, 'iteration0_')} |"
        if len(labels) > 1:
            row += ratio(runs[labels[-1]]["node_seconds"].get(n) or 0, runs[labels[0]]["node_seconds"].get(n) or 0)
        lines.append(row)
    for key, label in OVERHEAD_PARTS:
        row = f"| {label} |"
        for lab in labels:
            r = runs[lab]
            row += f" {r[key]:.2f} | {100 * r[key] / r['mean_iteration_wall_seconds']:.1f}% | | |"
        if len(labels) > 1:
            row += ratio(runs[labels[-1]][key], runs[labels[0]][key])
        lines.append(row)
    row = "| **iteration** |"
    for lab in labels:
        r = runs[lab]
        row += (
            f" **{r['mean_iteration_wall_seconds']:.2f}** | 100% | {_num(r['peak_rss_mb'])} | "
            f"{_num(r.get('iteration0_peak_rss_mb'))} |"
        )
    if len(labels) > 1:
        row += ratio(runs[labels[-1]]["mean_iteration_wall_seconds"], runs[labels[0]]["mean_iteration_wall_seconds"])
    lines += [row, ""]
    for lab in labels:
        r = runs[lab]
        lines.append(
            f"- {lab}: Kedro + Parquet/checkpoint I/O overhead (loads, saves, session/catalog/hooks/"
            f"kedro-mlflow) {100 * r['kedro_parquet_overhead_share']:.1f}% of an iteration; with the "
            f"training loop's bookkeeping, everything but the nodes: {100 * r['overhead_share']:.1f}%."
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument(
        "--params",
        default="",
        help="params for every size, as `kedro run --params`: prime.a=1,prime.b=2 (e.g. prime.rollout_engine=hf)",
    )
    ap.add_argument(
        "--scale",
        type=int,
        nargs="+",
        default=[1, 4],
        metavar="K",
        help="batch multipliers of prime.prompts_per_step, one fresh project each (default: 1 4)",
    )
    ap.add_argument(
        "--scale-mini-batches",
        action="store_true",
        help="also multiply prime.ppo_mini_batch and prime.prm_mini_batch (same optimizer steps)",
    )
    ap.add_argument(
        "--retries",
        type=int,
        default=1,
        help=f"rerun a size measured while other work used the machine (over {BUSY_OTHER_CORES} cores on "
        "average) up to this many times, keeping the fastest run (default 1)",
    )
    ap.add_argument("--from-json", type=Path, help="re-render the tables of an earlier result; runs nothing")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/stage_timing")
    args = ap.parse_args(argv)
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        args.out.parent.mkdir(parents=True, exist_ok=True)
        md = render_markdown(result)
        args.out.with_suffix(".md").write_text(md)
        print(md)
        return
    command = " ".join(["python benchmarks/stage_timing.py", *(sys.argv[1:] if argv is None else argv)])
    result: dict = {
        "command": command,
        "iterations": args.iterations,
        "params": args.params,
        "scales": args.scale,
        "scale_mini_batches": args.scale_mini_batches,
        "by_scale": {},
    }
    for k in args.scale:
        label = f"{k}x"
        params = scaled_params(args.params, k, args.scale_mini_batches)
        best = None
        for attempt in range(1 + max(0, args.retries)):
            project = fresh_project(Path(tempfile.mkdtemp(prefix=f"eurus_prime_timing_{label}_")), with_sft_from=ROOT)
            print(
                f"[{label}]{' (again: busy machine)' if attempt else ''} eurus-prime train --iterations "
                f"{args.iterations} --params {params}  ({project})",
                flush=True,
            )
            seconds, load = run_train(project, args.iterations, params)
            iters = per_iteration(train_log(project))
            summary = {
                "scale": k,
                "params": params,
                "project": str(project),
                "run_seconds": round(seconds, 1),
                "load": load,
                **summarise(iters),
                "per_iteration": iters,
            }
            print(
                f"[{label}] {summary['mean_iteration_wall_seconds']:.1f} s per iteration, peak RSS "
                f"{summary['peak_rss_mb']} MB ({seconds:.0f} s in all; other work used "
                f"{_num(load.get('other_cores'), '{:.2f}')} cores)",
                flush=True,
            )
            # other work only ever slows a run down: the fastest is the least disturbed
            if best is None or summary["mean_iteration_wall_seconds"] < best["mean_iteration_wall_seconds"]:
                best = summary
            if not busy(load):
                break
        best["attempts"] = attempt + 1
        result["by_scale"][label] = best
    first = next(iter(result["by_scale"].values()))
    legacy = {k: v for k, v in first.items() if k not in ("scale", "project")}
    out = {"command": result["command"], "iterations": args.iterations, **legacy, **result}
    write_json(args.out.with_suffix(".json"), out)
    md = render_markdown(result)
    args.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
