"""The countdown world's SFT model as data: accuracy, where it goes wrong, and verifier agreement.

    python benchmarks/countdown_world.py --project /path/to/countdown/project --prompts 500

``--project`` has run ``kedro run --env countdown --pipelines=bootstrap``. On the first
``--prompts`` training prompts, ``--samples`` samples each at temperature 1 (as rollouts are drawn)
and one greedy answer: accuracy; response length in tokens; the ground-truth first wrong step of
every wrong sample and what kind of error it is (*misconception*: the planted "combine the two
largest" move, where it applies; *lost*: another legal move that loses the target; *illegal*: a
number the pool lacks, a wrong result or a negative one; *format*: a missing move or box, an extra
move, a wrong box); and the agreement of our countdown verifier with reasoning-gym's own
``score_answer`` (correct = score 1) on every sample, fed the expression the moves build, with
the disagreements counted each way.
Results: ``benchmarks/results/countdown_world.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import ROOT, sft_samples, write_json, write_markdown  # noqa: E402


def error_kind(puzzle, response: str, label, misconception_op: str) -> str:
    """What the first wrong step of a wrong response is (see the module docstring)."""
    from eurus_prime.tasks.countdown.steps import MOVE_LINE
    from eurus_prime.tasks.countdown.world import misconception_move

    k = label.first_wrong_step
    if k >= puzzle.n_moves or "missing" in label.why:
        return "format"
    if "cannot be made" not in label.why:
        return "illegal"
    pool = list(puzzle.numbers)
    lines = list(MOVE_LINE.finditer(response))
    for line in lines[:k]:  # replay the right moves before it
        a, b, c = int(line.group(1)), int(line.group(3)), int(line.group(4))
        pool.remove(a)
        pool.remove(b)
        pool.insert(0, c)
    move = lines[k]
    planted = k >= 1 and misconception_move(pool, puzzle.target, misconception_op) == (
        int(move.group(1)),
        move.group(2),
        int(move.group(3)),
    )
    return "misconception" if planted else "lost"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, default=ROOT)
    ap.add_argument("--env", default="countdown")
    ap.add_argument("--prompts", type=int, default=500)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/countdown_world")
    args = ap.parse_args()
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    import numpy as np
    import reasoning_gym

    from eurus_prime.tasks.countdown.steps import expression, label_steps, parse_ground_truth
    from eurus_prime.verifiers import verify_all

    rows, _, params, modes = sft_samples(args.project, args.env, args.prompts, args.samples)
    world = params["countdownworld"]
    m_op = str(world["misconception_op"] if isinstance(world, dict) else world.misconception_op)
    truths = [rm["ground_truth"] for rm in rows["reward_model"]]
    puzzles = [parse_ground_truth(t) for t in truths]
    out: dict = {"command": "python benchmarks/countdown_world.py " + " ".join(sys.argv[1:]), "prompts": len(rows)}
    scorer = reasoning_gym.create_dataset("countdown", size=1, seed=0)
    for mode, n, rep, gens in modes:
        responses = [g.text for g in gens]
        verdicts = verify_all(["countdown"] * len(rep), responses, [truths[i] for i in rep])
        labels = [label_steps(puzzles[i], r) for i, r in zip(rep, responses)]
        correct = np.array([v.correct for v in verdicts])
        theirs = []
        for i, r in zip(rep, responses):
            expr = expression(puzzles[i], r)
            entry = {"metadata": {"numbers": list(puzzles[i].numbers), "target": puzzles[i].target}}
            theirs.append(expr is not None and scorer.score_answer(expr, entry) == 1.0)
        theirs_ok = np.array(theirs, dtype=bool)
        first = np.array([lb.first_wrong_step for lb in labels])
        wrong = first >= 0
        kinds = Counter(
            error_kind(puzzles[i], r, lb, m_op) for i, r, lb in zip(rep, responses, labels) if lb.first_wrong_step >= 0
        )
        out[mode] = {
            "accuracy": round(float(correct.mean()), 4),
            "outcome_and_process_agree": round(float(((first == -1) == correct).mean()), 4),
            "verifier_agreement_with_reasoning_gym": round(float((correct == theirs_ok).mean()), 4),
            # the disagreements, each way: a verifier that accepts what the other rejects is the
            # laxer one there (a false positive is reward the policy can farm)
            "accepted_by_us_only": int((correct & ~theirs_ok).sum()),
            "accepted_by_reasoning_gym_only": int((~correct & theirs_ok).sum()),
            "response_tokens_mean": round(float(np.mean([len(g.token_ids) for g in gens])), 1),
            "response_tokens_max": int(max(len(g.token_ids) for g in gens)),
            "steps": int(puzzles[0].n_moves + 1),
            "first_wrong_step": {int(k): int(v) for k, v in sorted(Counter(first[wrong].tolist()).items())},
            "first_error_kind": {k: round(v / max(1, int(wrong.sum())), 4) for k, v in sorted(kinds.items())},
            "graded": int(len(rep)),
        }
        if n > 1:
            per_prompt = correct.reshape(len(rows), n)
            out[mode][f"pass@{n}"] = round(float(per_prompt.any(1).mean()), 4)
            out[mode]["prompts_in_band_0.2_0.8"] = round(
                float(((per_prompt.mean(1) > 0.2) & (per_prompt.mean(1) < 0.8)).mean()), 4
            )
        print(mode, json.dumps(out[mode]), flush=True)
    write_json(args.out.with_suffix(".json"), out)
    lines = [
        "# The countdown world's SFT model",
        "",
        f"Command: `{out['command']}`",
        "",
        "| | greedy | sampled (T=1) |",
        "|---|---|---|",
    ]
    for key in out["greedy"]:
        lines.append(f"| {key} | {out['greedy'][key]} | {out['sampled'].get(key)} |")
    for key in out["sampled"]:
        if key not in out["greedy"]:
            lines.append(f"| {key} | | {out['sampled'][key]} |")
    write_markdown(args.out.with_suffix(".md"), lines)


if __name__ == "__main__":
    main()
