"""The PRIME paper's Table 4 on our worlds: each base RL algorithm without and with PRIME's
implicit process rewards, and the implicit PRM as a value model.

Every run is ``credit_assignment.py``'s protocol: the same SFT model, ``eurus-prime train`` for a
fixed number of iterations per arm and seed (equal rollouts drawn, the paper's equal steps; not
equal wall time, which a shared machine cannot hold equal: the wall times are recorded beside),
then greedy pass@1 on the first 1,000 test prompts. The arms are ``credit_assignment.ARMS``: each
base algorithm with ``process_coef=0`` and with the world's implicit PRM, and ``prm_value``.

The converged chains model (``conf/chains``, ``sft.seed: 2``), 6 iterations: RLOO's two rows are
``results/chains_arms``' ``rloo`` and ``prime`` (18-iteration runs of the same protocol, cut to
their first 6 iterations and their evaluation after iteration 5 by ``--iterations 6``)::

    python benchmarks/credit_assignment.py --sft-from <chains project> --iterations 6 --points 1 \\
        --eval-items 1000 --seeds 0 1 2 --arms reinforce reinforce_prime grpo grpo_prime ppo ppo_prime \\
        prm_value --out benchmarks/results/table4_chains_runs
    python benchmarks/table4.py --runs benchmarks/results/table4_chains_runs \\
        --reuse benchmarks/results/chains_arms:rloo,prime=rloo_prime --iterations 6 --ma 3 \\
        --out benchmarks/results/table4_chains

The tiny world (``conf/base``, its tuned PRM), 6 iterations: the outcome-only arms of the earlier
12-iteration tiny runs join, cut to 6 (they do not read the PRM; a repeated seed reproduces them)::

    python benchmarks/credit_assignment.py --env base --sft-from <tiny project> --iterations 6 --points 1 \\
        --eval-items 1000 --max-new-tokens 128 --seeds 0 1 2 --arms rloo rloo_prime reinforce \\
        reinforce_prime grpo grpo_prime ppo ppo_prime prm_value --out benchmarks/results/table4_tiny_tuned_runs
    python benchmarks/table4.py --env base --runs benchmarks/results/table4_tiny_tuned_runs \\
        --reuse benchmarks/results/table4_tiny_runs:rloo,reinforce,grpo,ppo \\
        benchmarks/results/tiny_arms_tuned:rloo_prime --iterations 6 --ma 3 --out benchmarks/results/table4_tiny_tuned

(``benchmarks/README.md`` lists which seeds each command ran.) ``--ma 3``: the training level's
moving average spans 3 iterations, since with 6 a 10-iteration mean is the whole run's. Earlier tables, kept: the chains
model of commit 944dcbc (lost), 18 iterations, ``--params prime.filter_mode=single_draw,
prime.buffer_max_staleness=0`` (``results/table4``, RLOO's rows from ``results/credit_assignment``:
``python benchmarks/table4.py``); the tiny world with its earlier PRM (mini-batch 256, lr 1e-4), 12
iterations (``results/table4_tiny``: ``--runs benchmarks/results/table4_tiny_runs --reuse none``).

Per row: held-out pass@1 (all prompts and the novel split; mean over seeds, and the range), the
difference PRIME makes beside the seed spread, and the rollouts each arm needs to reach a fixed
training verify score (``--ma``-iteration moving average): 80% of the way from the SFT model's score
at iteration 0 to RLOO's final one, the level ``credit_assignment.py`` uses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import ROOT, write_json, write_markdown  # noqa: E402
from credit_assignment import MA, _reach_per_seed, merge_frames, read_result, world_name  # noqa: E402

#: Table rows: (base algorithm, arm without process rewards, arm with PRIME's).
ROWS = (
    ("RLOO", "rloo", "rloo_prime"),
    ("REINFORCE", "reinforce", "reinforce_prime"),
    ("GRPO", "grpo", "grpo_prime"),
    ("PPO (GAE)", "ppo", "ppo_prime"),
)
#: The paper's Table 4 (held-out average over its benchmarks, 240 steps).
PAPER = {"RLOO": (36.9, 41.0), "REINFORCE": (36.0, 37.8), "GRPO": (36.1, 37.8), "PPO (GAE)": (35.8, 39.4)}
PAPER_PRM_VALUE = 36.6
#: The default ``--reuse``: RLOO's two arms from credit_assignment.csv, renamed.
DEFAULT_REUSE = f"{ROOT}/benchmarks/results/credit_assignment:rloo,prime_mb16=rloo_prime"


def _truncate(rows, iters, iterations: int | None, source: str):
    """The evaluations at iteration ``iterations - 1`` (as point 1) and the iteration rows before
    it (all of them, and the last evaluation point, when None). Every (arm, seed) trained must
    have that evaluation."""
    sft = rows["arm"] == "sft_checkpoint"
    if iterations is None:
        return rows[sft | (rows["point"] == rows["point"].max())], iters
    iters = iters[iters["iteration"] < iterations]
    kept = rows[sft | (rows["iteration"] == iterations - 1)].copy()
    kept.loc[kept["arm"] != "sft_checkpoint", "point"] = 1
    unevaluated = sorted(set(zip(iters["arm"], iters["seed"])) - set(zip(kept["arm"], kept["seed"])))
    if unevaluated:
        arm, seed = unevaluated[0]
        at = sorted(int(i) for i in rows["iteration"][(rows["arm"] == arm) & (rows["seed"] == seed)])
        raise ValueError(
            f"{source}: {arm} seed {seed} has no held-out evaluation at iteration {iterations - 1} "
            f"(--iterations {iterations}); its evaluations are at iterations {at}"
        )
    return kept, iters


def load(runs: str | Path | list, reuse: list[str] | None = None, iterations: int | None = None):
    """The held-out rows (one evaluation per arm and seed, plus the SFT model's) and iteration rows
    of ``runs`` (``credit_assignment.py --out`` prefixes) and ``reuse`` (``PREFIX:ARM[=NEW],...``:
    those arms of another result, renamed). With ``iterations``, every run is cut to its first
    ``iterations`` iterations and its evaluation after them, so longer runs of the same protocol
    join shorter ones. An (arm, seed) found in several sources must agree on its evaluation and
    training scores (a check that the runs reproduce); it is kept once (``merge_frames``)."""
    specs = [*([runs] if isinstance(runs, (str, Path)) else runs), *(reuse or [])]
    parts = []
    for spec in specs:
        rows, iters = read_result(spec)
        parts.append((str(spec), *_truncate(rows, iters, iterations, str(spec))))
    return merge_frames(parts)


def summarise(rows, iters, ma: int = MA) -> dict:
    """The table: per row, each arm's held-out pass@1 over seeds, PRIME's gain beside the seed
    spread, and the rollouts to a training level (``ma``-iteration moving average)."""
    import numpy as np

    final = rows[rows["arm"] != "sft_checkpoint"]  # load(): one evaluation per arm and seed
    iters = iters.sort_values(["arm", "seed", "iteration"]).copy()
    iters["train_ma"] = iters.groupby(["arm", "seed"])["train_verify_score/all"].transform(
        lambda s: s.rolling(ma, min_periods=1).mean()
    )
    last = iters.groupby(["arm", "seed"]).tail(1)
    start = float(iters[iters["iteration"] == 0]["train_verify_score/all"].mean())
    rloo_final = float(last[last["arm"] == "rloo"]["train_ma"].mean())
    level = start + 0.8 * (rloo_final - start)
    mean_train = iters.groupby(["arm", "seed"])["train_verify_score/all"].mean()

    def arm_stats(arm: str) -> dict | None:
        g = final[final["arm"] == arm]
        if g.empty:
            return None
        reach = _reach_per_seed(iters[iters["arm"] == arm], "rollouts", level)
        return {
            "seeds": sorted(int(s) for s in g["seed"]),
            "acc_all": round(float(g["acc_all"].mean()), 4),
            "acc_all_per_seed": [round(float(v), 4) for v in g["acc_all"]],
            "acc_novel": round(float(g["acc_novel"].mean()), 4),
            "spread": round(float(g["acc_all"].max() - g["acc_all"].min()), 4),
            "final_train_ma": round(float(last[last["arm"] == arm]["train_ma"].mean()), 4),
            # the area under the training curve: every iteration's score, mean over iterations, then seeds
            "train_mean": round(float(mean_train[arm].mean()), 4),
            "train_mean_per_seed": [round(float(v), 4) for v in mean_train[arm]],
            "rollouts_to_level_per_seed": [None if x != x else round(x) for x in reach],
            "rollouts_to_level": None if all(x != x for x in reach) else round(float(np.nanmean(reach))),
            "reached_in_seeds": int(sum(x == x for x in reach)),
        }

    out: dict = {
        "level": round(level, 4),
        "moving_average": ma,
        "start_train_score": round(start, 4),
        "iterations": int(final["iteration"].max()) + 1,
        "rollouts": int(round(float(final["rollouts"].mean()))),
        "eval_items": int(final[["n_id", "n_novel"]].sum(axis=1).max()),
        "rows": {},
        "paper": PAPER,
    }
    rloo = arm_stats("rloo")
    for name, without, with_prime in ROWS:
        a, b = arm_stats(without), arm_stats(with_prime)
        entry: dict = {"without": a, "with_prime": b}
        if a and b:
            diff = b["acc_all"] - a["acc_all"]
            entry["prime_gain"] = round(diff, 4)
            # The spread across seeds of the pair's arms; where an arm has one seed, RLOO's (3 seeds):
            # one seed says nothing about its own spread.
            # With one seed everywhere the spread is unknown, and so is whether the gain exceeds it.
            measured = [x["spread"] for x in (a, b) if len(x["seeds"]) > 1]
            if len(measured) == 2:
                entry["spread_yardstick"], entry["spread_from"] = round(max(measured), 4), "this pair"
            elif rloo is not None and len(rloo["seeds"]) > 1:
                entry["spread_yardstick"], entry["spread_from"] = rloo["spread"], f"RLOO's {len(rloo['seeds'])} seeds"
            elif measured:
                entry["spread_yardstick"], entry["spread_from"] = round(max(measured), 4), "one arm of this pair"
            else:
                entry["spread_yardstick"], entry["spread_from"] = None, "one seed: unknown"
            yardstick = entry["spread_yardstick"]
            entry["gain_beyond_spread"] = None if yardstick is None else bool(abs(diff) > yardstick)
        out["rows"][name] = entry
    out["prm_value"] = arm_stats("prm_value")
    out["paper_prm_value"] = PAPER_PRM_VALUE
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def _cell(s: dict | None) -> str:
    if s is None:
        return "not run"
    lo, hi = min(s["acc_all_per_seed"]), max(s["acc_all_per_seed"])
    spread = f" ({100 * lo:.1f}-{100 * hi:.1f})" if len(s["seeds"]) > 1 else ""
    return f"{_pct(s['acc_all'])}{spread}, novel {_pct(s['acc_novel'])}, {len(s['seeds'])} seed(s)"


def _beyond(entry: dict) -> str:
    if entry["gain_beyond_spread"] is None:
        return f"n/a ({entry['spread_from']})"
    yes = "yes" if entry["gain_beyond_spread"] else "no"
    return f"{yes} ({100 * entry['spread_yardstick']:.1f}, {entry['spread_from']})"


def _train_cell(s: dict | None) -> str:
    if s is None:
        return "-"
    lo, hi = min(s["train_mean_per_seed"]), max(s["train_mean_per_seed"])
    return f"{_pct(s['train_mean'])}" + (f" ({100 * lo:.1f}-{100 * hi:.1f})" if len(s["seeds"]) > 1 else "")


def _reach_cell(s: dict | None) -> str:
    if s is None:
        return "-"
    if s["rollouts_to_level"] is None:
        return "not reached"
    return f"{s['rollouts_to_level']:,} ({s['reached_in_seeds']}/{len(s['seeds'])})"


def markdown(summary: dict, command: str, env: str) -> list[str]:
    lines = [
        f"# The PRIME paper's Table 4 on the {world_name(env)}",
        "",
        f"Commands: `{command}` (see the script's docstring for the runs).",
        "",
        f"Held-out greedy pass@1 on the first {summary['eval_items']:,} test prompts after {summary['iterations']} "
        f"iterations ({summary['rollouts']:,} rollouts, mean over arms and seeds), mean "
        f"over seeds with the range; rollouts to a training verify score ({summary['moving_average']}-iteration moving average) of "
        f"{100 * summary['level']:.1f}% (80% of RLOO's gain over iteration 0's {100 * summary['start_train_score']:.1f}%), "
        "mean over the seeds that reach it (reached/seeds).",
        "",
        "| base algorithm | without | with PRIME | PRIME's gain | beyond the seed spread (spread, from) | rollouts to level: without / with | training score, mean of all iterations: without / with | paper: without / with |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in summary["rows"].items():
        gain = entry.get("prime_gain")
        lines.append(
            f"| {name} | {_cell(entry['without'])} | {_cell(entry['with_prime'])} | "
            f"{'n/a' if gain is None else f'{100 * gain:+.1f}'} | "
            f"{'n/a' if gain is None else _beyond(entry)} | "
            f"{_reach_cell(entry['without'])} / {_reach_cell(entry['with_prime'])} | "
            f"{_train_cell(entry['without'])} / {_train_cell(entry['with_prime'])} | "
            f"{PAPER[name][0]} / {PAPER[name][1]} |"
        )
    pv = summary["prm_value"]
    lines += [
        f"| PRM as value (prm_value) | {_cell(pv)} | | | | {_reach_cell(pv)} | {_train_cell(pv)} | {PAPER_PRM_VALUE} |",
        "",
        "```json",
        json.dumps(summary, indent=1),
        "```",
    ]
    return lines


def _positive(text: str) -> int:
    """An argparse type: a whole number of iterations, at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of iterations, at least 1, got {text}")
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--runs",
        type=Path,
        nargs="+",
        default=[ROOT / "benchmarks/results/table4_runs"],
        help="credit_assignment.py --out prefixes",
    )
    ap.add_argument(
        "--reuse",
        nargs="+",
        default=[DEFAULT_REUSE],
        help="arms of other credit_assignment.py results, as PREFIX:ARM[=NEW],... ('none': only the runs')",
    )
    ap.add_argument(
        "--iterations",
        type=_positive,
        default=None,
        help="cut every run to its first N iterations and its held-out evaluation after them "
        "(default: each run's last evaluation)",
    )
    ap.add_argument("--env", default="chains", help="the Kedro environment the runs trained in (names the world)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/table4")
    ap.add_argument(
        "--ma",
        type=_positive,
        default=MA,
        help=f"moving-average window of the training score, in iterations (default {MA}, the paper's Fig. 3)",
    )
    args = ap.parse_args()
    rows, iters = load(args.runs, [] if args.reuse == ["none"] else args.reuse, args.iterations)
    summary = summarise(rows, iters, args.ma)
    write_json(args.out.with_suffix(".json"), summary)
    command = "python benchmarks/table4.py " + " ".join(sys.argv[1:])
    write_markdown(args.out.with_suffix(".md"), markdown(summary, command.strip(), args.env), echo=True)


if __name__ == "__main__":
    main()
