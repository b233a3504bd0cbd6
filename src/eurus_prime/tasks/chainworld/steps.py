"""Ground-truth process labels for chain sums: re-execute every step of a response.

A chain-sum response writes one step per line, ``a op b = c`` (``op`` is ``+`` or ``-``), then
boxes the result. Step k must start from the previous step's result (the first from the first
term), apply the expression's k-th operator and term, and compute correctly; the output step must
box the last result. The *first wrong step* is the index of the first line that breaks any of
these (the output step's index is the number of arithmetic steps), or -1 when every step holds.

This is the label an oracle process reward and the PRM's first-error localisation use
(ProcessBench's "earliest error step").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eurus_prime.tasks.steps import StepLabel, boxed_line

#: One arithmetic step: ``-3 + 5 = 2``.
STEP_LINE = re.compile(r"^[ \t]*(-?\d+)[ \t]*([+-])[ \t]*(\d+)[ \t]*=[ \t]*(-?\d+)[ \t]*$", re.MULTILINE)
#: The question's expression: ``... problem: 4 + 1 - 7 =``.
EXPRESSION = re.compile(r"(-?\d+(?:\s*[+-]\s*\d+)+)\s*=")


@dataclass(frozen=True)
class Chain:
    """An expression ``start op1 t1 op2 t2 ...`` as a start value and its steps."""

    start: int
    ops: tuple[tuple[str, int], ...]

    @property
    def values(self) -> list[int]:
        """The running value after 0, 1, ..., len(ops) steps."""
        out = [self.start]
        for op, term in self.ops:
            out.append(apply(out[-1], op, term))
        return out

    @property
    def answer(self) -> int:
        return self.values[-1]

    @property
    def expression(self) -> str:
        """``4 + 1 - 7``."""
        return " ".join([str(self.start), *(f"{op} {term}" for op, term in self.ops)])

    @property
    def pattern(self) -> str:
        """The operator sequence, e.g. ``+--+``: the expression's structure without its numbers."""
        return "".join(op for op, _ in self.ops)


def apply(value: int, op: str, term: int) -> int:
    if op == "+":
        return value + term
    if op == "-":
        return value - term
    raise ValueError(f"unknown operator {op!r}")


def parse_expression(text: str) -> Chain:
    """The chain of the last ``a op b op c ... =`` expression in ``text`` (a question or a prompt).

    Raises:
        ValueError: naming the text when it holds no such expression.
    """
    found = EXPRESSION.findall(text)
    if not found:
        raise ValueError(f"no chain-sum expression 'a + b - c ... =' in {text[:120]!r}")
    start, ops = _terms(found[-1])
    return Chain(start, ops)


def label_steps(chain: Chain, response: str) -> StepLabel:
    """Re-execute ``response`` step by step against ``chain`` (see the module docstring).

    ``wrong_span`` blames the first wrong step's first wrong field (start value, operator, term or
    result; the boxed answer of the output step), the whole line of an extra step, or for a
    missing step the boxed line (else the response's last 20 characters)."""
    lines = list(STEP_LINE.finditer(response))
    boxed, out_span = boxed_line(response)
    n_arith = len(chain.ops)
    spans = [(m.start(), m.end()) for m in lines[:n_arith]] + ([out_span] if out_span else [])
    tail = (max(0, len(response) - 20), len(response))

    def wrong(k: int, span) -> StepLabel:
        return StepLabel(k, n_arith + 1, tuple(spans), span or out_span or tail)

    value = chain.start
    for k, (op, term) in enumerate(chain.ops):
        if k >= len(lines):  # a missing step: blame the output line (else the tail)
            return wrong(k, None)
        line = lines[k]
        a, line_op, b, c = line.groups()
        # The first field that is wrong (start value, operator, term, result): the token(s) where
        # the step went wrong, not the whole line, whose other tokens are right.
        for field, ok in enumerate(
            (int(a) == value, line_op == op, int(b) == term, int(c) == apply(value, op, term)), start=1
        ):
            if not ok:
                return wrong(k, line.span(field))
        value = int(c)
    if len(lines) > n_arith:  # an extra step: blame it
        return wrong(n_arith, (lines[n_arith].start(), lines[n_arith].end()))
    if not boxed or boxed[-1].group(1).strip() != str(value):
        return wrong(n_arith, boxed[-1].span(1) if boxed and boxed[-1].group(1) else out_span)
    return StepLabel(-1, n_arith + 1, tuple(spans), None)


def _terms(text: str) -> tuple[int, tuple[tuple[str, int], ...]]:
    """``-2 + 7 - 9`` as (-2, (("+", 7), ("-", 9)))."""
    parts = re.findall(r"-?\d+|[+-]", text.replace(" ", "").replace("\t", ""))
    flat: list[str] = []
    for tok in parts:  # "4-7" tokenises as ["4", "-7"]
        if flat and tok.startswith("-") and tok != "-" and flat[-1] not in "+-":
            flat += ["-", tok[1:]]
        else:
            flat.append(tok)
    return int(flat[0]), tuple((flat[i], int(flat[i + 1])) for i in range(1, len(flat) - 1, 2))
