"""Tune the online PRM without rerunning RL: replay a run's rollouts through PRM settings.

    python benchmarks/prm_replay.py --run /path/to/chains/prime/arm --iterations 18
    python benchmarks/prm_replay.py --run /path/to/tiny/prime/arm --env base --iterations 12 \
        --settings default --custom prm_mini_batch=32 prm_mini_batch=16,prm_lr=5e-4

``--run`` is a project that trained (any arm of benchmarks/credit_assignment.py; its tables hold
every iteration's rollouts, outcomes with ground-truth step labels, filter report and reference
log-probs). For each PRM setting, a PRM starts from the project's SFT model with fresh AdamW
moments and, iteration by iteration, does what the online PRM of that run would have done:

1. scores the iteration's selected rollouts (``prm.score_rows``; the reference log-probs are the
   run's own), and is measured on them *before* it trains on them: the fresh-rollout metrics of
   ``prime/prm_eval.py`` (pairwise accuracy, AUC, cross-entropy, first-error localisation and its
   calibrated F1);
2. takes its update on them (``prm.update_prm``, the pipeline's code, ``prime.prm_update: after``);
3. every ``--fixed-every`` iterations, and after the last, is measured on the fixed set
   (``prm_eval_set``, SFT samples of validation prompts).

What a replay leaves out: in a PRIME run the PRM's rewards steer the policy, hence the later
rollouts; here every setting sees the same rollouts (those of ``--run``). That is what makes the
settings comparable. Results: benchmarks/results/prm_replay.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import ROOT, iteration_table, write_json, write_markdown  # noqa: E402

sys.path.insert(0, str(ROOT / "src"))

#: name -> PrimeConfig overrides; "default" is the run's own configuration (in the chains world's
#: results: lr 5e-4, mini-batch 64, beta 0.05, conf/chains before it moved to mini-batch 16).
SETTINGS = {
    "default": {},
    "lr 1e-4": {"prm_lr": 1e-4},
    "lr 2e-3": {"prm_lr": 2e-3},
    "mini-batch 16 (16 steps)": {"prm_mini_batch": 16},
    "mini-batch 256 (1 step)": {"prm_mini_batch": 256},
    "beta 0.5": {"beta": 0.5},
    "beta 0.01": {"beta": 0.01},
    "dpo loss": {"prm_loss": "dpo"},
}
MEASURES = ("pairwise_acc", "auc", "ce", "localisation", "localisation_f1")


def replay(project: Path, env: str, overrides: dict, iterations: int, fixed_every: int) -> list[dict]:
    """One setting's PRM through ``iterations`` iterations of ``project``'s rollouts."""
    from eurus_prime.prime import prm as prm_lib
    from eurus_prime.prime import prm_eval as prm_eval_lib
    from eurus_prime.prime.config import PrimeConfig
    from eurus_prime.runs.session import open_context

    with open_context(project, env) as context:
        params = context.params
        prm = context.catalog.load("sft_model")
        eval_set = context.catalog.load("prm_eval_set")
    cfg = dataclasses.replace(PrimeConfig.coerce(params["prime"]), **overrides)
    n_fixed = params["prm_eval"].samples  # PrmEvalConfig, typed by the project's context
    prm.optimizer_state = None
    rows = []
    for k in range(iterations):
        rollouts = iteration_table(project, k, "rollouts")
        outcomes = iteration_table(project, k, "outcomes")
        report = iteration_table(project, k, "filter_report")
        ref = iteration_table(project, k, "process_rewards")[
            ["prompt_id", "sample_idx", "old_logprobs", "ref_logprobs"]
        ]
        selected = prm_lib.selected_rollouts(rollouts, report)
        selected = selected[["prompt_id", "sample_idx", "prompt_ids", "response_ids"]].merge(
            ref, on=["prompt_id", "sample_idx"], validate="one_to_one"
        )
        # the PRM as loaded scores them, as compute_process_rewards does (its log-probs and implicit rewards)
        process_rewards = prm_eval_lib.score_eval_set(prm, selected, cfg).merge(
            selected[["prompt_id", "sample_idx", "old_logprobs", "ref_logprobs"]],
            on=["prompt_id", "sample_idx"],
            validate="one_to_one",
        )
        fresh = prm_eval_lib.quality(process_rewards, rollouts, outcomes, prm.tokenizer, cfg, cfg.samples_per_prompt)
        row = {"iteration": k, "responses": len(process_rewards), **{f"fresh_{m}": fresh.get(m) for m in MEASURES}}
        prm, _, _ = prm_lib.update_prm(prm, rollouts, process_rewards, outcomes, cfg, k)
        if (k + 1) % fixed_every == 0 or k == iterations - 1:
            scored = prm_eval_lib.score_eval_set(prm, eval_set, cfg)
            fixed = prm_eval_lib.quality(scored, eval_set, eval_set, prm.tokenizer, cfg, n_fixed)
            row.update({f"fixed_{m}": fixed.get(m) for m in MEASURES})
        rows.append(row)
        print(
            f"  iteration {k}: " + " ".join(f"{a}={b:.3f}" for a, b in row.items() if isinstance(b, float)), flush=True
        )
    return rows


def _parse_custom(text: str) -> dict:
    """``"prm_mini_batch=32,prm_lr=1e-3"`` -> ``{"prm_mini_batch": 32, "prm_lr": 0.001}``, read as
    ``kedro run --params`` reads its items (``runs.loop.parse_params``)."""
    from eurus_prime.runs.loop import parse_params

    try:
        return parse_params(text)
    except ValueError as err:
        raise SystemExit(f"--custom {text!r}: {err}") from None


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a trained chains project (any credit_assignment arm)")
    ap.add_argument("--env", default="chains")
    ap.add_argument("--iterations", type=int, default=18)
    ap.add_argument("--fixed-every", type=int, default=6)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument(
        "--custom",
        nargs="+",
        default=[],
        help="more settings, each a=1,b=2 over PrimeConfig fields (e.g. prm_mini_batch=32,prm_lr=1e-3)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/prm_replay")
    ap.add_argument("--summarise-only", action="store_true", help="rebuild the summary and md from the json")
    args = ap.parse_args(argv)
    t0 = time.time()
    if args.summarise_only:
        old = json.loads(args.out.with_suffix(".json").read_text())
        per_setting, command, seconds = old["per_iteration"], old["command"], old["seconds"]
    else:
        per_setting = {}
        todo = {name: SETTINGS[name] for name in args.settings} | {c: _parse_custom(c) for c in args.custom}
        for name, overrides in todo.items():
            print(name, flush=True)
            per_setting[name] = replay(args.run, args.env, overrides, args.iterations, args.fixed_every)
        command = "python benchmarks/prm_replay.py " + " ".join(argv if argv is not None else sys.argv[1:])
        seconds = round(time.time() - t0, 1)
    summary = {}
    for name, rows in per_setting.items():
        # Fresh metrics from iteration 1: at iteration 0 the PRM is the reference (every reward 0).
        df = pd.DataFrame(rows)
        df.loc[df["iteration"] == 0, [f"fresh_{m}" for m in MEASURES]] = float("nan")
        third = df[df["iteration"] >= (2 * len(df)) // 3]
        summary[name] = {
            **{f"fresh_{m}": round(float(df[f"fresh_{m}"].mean()), 3) for m in MEASURES},
            **{f"fresh_{m}_last_third": round(float(third[f"fresh_{m}"].mean()), 3) for m in MEASURES},
            **{f"fixed_{m}_min": round(float(df[f"fixed_{m}"].min()), 3) for m in MEASURES},
            # a world without step labels (the tiny world) has no localisation: nan
            **{
                f"fixed_{m}_last": round(float(df[f"fixed_{m}"].dropna().iloc[-1]), 3)
                if df[f"fixed_{m}"].notna().any()
                else float("nan")
                for m in MEASURES
            },
        }
    result = {
        "command": command,
        "seconds": seconds,
        "summary": summary,
        "per_iteration": per_setting,
    }
    write_json(args.out.with_suffix(".json"), result, default=float)
    lines = [
        "# The online PRM replayed over one run's rollouts (benchmarks/prm_replay.py)",
        "",
        f"Command: `{result['command'].strip()}` ({result['seconds']} s). Fresh: each iteration's selected "
        "rollouts before the PRM trains on them, mean over iterations 1 to "
        f"{len(next(iter(per_setting.values()))) - 1} (at 0 the PRM is the reference and every reward is 0; last third "
        "in brackets). Fixed: the "
        "fixed set, lowest over the evaluations and at the end. Localisation: share of wrong rollouts whose "
        "lowest-reward step is the first wrong step; F1 at the calibrated threshold (core/prm_eval.py).",
        "",
        "| setting | fresh pairwise | fresh AUC | fresh CE | fresh localisation | fresh F1 | fixed pairwise min / end | fixed localisation end | fixed F1 end |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {s['fresh_pairwise_acc']:.3f} ({s['fresh_pairwise_acc_last_third']:.3f}) | "
            f"{s['fresh_auc']:.3f} ({s['fresh_auc_last_third']:.3f}) | {s['fresh_ce']:.3f} ({s['fresh_ce_last_third']:.3f}) | "
            f"{s['fresh_localisation']:.3f} ({s['fresh_localisation_last_third']:.3f}) | "
            f"{s['fresh_localisation_f1']:.3f} ({s['fresh_localisation_f1_last_third']:.3f}) | "
            f"{s['fixed_pairwise_acc_min']:.3f} / {s['fixed_pairwise_acc_last']:.3f} | "
            f"{s['fixed_localisation_last']:.3f} | {s['fixed_localisation_f1_last']:.3f} |"
        )
    write_markdown(args.out.with_suffix(".md"), lines)
    return result


if __name__ == "__main__":
    main()
