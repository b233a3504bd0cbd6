"""The result of grading one response."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Verdict:
    """Outcome of one verification.

    ``score`` is the reward (1 or 0 for math; for code the fraction of the first <= 10 tests
    passed, 1 only when all pass). ``reason`` is one of ``correct``, ``wrong``, ``no_answer``,
    ``timeout``, ``too_long``, ``error``, ``verifier_error`` (the grader itself raised; ``error``
    holds its message). ``isolation`` records how code was run (``none`` for math).
    """

    score: float
    correct: bool
    reason: str
    extracted: str | None = None
    error: str | None = None
    isolation: str = "none"

    def as_row(self) -> dict:
        return asdict(self)
