"""Outcome verifiers: the only ground truth PRIME has.

One interface for every ability (``math``, ``code``, and ``countdown``: the countdown world's
moves re-executed): ``verify(ability, response, ground_truth) -> Verdict``, the
batched ``verify_all`` and ``verify_table`` (a table in, the table with scores out: what the
pipeline's ``verify_outcomes`` node and ``eurus-prime verify`` call). A large batch is shared by a
pool of worker processes, one per core; inside a process, math and countdown grading run in the
main thread (math-verify's timeouts use signal alarms) and code runs, which wait on their sandboxed child,
from a thread pool.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from eurus_prime.verifiers.code import grade_code
from eurus_prime.verifiers.countdown import grade_countdown
from eurus_prime.verifiers.math import grade_math
from eurus_prime.verifiers.verdict import Verdict

__all__ = [
    "Verdict",
    "grade_code",
    "grade_countdown",
    "grade_math",
    "summarise",
    "verify",
    "verify_all",
    "verify_table",
]

ABILITIES = ("math", "code", "countdown")
MAX_ERROR_CHARS = 500

log = logging.getLogger(__name__)


def verify(ability: str, response: str, ground_truth: str) -> Verdict:
    """Grade one response against its ground truth."""
    if ability == "math":
        return grade_math(response, ground_truth)
    if ability == "code":
        return grade_code(response, ground_truth)
    if ability == "countdown":
        return grade_countdown(response, ground_truth)
    raise ValueError(f"unknown ability {ability!r}; valid: {list(ABILITIES)}")


#: Below this many rows a batch is graded in this process (a pool's start-up would cost more).
PARALLEL_MIN_ROWS = 64
_POOL = None


def _pool(workers: int):
    """A process pool kept for the life of the process (a training run grades every iteration).
    Started with ``forkserver``: workers do not inherit the trainer's threads or model memory, and
    each grades in its own main thread, where math-verify's signal-based timeouts work."""
    global _POOL
    if _POOL is None or _POOL._max_workers != workers:  # noqa: SLF001
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if _POOL is not None:
            _POOL.shutdown(cancel_futures=True)
        _POOL = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver"))
    return _POOL


def _serial(abilities, responses, ground_truths) -> list[Verdict]:
    return verify_all(abilities, responses, ground_truths, workers=1)


