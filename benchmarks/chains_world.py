"""The chains world's SFT model as data: accuracy, where it goes wrong, and verifier agreement.

    python benchmarks/chains_world.py --project /path/to/chains/project --prompts 500

``--project`` has run ``kedro run --env chains --pipelines=bootstrap``. On the first ``--prompts``
training prompts, ``--samples`` samples each at temperature 1 (as rollouts are drawn) and one
greedy answer: accuracy; response length in tokens and steps; the ground-truth first wrong step
of every wrong sample, split into *trap* steps (a zero-crossing subtraction: the planted
misconception) and *slips* (any other step); and the agreement of our math verifier with
reasoning-gym's own ``score_answer`` (correct = score 1) on every sample.
Results: ``benchmarks/results/chains_world.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import ROOT, sft_samples, write_json, write_markdown  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, default=ROOT)
    ap.add_argument("--env", default="chains")
    ap.add_argument("--prompts", type=int, default=500)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/chains_world")
    args = ap.parse_args()
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    import numpy as np
    import reasoning_gym

    from eurus_prime.tasks.chainworld.steps import parse_expression
    from eurus_prime.tasks.chainworld.world import traps
    from eurus_prime.verifiers import verify_all
    from eurus_prime.verifiers.process import process_columns

    rows, texts, _, modes = sft_samples(args.project, args.env, args.prompts, args.samples)
    truths = [rm["ground_truth"] for rm in rows["reward_model"]]
    out: dict = {"command": "python benchmarks/chains_world.py " + " ".join(sys.argv[1:]), "prompts": len(rows)}
    scorer = reasoning_gym.create_dataset("chain_sum", size=1, seed=0)
    for mode, _, rep, gens in modes:
        responses = [g.text for g in gens]
        verdicts = verify_all(["math"] * len(rep), responses, [truths[i] for i in rep])
        labels = process_columns(["chains_"] * len(rep), [texts[i] for i in rep], responses)
        correct = np.array([v.correct for v in verdicts])
        theirs = []
        for v, i in zip(verdicts, rep):
            answer = v.extracted if v.extracted is not None else ""
            theirs.append(scorer.score_answer(str(answer), {"answer": truths[i]}) == 1.0)
        first = np.array(labels["first_wrong_step"])
        trap_steps = [set(traps(parse_expression(texts[i]))) for i in rep]
        wrong = first >= 0
        at_trap = np.array([k in t for k, t in zip(first, trap_steps)])
        n_arith = np.array([len(parse_expression(texts[i]).ops) for i in rep])
        out[mode] = {
            "accuracy": round(float(correct.mean()), 4),
            "process_correct": round(float((first == -1).mean()), 4),
            "outcome_and_process_agree": round(float(((first == -1) == correct).mean()), 4),
            "response_tokens_mean": round(float(np.mean([len(g.token_ids) for g in gens])), 1),
            "response_tokens_max": int(max(len(g.token_ids) for g in gens)),
            "steps_mean": round(float((n_arith + 1).mean()), 2),
            "wrong_first_at_trap": round(float(at_trap[wrong].mean()), 4) if wrong.any() else None,
            "wrong_first_at_output_step": round(float((first[wrong] == n_arith[wrong]).mean()), 4)
            if wrong.any()
            else None,
            "first_wrong_step_mean": round(float(first[wrong].mean()), 2) if wrong.any() else None,
            "verifier_agreement_with_reasoning_gym": round(float((correct == np.array(theirs)).mean()), 4),
            "graded": int(len(rep)),
        }
        print(mode, json.dumps(out[mode]), flush=True)
    write_json(args.out.with_suffix(".json"), out)
    lines = [
        "# The chains world's SFT model",
        "",
        f"Command: `{out['command']}`",
        "",
        "| | greedy | sampled (T=1) |",
        "|---|---|---|",
    ]
    for key in out["greedy"]:
        lines.append(f"| {key} | {out['greedy'][key]} | {out['sampled'][key]} |")
    write_markdown(args.out.with_suffix(".md"), lines)


if __name__ == "__main__":
    main()
