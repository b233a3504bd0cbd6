"""Code-verifier throughput: sandboxed runs per second, and the sandbox's cost vs a bare subprocess.

Trivial programs, one test each, graded with a thread pool (the verifier waits on child
processes, so threads use all cores). Four configurations measured side by side in one run, same
harness, same programs, interleaved in rounds so that machine noise hits them alike:

* ``sandbox``  - ``grade_code`` as used in the pipeline: bubblewrap with the fork server (one warm
  interpreter per sandbox forks a fresh process per program; else the rlimits fall-back);
* ``sandbox_oneshot`` - bubblewrap with one sandbox and one interpreter per program
  (``EURUS_PRIME_SANDBOX_SERVER=0``, the design before the fork server);
* ``fallback`` - the rlimits fall-back (own session, rlimits, uid drop, netns) without bwrap;
* ``bare``     - ``python -I -c HARNESS`` with no sandbox (no bwrap, no uid, no netns).

Usage: .venv/bin/python benchmarks/verifier_code.py [--n 400] [--workers 2] [--rounds 3]
Writes benchmarks/results/verifier_code.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import RESULTS, ROOT, write_json, write_markdown  # noqa: E402

sys.path.insert(0, str(ROOT / "src"))

from eurus_prime.verifiers import sandbox  # noqa: E402
from eurus_prime.verifiers.code import grade_code_with  # noqa: E402

GOAL_PER_S = 200.0
PROGRAMS = [
    ("```python\nprint(int(input()) * 2)\n```", {"inputs": ["3\n"], "outputs": ["6\n"]}),
    ("```python\ndef f(x):\n    return x + 1\n```", {"fn_name": "f", "inputs": [[1]], "outputs": [2]}),
]


def measure(mode: str, n: int, workers: int) -> dict:
    info = sandbox.fallback_info() if mode == "fallback" else sandbox.sandbox_info()
    os.environ["EURUS_PRIME_SANDBOX_SERVER"] = "0" if mode == "sandbox_oneshot" else "1"
    jobs = [PROGRAMS[i % len(PROGRAMS)] for i in range(n)]

    def one(job):
        resp, gt = job
        t = time.perf_counter()
        v = grade_code_with(resp, json.dumps(gt), info=info, bare=(mode == "bare"))
        return v, time.perf_counter() - t

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = list(pool.map(one, jobs))
    wall = time.perf_counter() - t0
    verdicts = [v for v, _ in done]
    assert all(v.correct for v in verdicts), [v for v in verdicts if not v.correct][:1]
    lat = [t for _, t in done]
    return {
        "mode": mode,
        "isolation": verdicts[0].isolation,
        "verifier": verdicts[0].verifier,
        "n": n,
        "workers": workers,
        "wall_s": round(wall, 3),
        "runs_per_s": round(n / wall, 1),
        "latency_median_s": round(statistics.median(lat), 4),
        "latency_p95_s": round(sorted(lat)[int(0.95 * (len(lat) - 1))], 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    modes = ["sandbox", "sandbox_oneshot", "fallback", "bare"]
    for m in modes:  # warm-up (probe, page cache)
        measure(m, 4, args.workers)
    rows: dict[str, list[dict]] = {m: [] for m in modes}
    for _ in range(args.rounds):
        for m in modes:
            rows[m].append(measure(m, args.n, args.workers))
    summary = {}
    for m in modes:
        rates = [r["runs_per_s"] for r in rows[m]]
        summary[m] = {
            "isolation": rows[m][0]["isolation"],
            "verifier": rows[m][0]["verifier"],
            "runs_per_s_median": statistics.median(rates),
            "runs_per_s_all": rates,
            "latency_median_s": statistics.median(r["latency_median_s"] for r in rows[m]),
        }
    bare = summary["bare"]["runs_per_s_median"]
    for m in modes:
        summary[m]["cost_vs_bare"] = round(bare / summary[m]["runs_per_s_median"], 2)
    result = {
        "command": "KEDRO_DISABLE_TELEMETRY=1 TQDM_DISABLE=1 .venv/bin/python benchmarks/verifier_code.py "
        f"--n {args.n} --workers {args.workers} --rounds {args.rounds}",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "goal_runs_per_s": GOAL_PER_S,
        "meets_goal": summary["sandbox"]["runs_per_s_median"] >= GOAL_PER_S,
        "summary": summary,
        "rounds": rows,
    }
    write_json(RESULTS / "verifier_code.json", result, indent=2)
    lines = [
        "# Code verifier throughput",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, kernel "
        f"{platform.release()}. Trivial programs, one test each, {args.n} per round, "
        f"{args.rounds} rounds interleaved, thread pool of {args.workers}.",
        "",
        "| mode | isolation | runs/s (median) | per-round | median latency (s) | cost vs bare |",
        "|---|---|---|---|---|---|",
    ]
    for m in modes:
        s = summary[m]
        lines.append(
            f"| {m} | `{s['isolation']}` | {s['runs_per_s_median']} | "
            f"{s['runs_per_s_all']} | {s['latency_median_s']} | {s['cost_vs_bare']}x |"
        )
    lines += ["", f"Goal >= {GOAL_PER_S:.0f} runs/s sandboxed: {'met' if result['meets_goal'] else 'NOT met'}."]
    write_markdown(RESULTS / "verifier_code.md", lines, echo=True)


if __name__ == "__main__":
    main()