def default_workers() -> int:
    """Grading processes per call: every core, shared among the ranks an SPMD campaign runs on
    this node (``LOCAL_WORLD_SIZE``, set by torchrun), each of which grades its own share."""
    return max(1, (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def verify_all(
    abilities: Sequence[str],
    responses: Sequence[str],
    ground_truths: Sequence[str],
    code_workers: int = 4,
    workers: int | None = None,
    on_progress: Callable[[int, int | None, str], None] | None = None,
) -> list[Verdict]:
    """Grade many responses; the result is in input order. ``on_progress(done, total, unit)`` is
    called as chunks (or, in one process, rows) finish.

    ``workers`` processes (default: every core, shared by an SPMD node's ranks: ``default_workers``)
    share a batch of ``PARALLEL_MIN_ROWS`` or more, in interleaved chunks so that slow code rows spread evenly; within a process, code runs
    (which wait on their sandboxed child) use ``code_workers`` threads and math runs in the main
    thread. A worker that dies takes no rows with it: its chunk is graded again in this process."""
    workers = default_workers() if workers is None else workers
    if workers > 1 and len(responses) >= PARALLEL_MIN_ROWS:
        return _parallel(list(abilities), list(responses), list(ground_truths), workers, on_progress)
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
            if ability != "code":
                try:
                    verdicts[i] = verify(ability, responses[i], ground_truths[i])
                except Exception as exc:  # noqa: BLE001 - one bad row must not sink the batch
                    verdicts[i] = verifier_error(i, ability, exc)
                if on_progress is not None:
                    on_progress(i + 1, len(abilities), "graded responses")
        for i, future in futures.items():
            try:
                verdicts[i] = future.result()
            except Exception as exc:  # noqa: BLE001
                verdicts[i] = verifier_error(i, "code", exc)
    if on_progress is not None:
        on_progress(len(abilities), len(abilities), "graded responses")
    return verdicts  # type: ignore[return-value]


def _parallel(
    abilities: list[str],
    responses: list[str],
    ground_truths: list[str],
    workers: int,
    on_progress: Callable[[int, int | None, str], None] | None = None,
) -> list[Verdict]:
    from concurrent.futures.process import BrokenProcessPool

    global _POOL
    chunks = [list(range(c, len(responses), workers * 4)) for c in range(min(workers * 4, len(responses)))]
    pool = _pool(workers)
    futures = [
        pool.submit(_serial, [abilities[i] for i in c], [responses[i] for i in c], [ground_truths[i] for i in c])
        for c in chunks
    ]
    verdicts: list[Verdict | None] = [None] * len(responses)
    for chunk, future in zip(chunks, futures):
        try:
            part = future.result()
        except BrokenProcessPool as exc:  # a worker died (killed, out of memory): grade here instead
            log.warning("verify_all: a verifier worker died (%s); grading its %d rows in this process", exc, len(chunk))
            _POOL = None
            part = _serial(
                [abilities[i] for i in chunk], [responses[i] for i in chunk], [ground_truths[i] for i in chunk]
            )
        for i, v in zip(chunk, part):
            verdicts[i] = v
        if on_progress is not None:
            on_progress(sum(v is not None for v in verdicts), len(responses), "graded responses")
    return verdicts  # type: ignore[return-value]


def verify_triples(
    triples: Sequence[tuple[str, str, str]], on_progress: Callable[[int, int | None, str], None] | None = None
) -> list[Verdict]:
    """``verify_all`` over ``(ability, response, ground truth)`` triples, in order (none: none)."""
    if not triples:
        return []
    abilities, responses, ground_truths = (list(column) for column in zip(*triples))
    return verify_all(abilities, responses, ground_truths, on_progress=on_progress)


def verify_table(rows, workers: int | None = None):
    """Score a table with columns ``response``, ``ability`` and ``ground_truth`` (any others are
    kept): the input with the ``Verdict`` fields appended, in the same row order."""
    import pandas as pd

    missing = [c for c in ("response", "ability", "ground_truth") if c not in rows.columns]
    if missing:
        raise ValueError(f"verify_table: the table lacks column(s) {missing}; it has {list(rows.columns)}")
    empty = missing_values(rows)
    if empty:
        shown = "; ".join(f"row {pos}: {field}" for pos, field in empty[:5])
        more = f" (and {len(empty) - 5} more)" if len(empty) > 5 else ""
        raise ValueError(
            f"verify_table: {len(empty)} row(s) lack a value: {shown}{more} (rows counted from 0; nothing was scored)"
        )
    verdicts = verify_all(
        list(rows["ability"]),
        [str(r) for r in rows["response"]],
        [str(g) for g in rows["ground_truth"]],
        workers=workers,
    )
    scored = pd.DataFrame([v.as_row() for v in verdicts], index=rows.index)
    return pd.concat([rows.drop(columns=[c for c in scored.columns if c in rows.columns]), scored], axis=1)


def missing_values(rows, fields=("response", "ability", "ground_truth")) -> list[tuple[int, str]]:
    """``(row position, field)`` for every null value, and every empty ``ability`` or
    ``ground_truth``: rows that cannot be graded (an empty response can: it scores 0)."""
    out = []
    for field in fields:
        for pos, value in enumerate(rows[field]):
            null = value is None or (isinstance(value, float) and value != value)
            blank = field != "response" and isinstance(value, str) and not value.strip()
            if null or blank:
                out.append((pos, field))
    return sorted(out)


def summarise(scored) -> str:
    """A plain-text summary of a scored table: accuracy and reasons by ability, isolation used."""
    lines = [f"{len(scored)} rows"]
    for ability, g in scored.groupby("ability"):
        reasons = ", ".join(f"{k} {v}" for k, v in g["reason"].value_counts().items())
        lines.append(
            f"  {ability:<5} n={len(g):<6} accuracy {100 * g['correct'].mean():5.1f}%  "
            f"mean score {g['score'].mean():.3f}  ({reasons})"
        )
    isolation = scored.loc[scored["ability"] == "code", "isolation"].value_counts()
    if len(isolation):
        lines.append("  code isolation: " + ", ".join(f"{k} ({v})" for k, v in isolation.items()))
    return "\n".join(lines)


def verifier_error(row: int, ability: str, exc: BaseException) -> Verdict:
    """The verdict of a row whose grader raised: score 0, reason ``verifier_error``, the error
    text (truncated) in ``error``; logged as a warning."""
    text = f"{type(exc).__name__}: {exc}"
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    log.warning(
        "verify_all: the %s verifier raised on row %d (%s); the row scores 0 (reason "
        "verifier_error) and the rest of the batch goes on",
        ability,
        row,
        text,
    )
    return Verdict(0.0, False, "verifier_error", error=text)
