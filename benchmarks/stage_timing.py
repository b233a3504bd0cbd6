"""Where an iteration's wall time goes: each node's own work, dataset I/O, and the rest of Kedro.

    python benchmarks/stage_timing.py --iterations 4        # ~2-3 minutes on 2 cores

Runs ``eurus-prime train --iterations N`` (default config) on a fresh copy of the project that has
this checkout's SFT model, then reads ``data/08_reporting/train_log.jsonl``:

- ``time/<node>``: seconds inside each node function (the algorithm's work);
- ``time/io_load`` / ``time/io_save``: seconds in dataset loads and saves (Parquet tables, HF
  checkpoint folders; measured by ``hooks.IOTimingHooks``);
- ``seconds``: the whole Kedro session of the iteration. What is left after nodes and I/O is
  Kedro itself (session, config, catalog, hooks, kedro-mlflow logging);
- the loop's own bookkeeping between iterations (stage checks, MLflow campaign copy) is the gap
  between consecutive ``elapsed`` values and ``seconds``.

Iteration 0 is reported but excluded from the means (first-call warm-up). Results:
``benchmarks/results/stage_timing.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import ROOT, fresh_project  # noqa: E402

NODES = ("generate_rollouts", "verify_outcomes", "filter_prompts", "compute_process_rewards", "update_prm",
         "estimate_advantages", "update_policy", "evaluate_policy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--params", default="", help="prime params, a=1,b=2")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/stage_timing")
    args = ap.parse_args()
    project = fresh_project(Path(tempfile.mkdtemp(prefix="eurus_prime_timing_")), with_sft_from=ROOT)
    cmd = [str(Path(sys.executable).with_name("eurus-prime")), "train", "--project", str(project),
           "--iterations", str(args.iterations)] + (["--params", args.params] if args.params else [])
    env = {**os.environ, "TQDM_DISABLE": "1", "KEDRO_DISABLE_TELEMETRY": "1"}
    with open(project / "train.log", "w") as log:
        subprocess.run(cmd, cwd=project, stdout=log, stderr=subprocess.STDOUT, env=env, check=True)
    rows = [json.loads(x) for x in (project / "data/08_reporting/train_log.jsonl").read_text().splitlines()]
    per_iter = []
    prev_elapsed = 0.0
    for r in rows:
        nodes = {n: r.get(f"time/{n}", 0.0) for n in NODES}
        io = r.get("time/io_load", 0.0) + r.get("time/io_save", 0.0)
        per_iter.append({
            "iteration": r["iteration"], "session_seconds": r["seconds"], "nodes": nodes,
            "node_seconds": sum(nodes.values()), "io_load": r.get("time/io_load", 0.0),
            "io_save": r.get("time/io_save", 0.0),
            "kedro_other": r["seconds"] - sum(nodes.values()) - io,
            "loop_bookkeeping": r["elapsed"] - prev_elapsed - r["seconds"],
        })
        prev_elapsed = r["elapsed"]
    steady = per_iter[1:] or per_iter

    def mean(key, sub=None):
        vals = [(p[key][sub] if sub else p[key]) for p in steady]
        return sum(vals) / len(vals)

    wall = mean("session_seconds") + mean("loop_bookkeeping")
    summary = {
        "command": "python benchmarks/stage_timing.py " + " ".join(sys.argv[1:]),
        "iterations": args.iterations,
        "mean_iteration_wall_seconds": round(wall, 2),
        "node_seconds": {n: round(mean("nodes", n), 2) for n in NODES},
        "io_load_seconds": round(mean("io_load"), 2),
        "io_save_seconds": round(mean("io_save"), 2),
        "kedro_other_seconds": round(mean("kedro_other"), 2),
        "loop_bookkeeping_seconds": round(mean("loop_bookkeeping"), 2),
    }
    overhead = summary["io_load_seconds"] + summary["io_save_seconds"] + summary["kedro_other_seconds"] \
        + summary["loop_bookkeeping_seconds"]
    summary["overhead_share"] = round(overhead / wall, 4)
    summary["per_iteration"] = per_iter
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = ["# Stage timing (tiny world, default config)", "", f"Command: `{summary['command']}`", "",
             f"Mean over iterations 1..{args.iterations - 1} (iteration 0 is warm-up): "
             f"{wall:.1f} s per iteration.", "", "| part | seconds | share |", "|---|---|---|"]
    for n in NODES:
        lines.append(f"| node `{n}` | {summary['node_seconds'][n]:.2f} | {100 * summary['node_seconds'][n] / wall:.1f}% |")
    for key, label in (("io_load_seconds", "dataset loads (Parquet, checkpoints)"),
                       ("io_save_seconds", "dataset saves (Parquet, checkpoints)"),
                       ("kedro_other_seconds", "Kedro session, catalog, hooks, kedro-mlflow"),
                       ("loop_bookkeeping_seconds", "training loop: stage checks, MLflow campaign")):
        lines.append(f"| {label} | {summary[key]:.2f} | {100 * summary[key] / wall:.1f}% |")
    lines += ["", f"Overhead (everything but the nodes): {100 * summary['overhead_share']:.1f}% of an iteration.", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
