"""Outcome verifiers: the only ground truth PRIME has.

One interface for both abilities: ``verify(ability, response, ground_truth) -> Verdict`` and the
batched ``verify_all``. Math grading runs in the calling (main) thread because math-verify's
timeouts use signal alarms; code grading spends its time waiting on child processes, so
``verify_all`` runs those from a thread pool.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from eurus_prime.verifiers.code import grade_code
from eurus_prime.verifiers.math import grade_math
from eurus_prime.verifiers.verdict import Verdict

__all__ = ["Verdict", "grade_code", "grade_math", "verify", "verify_all"]

ABILITIES = ("math", "code")
MAX_ERROR_CHARS = 500

log = logging.getLogger(__name__)


def verify(ability: str, response: str, ground_truth: str) -> Verdict:
    """Grade one response against its ground truth."""
    if ability == "math":
        return grade_math(response, ground_truth)
    if ability == "code":
        return grade_code(response, ground_truth)
    raise ValueError(f"unknown ability {ability!r}; valid: {list(ABILITIES)}")


def verify_all(
    abilities: Sequence[str],
    responses: Sequence[str],
    ground_truths: Sequence[str],
    code_workers: int = 4,
) -> list[Verdict]:
    """Grade many responses; the result is in input order."""
    if not len(abilities) == len(responses) == len(ground_truths):
        raise ValueError(
            f"verify_all: {len(abilities)} abilities, {len(responses)} responses and "
            f"{len(ground_truths)} ground truths; they must be the same length"
        )
    for i, ability in enumerate(abilities):
        if ability not in ABILITIES:
            raise ValueError(f"row {i}: unknown ability {ability!r}; valid: {list(ABILITIES)}")
    verdicts: list[Verdict | None] = [None] * len(responses)
    code_rows = [i for i, a in enumerate(abilities) if a == "code"]
    with ThreadPoolExecutor(max_workers=max(1, code_workers)) as pool:
        futures = {i: pool.submit(grade_code, responses[i], ground_truths[i]) for i in code_rows}
        for i, ability in enumerate(abilities):
            if ability == "math":
                try:
                    verdicts[i] = grade_math(responses[i], ground_truths[i])
                except Exception as exc:  # noqa: BLE001 - one bad row must not sink the batch
                    verdicts[i] = verifier_error(i, ability, exc)
        for i, future in futures.items():
            try:
                verdicts[i] = future.result()
            except Exception as exc:  # noqa: BLE001
                verdicts[i] = verifier_error(i, "code", exc)
    return verdicts  # type: ignore[return-value]


def verifier_error(row: int, ability: str, exc: BaseException) -> Verdict:
    """The verdict of a row whose grader raised: score 0, reason ``verifier_error``, the error
    text (truncated) in ``error``; logged as a warning."""
    text = f"{type(exc).__name__}: {exc}"
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    log.warning("verify_all: the %s verifier raised on row %d (%s); the row scores 0 (reason "
                "verifier_error) and the rest of the batch goes on", ability, row, text)
    return Verdict(0.0, False, "verifier_error", error=text)
