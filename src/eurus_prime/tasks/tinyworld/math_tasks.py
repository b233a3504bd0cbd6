"""Multi-step integer word problems and their (imperfect) demonstrator.

A task is a start value and 1..4 steps, each written as a verb phrase ("sells 4", "doubles them")
that stands for one integer operation. The demonstrator writes an Eurus-2-style action trace: it
translates every phrase into an operation in [ASSESS], computes the chain in [ADVANCE], and boxes
the result in [OUTPUT].

Why the demonstrator is wrong on purpose: four phrases carry *systematic misconceptions* ("sells n"
read as +n, "doubles them" as +2, "triples them" as +3, "gives half of them away" as -2). On those phrases the demonstrator picks the wrong
operation with probability ``misconception_rate`` (> 0.5), so the imitation-optimal greedy policy
is wrong there, and no amount of further SFT fixes it. Sampling at temperature 1 still finds the
right operation part of the time, which is the headroom that only an outcome reward can unlock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_VALUE = 99

NAMES = (
    ("Ann", "she"),
    ("Ben", "he"),
    ("Mia", "she"),
    ("Tom", "he"),
    ("Zoe", "she"),
    ("Sam", "he"),
    ("Eva", "she"),
    ("Leo", "he"),
    ("Ivy", "she"),
    ("Max", "he"),
    ("Amy", "she"),
    ("Dan", "he"),
)
ITEMS = (
    "apples",
    "coins",
    "books",
    "cards",
    "pens",
    "stamps",
    "shells",
    "marbles",
    "cookies",
    "stickers",
    "beads",
    "toys",
)


@dataclass(frozen=True)
class Verb:
    """One phrase family: its text, the true operation, and the demonstrator's misconception."""

    template: str  #: phrase with ``{n}`` for the operand, e.g. "sells {n}"
    op: str  #: "+", "-", "*" or "/"
    fixed_operand: int | None = None  #: operand implied by the phrase ("doubles them" -> 2)
    wrong_op: str | None = None  #: the misconception's operation, if the phrase has one
    wrong_operand: int | None = None  #: the misconception's operand (None: same as the true one)


VERBS: tuple[Verb, ...] = (
    Verb("finds {n} more", "+"),
    Verb("buys {n} more", "+"),
    Verb("gets {n} from a friend", "+"),
    Verb("loses {n}", "-"),
    Verb("gives away {n}", "-"),
    Verb("sells {n}", "-", wrong_op="+"),
    Verb("doubles them", "*", fixed_operand=2, wrong_op="+", wrong_operand=2),
    Verb("triples them", "*", fixed_operand=3, wrong_op="+", wrong_operand=3),
    Verb("splits them into {n} equal piles and keeps one", "/"),
    Verb("gives half of them away", "/", fixed_operand=2, wrong_op="-", wrong_operand=2),
)


@dataclass(frozen=True)
class Step:
    verb: Verb
    operand: int

    @property
    def phrase(self) -> str:
        return self.verb.template.format(n=self.operand)


@dataclass(frozen=True)
class MathTask:
    name: str
    pronoun: str
    item: str
    start: int
    steps: tuple[Step, ...]

    @property
    def difficulty(self) -> int:
        return len(self.steps)

    @property
    def question(self) -> str:
        parts = [f"{self.name} has {self.start} {self.item}."]
        for i, step in enumerate(self.steps):
            lead = self.pronoun.capitalize() if i == 0 else f"Then {self.pronoun}"
            parts.append(f"{lead} {step.phrase}.")
        parts.append(f"How many {self.item} does {self.name} have now?")
        return " ".join(parts)

    @property
    def answer(self) -> int:
        return run_chain(self.start, [(s.verb.op, s.operand) for s in self.steps])


def apply_op(value: int, op: str, operand: int, max_value: int = MAX_VALUE) -> int | None:
    """Apply one operation; None when the result leaves the world's integers [0, max_value]."""
    if op == "+":
        out = value + operand
    elif op == "-":
        out = value - operand
    elif op == "*":
        out = value * operand
    elif op == "/":
        if operand == 0 or value % operand:
            return None
        out = value // operand
    else:
        raise ValueError(f"unknown operation {op!r}")
    return out if 0 <= out <= max_value else None


