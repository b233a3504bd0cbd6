"""The result of grading one response."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Verdict:
    """Outcome of one verification.

    ``score`` is the reward (1 or 0 for math and countdown; for code the fraction of the first <= 10 tests
    passed, 1 only when all pass). ``reason`` is one of ``correct``, ``wrong``, ``no_answer``,
    ``timeout``, ``too_long``, ``error``, ``verifier_error`` (the grader itself raised; ``error``
    holds its message). ``isolation`` records how code was run (``none`` otherwise).

    Provenance: ``verifier`` names the grader and its version (``math/math_verify-0.9.0``,
    ``code/bwrap-0.8.0``, ``countdown/steps-1``), ``rule`` which rule decided (math:
    ``normaliser``, ``symbolic``, ``numeric``, or ``none`` when nothing matched; code: ``tests``;
    countdown: ``steps``), and ``detail`` is a JSON string with the grader's record (code:
    pass/fail per test, timeouts, memory, stderr; countdown: the first wrong step and why).
    """

    score: float
    correct: bool
    reason: str
    extracted: str | None = None
    error: str | None = None
    isolation: str = "none"
    verifier: str = ""
    rule: str = ""
    detail: str | None = None

    def as_row(self) -> dict:
        return asdict(self)
