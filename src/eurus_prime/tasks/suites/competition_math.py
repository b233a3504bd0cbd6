"""The math suites (AIME 2024, AMC, MATH-500, Minerva Math, OlympiadBench): question and answer fields."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from eurus_prime.tasks.suites.base import _BadRow, _first, _Item, _looked_for, _native_id, _need_text, _present
from eurus_prime.verifiers.math import last_boxed

log = logging.getLogger(__name__)


def _answer_text(value: Any) -> str:
    """A native answer as a ground-truth string: integral floats (AMC's ``142.0``) as integers,
    lists (OlympiadBench's ``final_answer``) joined with ", ", TeX ``$`` delimiters dropped."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(_answer_text(v) for v in value)
    return re.sub(r"(?<!\\)\$", "", str(value)).strip()


def _boxed_answer(row: Mapping[str, Any], answers: Sequence[str], solutions: Sequence[str]) -> str:
    """The last ``\\boxed{}`` of the solution text (Minerva's and MATH's native answers)."""
    found = _first(row, solutions)
    boxed = None if found is None else last_boxed(str(found[1]))
    if boxed is None or not boxed.strip():
        raise _BadRow(
            f"no answer field (looked for {_looked_for(answers)}) and no solution with a "
            f"\\boxed{{}} answer (looked for {_looked_for(solutions)})"
        )
    return boxed.strip()


def _convert_math(
    row: Mapping[str, Any], *, questions: Sequence[str], answers: Sequence[str], solutions: Sequence[str] = ()
) -> _Item:
    """Question as is; answer from the first answer field, else (where ``solutions`` are named)
    the last ``\\boxed{}`` of the solution."""
    _, question = _need_text(row, questions, "question")
    found = _first(row, answers)
    if found is not None:
        answer = _answer_text(found[1])
        if not answer:
            raise _BadRow(f"field {found[0]!r} holds no answer: {found[1]!r}")
    elif solutions:
        answer = _boxed_answer(row, answers, solutions)
    else:
        raise _BadRow(f"no answer field (looked for {_looked_for(answers)})")
    return _Item(question, answer, _native_id(row))


def _is_aime_2024(row: Mapping[str, Any]) -> bool:
    """AI-MO's AIME set holds 2022-2024; PRIME keeps 2024 by the problem's URL. Rows without a
    URL (Maxwell-Jia/AIME_2024, all 2024) are kept."""
    url = row.get("url")
    return not _present(url) or "2024_AIME" in str(url)