def run_chain(start: int, ops: list[tuple[str, int]]) -> int:
    """The value at the end of a chain of operations; ValueError if any step is invalid."""
    values = _chain_values(start, ops)
    if values is None:
        raise ValueError(f"invalid chain from {start}: {ops}")
    return values[-1]


def _sample_operand(rng: random.Random, verb: Verb, value: int, max_operand: int) -> int:
    if verb.fixed_operand is not None:
        return verb.fixed_operand
    if verb.op == "/":
        return rng.choice((2, 3, 4, 5))
    if verb.op == "-":
        return rng.randint(1, max(1, min(value, max_operand)))
    return rng.randint(1, max_operand)


def _wrong(step: Step) -> tuple[str, int]:
    verb = step.verb
    operand = step.operand if verb.wrong_operand is None else verb.wrong_operand
    return verb.wrong_op or verb.op, operand


def _chain_values(start: int, ops: list[tuple[str, int]], max_value: int = MAX_VALUE) -> list[int] | None:
    values = [start]
    for op, operand in ops:
        nxt = apply_op(values[-1], op, operand, max_value)
        if nxt is None:
            return None
        values.append(nxt)
    return values


def _ops(task_steps: tuple[Step, ...], slips: frozenset[int]) -> list[tuple[str, int]]:
    return [_wrong(s) if i in slips else (s.verb.op, s.operand) for i, s in enumerate(task_steps)]


def sample_math_task(
    rng: random.Random, difficulty: int, max_value: int = MAX_VALUE, max_operand: int = 20
) -> MathTask:
    """Draw a task with ``difficulty`` steps whose true chain, and the chain under every possible
    combination of misconceptions, stays integral in [0, max_value]: the demonstrator can then
    always write a well-formed trace, right or wrong. Operands of +/- are at most
    ``max_operand``; start values at most min(30, max_value)."""
    name, pronoun = rng.choice(NAMES)
    item = rng.choice(ITEMS)
    while True:
        start = rng.randint(2, min(30, max_value))
        value, steps = start, []
        for _ in range(difficulty):
            verb = rng.choice(VERBS)
            step = Step(verb, _sample_operand(rng, verb, value, max_operand))
            nxt = apply_op(value, verb.op, step.operand, max_value)
            if nxt is None:
                break
            steps.append(step)
            value = nxt
        if len(steps) != difficulty:
            continue
        buggy = [i for i, s in enumerate(steps) if s.verb.wrong_op is not None]
        subsets = (frozenset(i for j, i in enumerate(buggy) if mask >> j & 1) for mask in range(1 << len(buggy)))
        if all(_chain_values(start, _ops(tuple(steps), s), max_value) is not None for s in subsets):
            return MathTask(name, pronoun, item, start, tuple(steps))


def demonstrate_math(task: MathTask, rng: random.Random, misconception_rate: float) -> str:
    """The demonstrator's action trace for ``task``: each misconceived phrase is translated
    wrongly with probability ``misconception_rate``, independently per step."""
    slips = frozenset(
        i for i, s in enumerate(task.steps) if s.verb.wrong_op is not None and rng.random() < misconception_rate
    )
    ops = _ops(task.steps, slips)
    values = _chain_values(task.start, ops)
    assert values is not None  # guaranteed by sample_math_task
    lines = [f"{v} {op} {operand} = {nxt}" for v, (op, operand), nxt in zip(values, ops, values[1:])]
    plan = ", ".join(f"{op}{operand}" for op, operand in ops)
    return (
        f"[ASSESS]\n\nStart: {task.start}. Steps: {plan}.\n\nNext action: [ADVANCE]\n\n"
        "[ADVANCE]\n\n" + "\n".join(lines) + "\n\nNext action: [OUTPUT]\n\n"
        f"[OUTPUT]\n\nThe answer is \\boxed{{{values[-1]}}}"
    )
