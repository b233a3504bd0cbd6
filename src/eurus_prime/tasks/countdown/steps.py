"""Countdown: make a target from a pool of numbers, one move per line, and re-execute the moves.

A move combines two numbers of the current pool into one with one of the puzzle's operators:
``a + b``, ``a - b`` (``a >= b``: no negative results) or ``a * b``. A response writes one move per line, ``a op b = c [pool]`` (the
bracketed pool after the move is a note for the writer; the checker ignores it), then boxes the
last number. The task is solved when every number was used once and the last number is the target.

Ground-truth process label (ProcessBench's "earliest error step"): move k is wrong when it is not
a line ``a op b = c``, uses a number the pool does not hold or an operator the puzzle does not
allow, computes wrongly, goes negative, or
leaves a pool from which the target can no longer be reached (exhaustive search,
``reachable``). The output step (index ``moves``) is wrong when the box is missing or does not hold
the target. A response is right exactly when it has no wrong step, so the outcome verifier
(``verifiers.countdown``) and the label cannot disagree.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from eurus_prime.tasks.steps import BOXED, StepLabel, boxed_line

#: One move: ``8 * 7 = 56``, optionally followed by the pool after it, ``[56 3 2]``.
MOVE_LINE = re.compile(
    r"^[ \t]*(\d+)[ \t]*([-+*])[ \t]*(\d+)[ \t]*=[ \t]*(-?\d+)[ \t]*(?:\[[^\]\n]*\])?[ \t]*$", re.MULTILINE
)
#: The question: ``Make 42 from 3, 8, 2, 9, 5: combine ... with +, - or *, ...``.
QUESTION = re.compile(
    r"Make (\d+) from (\d+(?:, \d+)+): combine two numbers at a time with ([-+*](?:(?:, | or )[-+*])*),"
)
OPS = ("+", "-", "*")


@dataclass(frozen=True)
class Puzzle:
    """The numbers (in the question's order), the target and the operators a move may use."""

    numbers: tuple[int, ...]
    target: int
    ops: tuple[str, ...] = OPS

    def __post_init__(self) -> None:
        bad = [op for op in self.ops if op not in OPS]
        if bad or not self.ops:
            raise ValueError(f"countdown operators must be some of {list(OPS)}, got {list(self.ops)}")

    def question(self) -> str:
        """The question text (parsed back by ``parse_question``)."""
        ops = list(self.ops)
        said = ops[0] if len(ops) == 1 else ", ".join(ops[:-1]) + " or " + ops[-1]
        return (
            f"Make {self.target} from {', '.join(map(str, self.numbers))}: combine two numbers at a time "
            f"with {said}, no negatives, each number once."
        )

    def ground_truth(self) -> str:
        """The verifier's ground truth: ``{"numbers": [...], "target": t, "operators": [...]}`` as JSON."""
        return json.dumps({"numbers": list(self.numbers), "target": self.target, "operators": list(self.ops)})

    @property
    def n_moves(self) -> int:
        return len(self.numbers) - 1


def parse_question(text: str) -> Puzzle:
    """The puzzle of the last ``Make T from a, b, ...:`` question in ``text`` (a prompt).

    Raises:
        ValueError: naming the text when it holds no such question.
    """
    found = QUESTION.findall(text)
    if not found:
        raise ValueError(f"no countdown question 'Make T from a, b, ...:' in {text[:120]!r}")
    target, numbers, ops = found[-1]
    return Puzzle(tuple(int(x) for x in numbers.split(", ")), int(target), tuple(o for o in OPS if o in ops))


def parse_ground_truth(ground_truth: str) -> Puzzle:
    """The puzzle of a ground-truth JSON string; ValueError naming what is wrong."""
    try:
        record = json.loads(ground_truth)
        numbers, target, ops = record["numbers"], record["target"], record.get("operators", list(OPS))
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise ValueError(
            f"countdown ground truth must be JSON {{'numbers': [...], 'target': int, 'operators': [...]}}, "
            f"got {ground_truth[:120]!r}"
        ) from err
    if not isinstance(numbers, list) or len(numbers) < 2 or not all(isinstance(x, int) and x >= 0 for x in numbers):
        raise ValueError(f"countdown ground truth: 'numbers' must list 2 or more non-negative ints, got {numbers!r}")
    if not isinstance(target, int):
        raise ValueError(f"countdown ground truth: 'target' must be an int, got {target!r}")
    if not isinstance(ops, list):
        raise ValueError(f"countdown ground truth: 'operators' must be a list, got {ops!r}")
    return Puzzle(tuple(numbers), target, tuple(ops))


def combine(a: int, op: str, b: int) -> int | None:
    """The result of one move, or None when the move is not allowed (a negative result)."""
    if op == "+":
        return a + b
    if op == "*":
        return a * b
    if op == "-":
        return a - b if a >= b else None
    raise ValueError(f"unknown operator {op!r}; valid: {list(OPS)}")


def moves(pool: Sequence[int], ops: Sequence[str] = OPS) -> list[tuple[int, str, int, int, tuple[int, ...]]]:
    """Every move from ``pool`` with operators ``ops``: ``(a, op, b, result, rest)`` with ``a >= b``
    and ``rest`` the pool without a and b (in pool order); one move per distinct (a, op, b)."""
    out, seen = [], set()
    for i in range(len(pool)):
        for j in range(i + 1, len(pool)):
            a, b = max(pool[i], pool[j]), min(pool[i], pool[j])
            rest = tuple(pool[k] for k in range(len(pool)) if k not in (i, j))
            for op in ops:
                if (a, op, b) in seen:
                    continue
                seen.add((a, op, b))
                out.append((a, op, b, combine(a, op, b), rest))  # type: ignore[arg-type]
    return out


@functools.lru_cache(maxsize=1 << 20)
def _reachable(pool: tuple[int, ...], target: int, ops: tuple[str, ...]) -> bool:
    if len(pool) == 1:
        return pool[0] == target
    return any(_reachable(tuple(sorted((*rest, c))), target, ops) for _, _, _, c, rest in moves(pool, ops))


def reachable(pool: Sequence[int], target: int, ops: Sequence[str] = OPS) -> bool:
    """Whether some sequence of moves with ``ops`` turns ``pool`` into exactly ``[target]``
    (memoised search)."""
    return bool(pool) and _reachable(tuple(sorted(pool)), target, tuple(ops))


@dataclass(frozen=True)
class MoveLabel(StepLabel):
    """A countdown response's process label. ``wrong_span`` blames the move's operands and
    operator for a move that loses the target or uses a number the pool lacks, the result for a
    wrong sum, the line of an extra move, the box (else the response's last 20 characters) for a
    missing move or a wrong answer."""

    why: str = ""
    """What was wrong, in words (empty when nothing)."""
    final: int | None = None
    """The last number the moves left (None when no move ran)."""


def label_steps(puzzle: Puzzle, response: str) -> MoveLabel:
    """Re-execute ``response``'s moves against ``puzzle`` (see the module docstring)."""
    lines = list(MOVE_LINE.finditer(response))
    boxed, out_span = boxed_line(response)
    n = puzzle.n_moves
    spans = [(m.start(), m.end()) for m in lines[:n]] + ([out_span] if out_span else [])
    tail = (max(0, len(response) - 20), len(response))
    pool = list(puzzle.numbers)

    def wrong(k: int, span, why: str) -> StepLabel:
        final = pool[0] if len(pool) == 1 else None
        return MoveLabel(k, n + 1, tuple(spans), span or out_span or tail, why, final)

    for k in range(n):
        if k >= len(lines):
            return wrong(k, None, f"move {k} is missing")
        line = lines[k]
        a, op, b, c = int(line.group(1)), line.group(2), int(line.group(3)), int(line.group(4))
        choice = (line.start(1), line.end(3))
        if op not in puzzle.ops:
            return wrong(k, line.span(2), f"move {k} uses {op}, which this puzzle does not allow")
        left = list(pool)
        for field, x in ((1, a), (3, b)):
            if x not in left:
                return wrong(k, line.span(field), f"move {k} uses {x}, which the pool {pool} does not hold")
            left.remove(x)
        value = combine(a, op, b)
        if value is None:
            return wrong(k, choice, f"move {k}: {a} - {b} is negative")
        if c != value:
            return wrong(k, line.span(4), f"move {k}: {a} {op} {b} is {value}, not {c}")
        pool = [value, *left]
        if not reachable(pool, puzzle.target, puzzle.ops):
            return wrong(k, choice, f"move {k} leaves {pool}, from which {puzzle.target} cannot be made")
    if len(lines) > n:
        return wrong(n, (lines[n].start(), lines[n].end()), "an extra move after the last number")
    if not boxed:
        return wrong(n, None, "no boxed answer")
    if boxed[-1].group(1).strip() != str(puzzle.target):
        return wrong(
            n,
            boxed[-1].span(1) if boxed[-1].group(1) else out_span,
            f"the box holds {boxed[-1].group(1)!r}, not {puzzle.target}",
        )
    return MoveLabel(-1, n + 1, tuple(spans), None, "", pool[0])


def answer_text(response: str) -> str | None:
    """A countdown response's answer, for display and majority voting: its moves without the pool
    notes, then the box (``8 * 7 = 56; 56 - 3 = 53 => 53``); None without a box."""
    boxed = BOXED.findall(response)
    if not boxed:
        return None
    steps = [f"{m.group(1)} {m.group(2)} {m.group(3)} = {m.group(4)}" for m in MOVE_LINE.finditer(response)]
    return "; ".join(steps) + f" => {boxed[-1].strip()}"


def expression(puzzle: Puzzle, response: str) -> str | None:
    """The arithmetic expression the response's moves build (``((8*7)-3)+2``), or None when its
    moves do not use the pool's numbers: what reasoning-gym's ``score_answer`` grades."""
    built = [[x, str(x)] for x in puzzle.numbers]
    for line in MOVE_LINE.finditer(response):
        a, op, b, c = int(line.group(1)), line.group(2), int(line.group(3)), int(line.group(4))
        ia = next((i for i, (v, _) in enumerate(built) if v == a), None)
        if ia is None:
            return None
        ea = built.pop(ia)[1]
        ib = next((i for i, (v, _) in enumerate(built) if v == b), None)
        if ib is None:
            return None
        eb = built.pop(ib)[1]
        built.insert(0, [c, f"({ea} {op} {eb})"])
    return built[0][1] if len(built) == 1 else None
