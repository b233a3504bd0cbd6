"""Learning curves on the tiny world: PRIME vs outcome-only RLOO vs continued SFT, equal wall time.

    python benchmarks/learning_curve.py --minutes 5 --seeds 0 1 2      # ~1 hour on 2 cores

Needs the bootstrap (``make train`` or ``kedro run --pipelines=bootstrap``) in this checkout: every
arm starts from its converged SFT checkpoint. For each seed and arm, on a fresh copy of the project:

- ``prime``: ``eurus-prime train --time-budget T`` (the real training command: Kedro sessions,
  Parquet tables, checkpoints, MLflow), with ``prime.seed=<seed>``;
- ``rloo``: the same with ``prime.process_coef=0`` (the paper's outcome-only RLOO baseline);
- ``sft``: the control. SFT continues from the checkpoint on the same demonstrations at a constant
  ``--control-lr`` for the same wall time T, in chunks of T/points (the last weights of each chunk
  are evaluated and carried on; AdamW restarts per chunk).

Wall time counts training only. At ``--points`` equally spaced times the newest checkpoint finished
by then is evaluated afterwards (greedy pass@1, the first ``--eval-items`` held-out test prompts).
In-loop evaluation is off (``prime.eval_every=0``) so that no arm pays for measuring.
Results: ``benchmarks/results/learning_curve.{csv,json,md,png}``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import (  # noqa: E402
    ROOT,
    catalog_and_params,
    finished_iterations,
    fresh_project,
    per_arm_and_point,
    policy_after,
    run_logged,
    sft_checkpoint_row,
    train_command,
    train_log,
    write_json,
    write_markdown,
)

ARMS = {"prime": "prime.process_coef=1.0", "rloo": "prime.process_coef=0.0"}


def _evaluate(model, tok, test, n_items: int) -> dict:
    from eurus_prime.eval.evaluation import EvalConfig, evaluate_prompts

    items = evaluate_prompts(model, tok, test.head(n_items), EvalConfig(max_new_tokens=128, batch_size=128))
    out = {"acc_all": float(items["correct"].mean())}
    for ability, g in items.groupby("ability"):
        out[f"acc_{ability}"] = float(g["correct"].mean())
    return out


def _rl_arm(arm: str, seed: int, project: Path, seconds: float, extra: str) -> list[dict]:
    # Every iteration's policy is evaluated afterwards: keep all checkpoints (no retention).
    params = f"prime.seed={seed},prime.eval_every=0,train.keep_checkpoints=null,{ARMS[arm]}" + (
        f",{extra}" if extra else ""
    )
    cmd = train_command(project, 100000, params, time_budget=seconds)
    if run_logged(cmd, project, monitor=False)[0]:
        raise RuntimeError(f"{arm} seed {seed} failed; see {project / 'train.log'}")
    return train_log(project)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="wall time of each arm's training")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=["sft", "prime", "rloo"], choices=["sft", *ARMS])
    ap.add_argument("--points", type=int, default=5, help="evaluations per arm, equally spaced in time")
    ap.add_argument("--eval-items", type=int, default=1000)
    ap.add_argument("--control-lr", type=float, default=4e-4, help="continued-SFT learning rate (0.1x SFT peak)")
    ap.add_argument("--params", default="", help="extra prime params for both RL arms, a=1,b=2")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/learning_curve")
    ap.add_argument("--summarise-only", action="store_true", help="rebuild json/md/png from the csv")
    args = ap.parse_args()
    if args.summarise_only:
        import pandas as pd

        summarise(pd.read_csv(args.out.with_suffix(".csv")), args)
        return
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    import pandas as pd
    import torch

    from eurus_prime.engines.sft import SFTConfig, split_examples, tokenize_demonstrations, train_sft
    from eurus_prime.tasks.prompting import render_prompt

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="eurus_prime_curve_"))
    seconds = args.minutes * 60
    catalog, params = catalog_and_params(ROOT)
    sft, test, demos = catalog.load("sft_model"), catalog.load("prompts_test"), catalog.load("sft_demonstrations")
    tok = sft.tokenizer
    base = sft_checkpoint_row(_evaluate(sft.model, tok, test, args.eval_items))
    rows = [base]
    print(json.dumps(base), flush=True)
    csv = args.out.with_suffix(".csv")
    csv.parent.mkdir(parents=True, exist_ok=True)
    times = [seconds * k / args.points for k in range(1, args.points + 1)]

    for seed in args.seeds:
        for arm in args.arms:
            t0 = time.perf_counter()
            if arm == "sft":
                sft_cfg = params["sft"] if isinstance(params["sft"], SFTConfig) else SFTConfig(**params["sft"])
                examples = tokenize_demonstrations(
                    tok,
                    [render_prompt(tok, list(p)) for p in demos["prompt"]],
                    demos["response"].tolist(),
                    sft.model.config.max_position_embeddings,
                )
                train, val = split_examples(examples, sft_cfg)
                model = copy.deepcopy(sft.model)
                torch.manual_seed(seed)
                steps = 0
                for k, t in enumerate(times, start=1):
                    cfg = dataclasses.replace(
                        sft_cfg,
                        lr=args.control_lr,
                        min_lr_ratio=1.0,
                        warmup_fraction=0.0,
                        epochs=100.0,
                        seed=1000 * seed + k,
                        eval_every=10**9,
                        keep_best=False,
                        max_seconds=seconds / args.points,
                    )
                    hist = train_sft(model, train, val, tok.pad_token_id, cfg)
                    steps += int(hist[-1]["step"])
                    rows.append(
                        {
                            "arm": arm,
                            "seed": seed,
                            "point": k,
                            "seconds": t,
                            "iteration": steps,
                            "rollouts": 0,
                            **_evaluate(model, tok, test, args.eval_items),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
            else:
                project = fresh_project(workdir / f"{arm}_s{seed}", with_sft_from=ROOT)
                done = finished_iterations(_rl_arm(arm, seed, project, seconds, args.params))
                for k, t in enumerate(times, start=1):
                    finished = [d for d in done if d[0] <= t + 1e-6] or [None]
                    last = finished[-1]
                    if last is None:
                        metrics, it, ro = {k2: base[k2] for k2 in base if k2.startswith("acc_")}, -1, 0
                    else:
                        _, it, ro = last
                        metrics = _evaluate(policy_after(project, it), tok, test, args.eval_items)
                    rows.append(
                        {"arm": arm, "seed": seed, "point": k, "seconds": t, "iteration": it, "rollouts": ro, **metrics}
                    )
                    print(json.dumps(rows[-1]), flush=True)
            print(f"# {arm} seed {seed}: {time.perf_counter() - t0:.0f} s including evaluation", flush=True)
            pd.DataFrame(rows).to_csv(csv, index=False)
    summarise(pd.DataFrame(rows), args)


def summarise(df, args) -> None:
    """Mean and spread per arm and point; gains; sample efficiency; plot."""
    import numpy as np

    base = df[df["arm"] == "sft_checkpoint"].iloc[0]
    curves = per_arm_and_point(
        df,
        seconds=("seconds", "first"),
        mean=("acc_all", "mean"),
        min=("acc_all", "min"),
        max=("acc_all", "max"),
        std=("acc_all", "std"),
        rollouts=("rollouts", "mean"),
        seeds=("seed", "nunique"),
    )
    final = curves[curves["point"] == curves["point"].max()].set_index("arm")
    summary = {
        "command": "python benchmarks/learning_curve.py "
        + " ".join(a for a in sys.argv[1:] if a != "--summarise-only"),
        "minutes_per_arm": args.minutes,
        "eval_items": args.eval_items,
        "seeds": args.seeds,
        "sft_checkpoint_accuracy": float(base["acc_all"]),
        "final": {
            arm: {
                "mean": round(float(r["mean"]), 4),
                "min": round(float(r["min"]), 4),
                "max": round(float(r["max"]), 4),
                "gain_over_sft_points": round(100 * (r["mean"] - base["acc_all"]), 2),
            }
            for arm, r in final.iterrows()
        },
    }
    if "sft" in final.index:
        for arm in final.index:
            summary["final"][arm]["gain_over_control_points"] = round(
                100 * (final.loc[arm, "mean"] - final.loc["sft", "mean"]), 2
            )
    if {"prime", "rloo"} <= set(final.index):
        target = final.loc["rloo", "mean"]
        prime = curves[curves["arm"] == "prime"].sort_values("point")
        reached = prime[prime["mean"] >= target]
        summary["sample_efficiency"] = {
            "rloo_final_accuracy": round(float(target), 4),
            "rloo_rollouts": round(float(final.loc["rloo", "rollouts"])),
            "prime_rollouts_to_reach_it": None if reached.empty else round(float(reached.iloc[0]["rollouts"])),
            "ratio": None
            if reached.empty
            else round(float(reached.iloc[0]["rollouts"] / final.loc["rloo", "rollouts"]), 3),
            "resolution": f"{args.points} evaluation points per arm",
        }
        # RLOO's final accuracy is a plateau both arms reach, so also compare the rollouts each
        # arm needs to reach fixed shares of RLOO's final gain (per seed, linear interpolation
        # between evaluation points, then the mean over seeds).
        gain = target - base["acc_all"]
        thresholds = {}
        for share in (0.5, 0.8, 0.9):
            level = base["acc_all"] + share * gain
            per_arm = {}
            for arm in ("prime", "rloo"):
                needs = []
                for _, g in df[df["arm"] == arm].groupby("seed"):
                    g = g.sort_values("point")
                    xs = np.concatenate([[0.0], g["rollouts"].to_numpy(float)])
                    ys = np.concatenate([[base["acc_all"]], g["acc_all"].to_numpy(float)])
                    hit = np.flatnonzero(ys >= level)
                    if len(hit) == 0:
                        needs.append(float("nan"))
                        continue
                    j = hit[0]
                    x = xs[j] if j == 0 else xs[j - 1] + (level - ys[j - 1]) / (ys[j] - ys[j - 1]) * (xs[j] - xs[j - 1])
                    needs.append(float(x))
                per_arm[arm] = needs
            thresholds[f"{int(share * 100)}%_of_rloo_gain"] = {
                "accuracy": round(float(level), 4),
                "prime_rollouts_per_seed": [round(x) if x == x else None for x in per_arm["prime"]],
                "rloo_rollouts_per_seed": [round(x) if x == x else None for x in per_arm["rloo"]],
                "ratio_of_means": round(float(np.nanmean(per_arm["prime"]) / np.nanmean(per_arm["rloo"])), 3),
            }
        summary["sample_efficiency"]["rollouts_to_reach"] = thresholds
    write_json(args.out.with_suffix(".json"), summary)
    lines = [
        "# Learning curves (tiny world)",
        "",
        f"Command: `{summary['command']}`",
        "",
        f"SFT checkpoint: {100 * base['acc_all']:.1f}% greedy pass@1 on {args.eval_items} held-out test prompts.",
        "",
        "| arm | point | seconds | mean | min | max | rollouts | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in curves.itertuples():
        lines.append(
            f"| {r.arm} | {r.point} | {r.seconds:.0f} | {100 * r.mean:.1f} | {100 * r.min:.1f} | "
            f"{100 * r.max:.1f} | {r.rollouts:.0f} | {r.seeds} |"
        )
    lines += ["", "```json", json.dumps(summary, indent=1), "```"]
    write_markdown(args.out.with_suffix(".md"), lines)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for arm, g in curves.groupby("arm"):
        x = np.concatenate([[0], g["seconds"] / 60])
        y = 100 * np.concatenate([[base["acc_all"]], g["mean"]])
        lo = 100 * np.concatenate([[base["acc_all"]], g["min"]])
        hi = 100 * np.concatenate([[base["acc_all"]], g["max"]])
        ax.plot(
            x,
            y,
            marker="o",
            label={"sft": "continued SFT (control)", "rloo": "RLOO (outcome only)", "prime": "PRIME"}.get(arm, arm),
        )
        ax.fill_between(x, lo, hi, alpha=0.2)
    ax.set_xlabel("training wall time (minutes, 2 CPU cores)")
    ax.set_ylabel(f"held-out greedy pass@1 (%, {args.eval_items} items)")
    ax.set_title("tiny world: mean and min-max over seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    main()
