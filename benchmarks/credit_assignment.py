"""Does dense credit assignment pay? Oracle, PRIME and RFT against outcome-only RLOO, in the chains world
(the default), the countdown world (``--env countdown``) or the tiny world (``--env base``).

    python benchmarks/credit_assignment.py --sft-from /path/to/chains/project --minutes 8 --seeds 0 1 2
    python benchmarks/credit_assignment.py --sft-from ... --iterations 18 --seeds 0 1 2   # equal rollouts

``--sft-from`` is a project where ``kedro run --env chains --pipelines=bootstrap`` has run (default:
this checkout). For each seed and arm, on a fresh copy of the project with that bootstrap:
``eurus-prime train --env chains --time-budget T`` (the real training command; or ``--iterations N``
for the same number of iterations, hence rollouts drawn, per arm) with

- ``rloo``: ``prime.process_coef=0`` (the paper's outcome-only RLOO baseline);
- ``oracle``: ``prime.process_reward=oracle``: -1 on the tokens of the ground-truth first wrong
  step's first wrong field, through the same RLOO and returns;
- ``oracle_progress``: ``prime.process_reward=oracle_progress``: +1/n_steps on each step before
  the first wrong one;
- ``prime``: the implicit PRM, online (the defaults of conf/chains);
- ``prime_mb16``: the same with ``prime.prm_mini_batch=16`` (16 PRM steps per iteration, the
  setting benchmarks/prm_replay.py picked), whatever conf/chains says;
- ``prime_offline``: the PRM trains in the first ``--offline-after`` iterations, then is frozen;
- ``oracle_local``: the ``oracle`` reward with ``prime.process_gamma=0``: the -1 stays on the
  blamed tokens instead of reaching every earlier token through the returns (an ablation of
  PRIME's gamma-1 process returns, not the reference);
- ``rft``: rejection-sampling fine-tuning, same sampler, verifier and optimizer:
  ``prime.advantage_estimator=rft`` (weight 1 on accepted samples), every group with an accepted
  sample kept.

``--where 'traps == 3'`` restricts every arm's training prompts, and the test prompts, to those
whose ``extra_info`` matches (each arm project gets a new version of ``prompts_train``; the SFT
model is the same): a world where every task hangs on several traps.

Per iteration, the training log gives the training verify score (before filtering, as the paper's
Fig. 3), the rollouts and the PRM's quality on fresh rollouts. At ``--points`` equally spaced
times, the newest checkpoint finished by then is evaluated afterwards: greedy pass@1 on the first
``--eval-items`` test prompts, in-distribution and novel separately. In-loop evaluation is off.
Results: ``benchmarks/results/credit_assignment.{csv,json,md,png}`` (+ ``_iterations.csv``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import (  # noqa: E402
    ROOT,
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

RFT = "prime.advantage_estimator=rft,prime.process_coef=0.0,prime.filter_low=0.01,prime.filter_high=1.0"
ARMS = {
    "rloo": "prime.process_coef=0.0",
    "oracle": "prime.process_reward=oracle",
    "oracle_progress": "prime.process_reward=oracle_progress",
    "prime": "",
    "prime_mb16": "prime.prm_mini_batch=16",
    "prime_offline": "prime.prm_freeze_after={offline_after}",
    "rft": RFT,
    "oracle_local": "prime.process_reward=oracle,prime.process_gamma=0.0",
    # The paper's Table 4 (benchmarks/table4.py): each base algorithm without and with PRIME's
    # implicit process rewards (the conf/chains PRM), and the PRM as a value model.
    "reinforce": "prime.advantage_estimator=reinforce,prime.process_coef=0.0",
    "reinforce_prime": "prime.advantage_estimator=reinforce",
    "grpo": "prime.advantage_estimator=grpo,prime.process_coef=0.0",
    "grpo_prime": "prime.advantage_estimator=grpo",
    "ppo": "prime.advantage_estimator=gae,prime.process_coef=0.0",
    "ppo_prime": "prime.advantage_estimator=gae",
    "prm_value": "prime.advantage_estimator=prm_value",
    # RLOO + PRIME with the world's own PRM settings (in conf/chains the same as prime_mb16): the
    # tiny world's Table 4 runs it beside the rows above.
    "rloo_prime": "",
}
LABELS = {
    "rloo": "RLOO (outcome only)",
    "oracle": "oracle: -1 at the first error",
    "oracle_progress": "oracle: progress before the first error",
    "oracle_line": "oracle: -1 on the first wrong step's line",
    "prime": "PRIME (online PRM)",
    "prime_mb16": "PRIME, PRM mini-batch 16",
    "prime_offline": "PRIME (offline PRM)",
    "rft": "RFT (rejection sampling)",
    "oracle_local": "oracle, process returns with gamma 0",
    "reinforce": "REINFORCE",
    "reinforce_prime": "REINFORCE + PRIME",
    "grpo": "GRPO",
    "grpo_prime": "GRPO + PRIME",
    "ppo": "PPO (GAE, critic)",
    "ppo_prime": "PPO + PRIME",
    "prm_value": "PRM as value model",
    "rloo_prime": "RLOO + PRIME",
}


def world_name(env: str) -> str:
    """How the results name the world a Kedro environment trains on."""
    return {"base": "tiny world", "chains": "chains world", "countdown": "countdown world"}.get(
        env, f"{env} environment"
    )


MA = 10  # moving-average window of the training verify score, in iterations (the paper's Fig. 3)


def _test_prompts(project: Path, env: str):
    from eurus_prime.runs.session import open_context

    with open_context(project, env) as context:
        return context.catalog.load("sft_model"), context.catalog.load("prompts_test")


def _where(prompts, where: str | None):
    """The rows of a prompts table whose ``extra_info`` fields (``traps``, ``novel``, ...) match the
    pandas query ``where`` (all rows when None)."""
    import pandas as pd

    if not where:
        return prompts
    info = pd.DataFrame(list(prompts["extra_info"]), index=prompts.index)
    kept = prompts.loc[info.query(where).index]
    if kept.empty:
        raise ValueError(f"--where {where!r} keeps no prompt")
    return kept


def _restrict_train(project: Path, env: str, where: str) -> int:
    """Save a new version of the arm project's ``prompts_train`` holding the rows ``where`` keeps
    (the catalog loads the newest version, so the arm trains on those)."""
    from eurus_prime.runs.session import open_context

    with open_context(project, env) as context:
        catalog = context.catalog
        kept = _where(catalog.load("prompts_train"), where).reset_index(drop=True)
        catalog.save("prompts_train", kept)
    return len(kept)


def _evaluate(model, tok, test, n_items: int, max_new_tokens: int) -> dict:
    from eurus_prime.eval.evaluation import EvalConfig, evaluate_prompts

    items = evaluate_prompts(model, tok, test.head(n_items), EvalConfig(max_new_tokens=max_new_tokens, batch_size=128))
    novel = items["data_source"].str.contains("_novel")
    return {
        "acc_all": float(items["correct"].mean()),
        "acc_id": float(items["correct"][~novel].mean()),
        "acc_novel": float(items["correct"][novel].mean()),
        "n_id": int((~novel).sum()),
        "n_novel": int(novel.sum()),
    }


def _train(
    arm: str, seed: int, project: Path, env: str, seconds: float | None, iterations: int | None, params: str
) -> tuple[list[dict], dict]:
    cmd = train_command(
        project,
        iterations or 100000,
        ",".join(p for p in (f"prime.seed={seed},prime.eval_every=0,train.keep_checkpoints=null", params) if p),
        env=env,
        time_budget=None if iterations else seconds,
    )
    # PYTHONPATH: the arm runs the code copied into its project, not the --sft-from project's
    # (Kedro's bootstrap_project puts that one's src/ on this process's PYTHONPATH).
    code, _, load = run_logged(cmd, project, env={"PYTHONPATH": str(project / "src")})
    if code:
        raise RuntimeError(f"{arm} seed {seed} failed; see {project / 'train.log'}")
    return train_log(project), load.summary()


ITER_KEYS = (
    "train_verify_score/all",
    "rollout/responses",
    "filter/selected",
    "prm/loss",
    "rollout/response_length_mean",
    *(
        f"prm_eval/{s}_{k}"
        for s in ("fresh", "fixed")
        for k in ("ce", "pairwise_acc", "auc", "localisation", "localisation_f1", "localisation_threshold")
    ),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft-from", type=Path, default=ROOT, help="a project bootstrapped with --env chains")
    ap.add_argument("--env", default="chains")
    ap.add_argument("--minutes", type=float, default=8.0, help="training wall time of each arm and seed")
    ap.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="instead of --minutes: this many iterations per arm and seed (equal rollouts drawn; "
        "immune to a busy machine, whose wall times are still recorded)",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=["rloo", "oracle", "prime"], choices=list(ARMS))
    ap.add_argument("--points", type=int, default=4, help="held-out evaluations per arm, equally spaced in time")
    ap.add_argument("--eval-items", type=int, default=1000)
    ap.add_argument("--max-new-tokens", type=int, default=192)
    ap.add_argument("--offline-after", type=int, default=3, help="prime_offline: PRM training iterations")
    ap.add_argument("--params", default="", help="extra params for every arm, a=1,b=2")
    ap.add_argument(
        "--where",
        default=None,
        help="train and test on the prompts whose extra_info matches this pandas query, e.g. "
        "'traps == 3' (each arm's prompts_train gets a new version holding them)",
    )
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/credit_assignment")
    ap.add_argument(
        "--fresh",
        action="store_true",
        help="discard the results already in --out (default: keep the arms and seeds this run does not redo)",
    )
    ap.add_argument("--summarise-only", action="store_true", help="rebuild json/md/png from the csv files")
    ap.add_argument(
        "--merge",
        nargs="+",
        default=[],
        help="with --summarise-only: fold these runs' results (their --out; PREFIX:ARM[=NEW],... for "
        "some arms, renamed) into --out first, e.g. arms run side by side with separate --out; an "
        "(arm, seed) in several must agree",
    )
    args = ap.parse_args()
    import pandas as pd

    csv, iters_csv = result_paths(args.out)
    if args.summarise_only:
        if args.merge:
            merged, merged_iters = merge_results([args.out, *args.merge] if csv.exists() else args.merge)
            merged.to_csv(csv, index=False)
            merged_iters.to_csv(iters_csv, index=False)
        summarise(pd.read_csv(csv), pd.read_csv(iters_csv), args)
        return
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="eurus_prime_credit_"))
    seconds = args.minutes * 60
    sft, test = _test_prompts(args.sft_from, args.env)
    test = _where(test, args.where)
    tok = sft.tokenizer
    base = sft_checkpoint_row(_evaluate(sft.model, tok, test, args.eval_items, args.max_new_tokens))
    rows, iters = [base], []
    if csv.exists() and not args.fresh:  # keep the other arms and seeds already measured
        rerun = {(a, s) for a in args.arms for s in args.seeds}
        old_rows, old_iters = pd.read_csv(csv), pd.read_csv(iters_csv)

        def keep(d):
            return [
                r for r in d.to_dict("records") if (r["arm"], r["seed"]) not in rerun and r["arm"] != "sft_checkpoint"
            ]

        rows, iters = rows + keep(old_rows), keep(old_iters)
    print(json.dumps(base), flush=True)
    csv.parent.mkdir(parents=True, exist_ok=True)
    times = [seconds * k / args.points for k in range(1, args.points + 1)]
    for seed in args.seeds:
        for arm in args.arms:
            t0 = time.perf_counter()
            project = fresh_project(workdir / f"{arm}_s{seed}", with_sft_from=args.sft_from)
            if args.where:
                print(
                    f"# {arm} seed {seed}: {_restrict_train(project, args.env, args.where)} training prompts "
                    f"where {args.where}",
                    flush=True,
                )
            log, load = _train(
                arm,
                seed,
                project,
                args.env,
                seconds,
                args.iterations,
                ",".join(p for p in (ARMS[arm].format(offline_after=args.offline_after), args.params) if p),
            )
            done = finished_iterations(log)
            for entry, (_, _, rollouts) in zip(log, done):
                iters.append(
                    {
                        "arm": arm,
                        "seed": seed,
                        "iteration": entry["iteration"],
                        "elapsed": entry["elapsed"],
                        "rollouts": rollouts,
                        **{k: entry.get(k) for k in ITER_KEYS},
                    }
                )
            for k, t in enumerate(times, start=1):
                if args.iterations:  # evaluation points at equal shares of the iterations
                    last_it = round(args.iterations * k / args.points) - 1
                    finished = [d for d in done if d[1] <= last_it]
                    t = finished[-1][0] if finished else 0.0
                else:
                    finished = [d for d in done if d[0] <= t + 1e-6]
                if not finished:
                    metrics, it, ro = {k2: v for k2, v in base.items() if k2.startswith(("acc_", "n_"))}, -1, 0
                else:
                    _, it, ro = finished[-1]
                    metrics = _evaluate(policy_after(project, it), tok, test, args.eval_items, args.max_new_tokens)
                rows.append(
                    {
                        "arm": arm,
                        "seed": seed,
                        "point": k,
                        "seconds": t,
                        "iteration": it,
                        "rollouts": ro,
                        "other_cores": load.get("other_cores"),
                        **metrics,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
            print(f"# {arm} seed {seed}: {time.perf_counter() - t0:.0f} s including evaluation", flush=True)
            pd.DataFrame(rows).to_csv(csv, index=False)
            pd.DataFrame(iters).to_csv(iters_csv, index=False)
    summarise(pd.DataFrame(rows), pd.DataFrame(iters), args)


def _reach(xs, ys, level: float) -> float:
    """The first x at which ys reaches ``level`` (NaN if never)."""
    import numpy as np

    hit = np.flatnonzero(np.asarray(ys) >= level)
    return float(np.asarray(xs)[hit[0]]) if len(hit) else float("nan")


def _reach_per_seed(g, x: str, level: float) -> list[float]:
    """Per seed of ``g`` (one arm's iteration rows): the first ``x`` (``rollouts`` or ``elapsed``)
    at which its training moving average reaches ``level`` (NaN if never)."""
    return [_reach(s[x], s["train_ma"], level) for _, s in g.groupby("seed")]


def _ratio(need: list[float], base: float) -> float | None:
    """Mean of ``need`` over ``base``, rounded; None when a seed (or the base) never got there."""
    import numpy as np

    return None if np.isnan(need).any() or np.isnan(base) else round(float(np.mean(need) / base), 3)


def parse_result_spec(spec: str | Path) -> tuple[Path, dict[str, str] | None]:
    """A result named as ``PREFIX`` (all its arms) or ``PREFIX:ARM[=NEW],...`` (those arms, renamed
    where ``=NEW`` says): (its ``--out`` prefix, {arm in it: arm in the merge} or None)."""
    text = str(spec)
    prefix, sep, arms = text.rpartition(":")
    if not sep:
        return Path(text), None
    if not prefix or not arms or "/" in arms:
        raise ValueError(
            f"{text!r}: expected PREFIX or PREFIX:ARM[=NEW],..., e.g. results/chains_arms:rloo,prime=rloo_prime"
        )
    mapping = {}
    for item in arms.split(","):
        old, _, new = item.partition("=")
        mapping[old.strip()] = (new or old).strip()
    return Path(prefix), mapping


def result_paths(prefix: Path) -> tuple[Path, Path]:
    """The two files of a ``--out`` result: its held-out rows and its iteration rows."""
    return prefix.with_suffix(".csv"), prefix.with_name(prefix.name + "_iterations.csv")


def read_result(spec: str | Path):
    """The (rows, iteration rows) of a ``--out`` result (``parse_result_spec``), its SFT row kept."""
    import pandas as pd

    prefix, mapping = parse_result_spec(spec)
    csv, iters_csv = result_paths(prefix)
    for f in (csv, iters_csv):
        if not f.exists():
            raise FileNotFoundError(f"{f}: no such result (credit_assignment.py --out {prefix} writes it)")
    rows, iters = pd.read_csv(csv), pd.read_csv(iters_csv)
    if mapping is not None:
        missing = sorted(set(mapping) - set(rows["arm"]))
        if missing:
            raise ValueError(f"{csv}: no arm {missing}; it has {sorted(set(rows['arm']) - {'sft_checkpoint'})}")
        rows = rows[rows["arm"].isin([*mapping, "sft_checkpoint"])].assign(arm=rows["arm"].replace(mapping))
        iters = iters[iters["arm"].isin(list(mapping))].assign(arm=iters["arm"].map(mapping))
    return rows, iters


#: What two copies of one (arm, seed) must agree on: its held-out evaluations and its iterations.
AGREE_ROWS = ("iteration", "rollouts", "acc_all", "acc_id", "acc_novel")
AGREE_ITERS = ("rollouts", "train_verify_score/all")


def merge_frames(parts: list[tuple[str, object, object]]):
    """One (rows, iteration rows) pair from several (name, rows, iteration rows). They must start
    from the same SFT model (one ``sft_checkpoint`` result). An (arm, seed) found in several must
    agree on every evaluation and iteration (a copy, or a run that reproduces); it is kept once.
    Otherwise the error names the arm, seed, sources and field."""
    import numpy as np
    import pandas as pd

    sfts = pd.concat([r[r["arm"] == "sft_checkpoint"] for _, r, _ in parts], ignore_index=True)
    accs = [c for c in ("acc_all", "acc_id", "acc_novel") if c in sfts]
    base = sfts.drop_duplicates(subset=accs)
    if len(base) != 1:
        raise ValueError(f"the runs start from different SFT models: {base[accs].to_dict('records')}")
    rows, iters, seen = [base], [], {}
    for name, r, it in parts:
        for (arm, seed), g in r[r["arm"] != "sft_checkpoint"].groupby(["arm", "seed"]):
            gi = it[(it["arm"] == arm) & (it["seed"] == seed)]
            g, gi = g.sort_values("point").reset_index(drop=True), gi.sort_values("iteration").reset_index(drop=True)
            if (arm, seed) not in seen:
                seen[(arm, seed)] = (name, g, gi)
                rows.append(g)
                iters.append(gi)
                continue
            first, g0, gi0 = seen[(arm, seed)]
            what = f"{arm} seed {seed} in {first} and {name}"
            for a, b, keys in ((g0, g, AGREE_ROWS), (gi0, gi, AGREE_ITERS)):
                if len(a) != len(b):
                    raise ValueError(f"{what}: {len(a)} rows in one, {len(b)} in the other")
                for k in (k for k in keys if k in a and k in b):
                    x, y = a[k].astype(float), b[k].astype(float)
                    if not np.allclose(x, y, rtol=0, atol=1e-9, equal_nan=True):
                        raise ValueError(f"{what}: they disagree on {k}: {list(x)} vs {list(y)}")
    return pd.concat(rows, ignore_index=True), pd.concat(iters, ignore_index=True)


def merge_results(specs: list[str | Path]):
    """``merge_frames`` of the results ``specs`` name (``parse_result_spec``)."""
    return merge_frames([(str(s), *read_result(s)) for s in specs])


def summarise(df, iters, args) -> None:
    """Final held-out accuracy per arm; the rollouts (and seconds) each arm needs to reach RLOO's
    final training reward; PRM quality over the run; plots."""
    import numpy as np

    base = df[df["arm"] == "sft_checkpoint"].iloc[0]
    final = df[(df["arm"] != "sft_checkpoint") & (df["point"] == df["point"].max())]
    iters = iters.sort_values(["arm", "seed", "iteration"]).copy()
    iters["train_ma"] = iters.groupby(["arm", "seed"])["train_verify_score/all"].transform(
        lambda s: s.rolling(MA, min_periods=1).mean()
    )
    summary = {
        "command": "python benchmarks/credit_assignment.py "
        + " ".join(a for a in sys.argv[1:] if a != "--summarise-only"),
        "budget_per_arm": f"{args.iterations} iterations" if args.iterations else f"{args.minutes} minutes",
        "eval_items": args.eval_items,
        "seeds": sorted(int(s) for s in df["seed"].unique() if s >= 0),
        "sft_checkpoint": {k: round(float(base[k]), 4) for k in ("acc_all", "acc_id", "acc_novel")},
        "final_heldout": {},
        "training_reward": {},
        "prm_quality": {},
    }
    for arm, g in final.groupby("arm"):
        summary["final_heldout"][arm] = {
            k: {"mean": round(float(g[k].mean()), 4), "per_seed": [round(float(v), 4) for v in g[k]]}
            for k in ("acc_all", "acc_id", "acc_novel")
        }
        summary["final_heldout"][arm]["iterations"] = [int(v) for v in g["iteration"]]
    last = iters.groupby(["arm", "seed"]).tail(1)
    if "rloo" in set(iters["arm"]):
        target = float(last[last["arm"] == "rloo"]["train_ma"].mean())
        rloo_rollouts = float(last[last["arm"] == "rloo"]["rollouts"].mean())
        rloo_seconds = float(last[last["arm"] == "rloo"]["elapsed"].mean())
        summary["training_reward"]["rloo_final_ma"] = round(target, 4)
        # The paper's number at a level every arm reaches: 80% of the way from the first
        # iteration's training score (all arms start from the same SFT model) to RLOO's final.
        start = float(iters[iters["iteration"] == 0]["train_verify_score/all"].mean())
        level80 = start + 0.8 * (target - start)
        summary["training_reward"]["level_80pct_of_rloo_gain"] = round(level80, 4)
        rloo80 = float(np.mean(_reach_per_seed(iters[iters["arm"] == "rloo"], "rollouts", level80)))
        for arm, g in iters.groupby("arm"):
            need_r = _reach_per_seed(g, "rollouts", target)
            need80 = _reach_per_seed(g, "rollouts", level80)
            summary["training_reward"][arm] = {
                "final_ma_mean": round(float(last[last["arm"] == arm]["train_ma"].mean()), 4),
                "rollouts_to_reach_per_seed": [None if x != x else round(x) for x in need_r],
                "rollouts_ratio_to_rloo": _ratio(need_r, rloo_rollouts),
                "seconds_ratio_to_rloo": _ratio(_reach_per_seed(g, "elapsed", target), rloo_seconds),
                "rollouts_to_80pct_per_seed": [None if x != x else round(x) for x in need80],
                "rollouts_to_80pct_ratio_to_rloo": _ratio(need80, rloo80),
            }
    for arm, g in iters.groupby("arm"):
        g = g.copy()
        for s in ("fresh", "fixed"):
            # Runs before the calibrated threshold (core.prm_eval) logged an F1 at threshold 0,
            # which is ~0 whatever the PRM: only F1s with their threshold are summarised.
            f1, thr = f"prm_eval/{s}_localisation_f1", f"prm_eval/{s}_localisation_threshold"
            if f1 in g:
                g.loc[g[thr].isna() if thr in g else g.index, f1] = float("nan")
        # Fresh-rollout metrics from iteration 1: at iteration 0 the PRM is the reference (rewards 0).
        g.loc[g["iteration"] == 0, [k for k in g.columns if k.startswith("prm_eval/fresh_")]] = float("nan")
        n = g.groupby("seed")["iteration"].transform("max") + 1
        third = g[g["iteration"] >= (2 * n) // 3]
        summary["prm_quality"][arm] = {
            k.split("/")[1]: {"all": round(float(g[k].mean()), 3), "last_third": round(float(third[k].mean()), 3)}
            for k in ITER_KEYS
            if k.startswith("prm_eval/") and k in g and g[k].notna().any()
        }
    write_json(args.out.with_suffix(".json"), summary)
    lines = [
        f"# Credit assignment in the {world_name(args.env)}",
        "",
        f"Command: `{summary['command']}`",
        "",
        f"SFT checkpoint greedy pass@1 on the first {args.eval_items} test prompts: "
        f"{100 * base['acc_all']:.1f}% (in-distribution {100 * base['acc_id']:.1f}%, novel {100 * base['acc_novel']:.1f}%).",
        "",
        "| arm | point | seconds | iteration (mean) | rollouts (mean) | all | in-distribution | novel | seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    curves = per_arm_and_point(
        df,
        seconds=("seconds", "mean"),
        it=("iteration", "mean"),
        ro=("rollouts", "mean"),
        all=("acc_all", "mean"),
        idd=("acc_id", "mean"),
        nov=("acc_novel", "mean"),
        seeds=("seed", "nunique"),
    )
    for r in curves.itertuples():
        lines.append(
            f"| {r.arm} | {r.point} | {r.seconds:.0f} | {r.it:.1f} | {r.ro:.0f} | {100 * r.all:.1f} | "
            f"{100 * r.idd:.1f} | {100 * r.nov:.1f} | {r.seeds} |"
        )
    lines += ["", "```json", json.dumps(summary, indent=1), "```"]
    write_markdown(args.out.with_suffix(".md"), lines)
    _plot(iters, curves, base, args)


def _plot(iters, curves, base, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    # One colour per arm in every panel (the PRM panel has no RLOO line to keep the cycle aligned).
    colour = {arm: f"C{i}" for i, arm in enumerate(sorted(set(iters["arm"]) | set(curves["arm"])))}
    for arm, g in iters.groupby("arm"):
        # Mean over seeds at each iteration index both reached.
        m = g.groupby("iteration").agg(
            ro=("rollouts", "mean"),
            ma=("train_ma", "mean"),
            acc=("prm_eval/fresh_pairwise_acc", "mean"),
            loc=("prm_eval/fresh_localisation", "mean"),
            seeds=("seed", "nunique"),
        )
        m = m[m["seeds"] == m["seeds"].max()]
        axes[0].plot(m["ro"], 100 * m["ma"], color=colour[arm], label=LABELS.get(arm, arm))
        if arm != "rloo" and m["acc"].notna().any():
            axes[3].plot(m.index, m["acc"], color=colour[arm], label=f"{LABELS.get(arm, arm)}: pairwise acc")
            if m["loc"].notna().any():
                axes[3].plot(
                    m.index,
                    m["loc"],
                    linestyle="--",
                    color=colour[arm],
                    label=f"{LABELS.get(arm, arm)}: localisation",
                )
    axes[0].set_xlabel("rollouts")
    axes[0].set_ylabel(f"training verify score, %, {MA}-iteration moving average")
    for arm, g in curves.groupby("arm"):
        # Both splits, one colour per arm: a split where every arm scores 0 (the countdown world's
        # novel pool sizes) leaves the in-distribution one to read.
        # Against wall time, then the same points against rollouts drawn (the paper's axis; wall
        # time depends on the machine).
        for ax, x in ((axes[1], g["seconds"] / 60), (axes[2], g["ro"])):
            x = np.concatenate([[0], x])
            ax.plot(
                x,
                100 * np.concatenate([[base["acc_id"]], g["idd"]]),
                marker="o",
                color=colour[arm],
                label=LABELS.get(arm, arm),
            )
            ax.plot(
                x, 100 * np.concatenate([[base["acc_novel"]], g["nov"]]), marker="o", linestyle="--", color=colour[arm]
            )
    axes[1].set_xlabel("training wall time (minutes, 2 CPU cores; mean over seeds)")
    axes[2].set_xlabel("rollouts (mean over seeds)")
    for ax in axes[1:3]:
        ax.set_ylabel("held-out greedy pass@1, %")
        ax.set_title("solid: in-distribution, dashed: novel", fontsize=8)
    axes[3].axhline(0.5, color="grey", linewidth=0.5)
    axes[3].set_xlabel("iteration")
    axes[3].set_ylabel("PRM on fresh rollouts (before its update)")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(f"{world_name(args.env)}: mean over seeds")
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=110)


if __name__ == "__main__":
    main()
