"""What the step checkers of the worlds with ground-truth steps share (the chains and countdown
worlds): the process label they return, finding the boxed answer's line, and mapping a label's
character spans onto tokens (the oracle rewards, the PRM's localisation, the rollout report)."""

from __future__ import annotations

import re
from dataclasses import dataclass

BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


@dataclass(frozen=True)
class StepLabel:
    """The process label of one response, from re-executing its steps."""

    first_wrong_step: int
    """Index of the first wrong step (the output step is ``n_steps - 1``); -1: every step holds."""
    n_steps: int
    """Steps the response is graded on: the task's steps plus the output step."""
    spans: tuple[tuple[int, int], ...]
    """Character span ``[start, end)`` in the response of each step the response wrote, in step
    order (step lines, then the boxed line); a missing step has no span."""
    wrong_span: tuple[int, int] | None
    """Characters to blame for the first wrong step (each world's checker says which); None when
    no step is wrong."""


def boxed_line(response: str) -> tuple[list[re.Match], tuple[int, int] | None]:
    """Every ``\\boxed{...}`` in ``response``, and the character span ``[start, end)`` of the line
    holding the last one (the output step; None without a box)."""
    boxed = list(BOXED.finditer(response))
    if not boxed:
        return boxed, None
    m = boxed[-1]
    line_start = response.rfind("\n", 0, m.start()) + 1
    line_end = response.find("\n", m.end())
    return boxed, (line_start, len(response) if line_end < 0 else line_end)


def token_steps(pieces: list[str], spans: tuple[tuple[int, int], ...]) -> list[int]:
    """The step each token belongs to (-1: none), from the tokens' decoded pieces (which
    concatenate to the response text) and the steps' character spans; a token belongs to the
    first step whose span it overlaps."""
    out = [-1] * len(pieces)
    for k, span in enumerate(spans):
        for i in span_tokens(pieces, span):
            if out[i] < 0:
                out[i] = k
    return out


def span_tokens(pieces: list[str], span: tuple[int, int]) -> list[int]:
    """Indices of the tokens that overlap ``span``."""
    out, pos = [], 0
    for i, piece in enumerate(pieces):
        start, end = pos, pos + len(piece)
        pos = end
        if start < span[1] and end > span[0]:
            out.append(i)
    return out
