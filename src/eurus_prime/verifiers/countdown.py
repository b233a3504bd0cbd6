"""The countdown world's outcome verifier: re-execute the response's moves.

A response is right when every move uses numbers the pool holds, computes correctly, never goes
negative, uses every number once, and the box holds the target (``tasks.countdown.steps``). This
is the same re-execution as the process label, so the outcome and the label cannot disagree; the
box alone earns nothing (boxing the target the question states is not an answer).
"""

from __future__ import annotations

import json

from eurus_prime.tasks.countdown.steps import BOXED, label_steps, parse_ground_truth
from eurus_prime.verifiers.verdict import Verdict

VERIFIER = "countdown/steps-1"


def grade_countdown(response: str, ground_truth: str) -> Verdict:
    """Score 1 when the moves make the target (see the module docstring), else 0.

    ``reason``: ``correct``, ``no_answer`` (no box), ``wrong`` (a wrong move or answer; ``detail``
    names the first wrong step and why) or ``error`` (the ground truth is not a countdown puzzle).
    """
    try:
        puzzle = parse_ground_truth(str(ground_truth))
    except ValueError as exc:
        return Verdict(0.0, False, "error", None, str(exc)[:500], verifier=VERIFIER, rule="none")
    response = response or ""
    boxed = BOXED.findall(response)
    extracted = boxed[-1].strip() if boxed else None
    label = label_steps(puzzle, response)
    detail = json.dumps({"first_wrong_step": label.first_wrong_step, "why": label.why})
    if label.first_wrong_step < 0:
        return Verdict(1.0, True, "correct", extracted, verifier=VERIFIER, rule="steps", detail=detail)
    reason = "no_answer" if extracted is None else "wrong"
    return Verdict(0.0, False, reason, extracted, verifier=VERIFIER, rule="steps", detail=detail)
