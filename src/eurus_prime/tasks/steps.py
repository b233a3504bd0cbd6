"""What the step checkers of the worlds with ground-truth steps share: finding the boxed answer's line."""

from __future__ import annotations

import re

BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


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
