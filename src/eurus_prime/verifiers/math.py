"""Math answer extraction and equivalence (PRIME_REFERENCE.md, "Verifiers").

Extraction takes the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces matched, and falls back to
the text after "answer is". Equivalence tries, cheapest first: normalised string equality, numeric
equality within relative 1e-4, then math-verify (latex2sympy + sympy) for symbolic answers.
"""

from __future__ import annotations

import re
import threading

from eurus_prime.verifiers.verdict import Verdict

MAX_ANSWER_CHARS = 1000
MATH_VERIFY_TIMEOUT_S = 5


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{..}`` / ``\\fbox{..}`` in ``text``, braces matched."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i]
    return None


def extract_answer(response: str) -> str | None:
    boxed = last_boxed(response)
    if boxed is not None:
        return boxed.strip()
    m = re.findall(r"answer is[:\s]*\$?([^\n$]+)", response, flags=re.IGNORECASE)
    return m[-1].strip().rstrip(".") if m else None


_WRAPPERS = re.compile(r"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}")


def normalize(answer: str) -> str:
    """A light MATH-style normaliser: drop LaTeX wrappers, ``$``, spaces, thousands separators."""
    s = _WRAPPERS.sub(r"\1", answer)
    s = s.replace("\\left", "").replace("\\right", "").replace("\\!", "").replace("$", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\s+", "", s).rstrip(".")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")
    return s


def _as_number(s: str) -> float | None:
    s = s.rstrip("%") if s.endswith("%") else s
    m = re.fullmatch(r"(-?\d+)/(\d+)|\\frac\{(-?\d+)\}\{(\d+)\}", s)
    try:
        if m:
            num, den = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            return int(num) / int(den)
        return float(s)
    except (ValueError, ZeroDivisionError):
        return None


def _numbers_equal(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-4 * max(abs(a), abs(b), 1e-12) or a == b


def _math_verify_equal(pred: str, truth: str) -> bool:
    from math_verify import parse, verify  # heavy import, only for symbolic answers

    # math-verify enforces its timeout with signal alarms, which only work in the main thread.
    timeout = MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    gold = parse(f"${truth}$", parsing_timeout=timeout)
    guess = parse(f"${pred}$", parsing_timeout=timeout)
    return bool(verify(gold, guess, timeout_seconds=timeout))


def grade_math(response: str, ground_truth: str) -> Verdict:
    """Score 1 if the extracted answer equals ``ground_truth``, else 0; never raises."""
    answer = extract_answer(response)
    if answer is None:
        return Verdict(0.0, False, "no_answer")
    if len(answer) > MAX_ANSWER_CHARS:
        return Verdict(0.0, False, "too_long", extracted=answer[:100])
    pred, truth = normalize(answer), normalize(ground_truth)
    if pred == truth:
        return Verdict(1.0, True, "correct", extracted=answer)
    a, b = _as_number(pred), _as_number(truth)
    if a is not None and b is not None:
        ok = _numbers_equal(a, b)
        return Verdict(float(ok), ok, "correct" if ok else "wrong", extracted=answer)
    try:
        ok = _math_verify_equal(pred, truth)
    except TimeoutError:
        return Verdict(0.0, False, "timeout", extracted=answer)
    except Exception as exc:  # a grader bug or a parse failure must not stop a run
        return Verdict(0.0, False, "error", extracted=answer, error=f"{type(exc).__name__}: {exc}")
    return Verdict(float(ok), ok, "correct" if ok else "wrong", extracted=answer)
