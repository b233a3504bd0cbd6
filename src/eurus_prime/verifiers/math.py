"""Math answer extraction and equivalence (PRIME_REFERENCE.md, "Verifiers").

Extraction
    The content of the LAST ``\\boxed{...}`` / ``\\fbox{...}`` (braces matched in one linear pass,
    escaped ``\\{`` ``\\}`` ignored), else ``\\boxed 5`` (no braces), else the text after the last
    "final answer is" / "final answer:" / "the answer is" / "answer:" (a ``$...$`` span if one
    follows, else up to the end of the line or sentence).

Equivalence, cheapest first (``Verdict.rule`` names the rule that decided):
    ``normaliser``  the MATH-style normalised strings are equal (:func:`normalize`).
    ``numeric``     both sides are numbers (:class:`Num`), compared EXACT WHERE EXACT:
                    * integers, fractions, terminating decimals, mixed numbers (``2\\frac{1}{3}``,
                      ``2 1/3``), repeating decimals (``0.\\overline{3}``, ``0.1\\dot{6}``, ``0.(3)``),
                      scientific notation (``1.5\\times10^{6}``, ``1.5e6``) and closed forms with
                      rational arithmetic are read as ``Fraction`` and must be EQUAL: ``1.0001`` !=
                      ``1``, ``-27971/2`` != ``-13986``, and no integer is ever off by 1;
                    * a tolerance only where a side is inexact, and only as wide as the digits a
                      decimal states: a decimal stands for an irrational value (``\\pi``,
                      ``\\sqrt{2}``, by a small float evaluator or sympy) or a fraction that does not
                      terminate when it is within half a unit of its last digit - the reference's
                      decimal when it states ``MIN_REFERENCE_DIGITS`` (3) significant digits (``0.143``
                      == ``\\frac{1}{7}``, ``18.85`` == ``6\\pi``), the answer's when it states
                      ``MIN_ANSWER_DIGITS`` (5) (``0.33333`` == ``\\frac{1}{3}``, ``3.14`` !=
                      ``\\pi``); two terminating decimals are always compared exactly;
                    * otherwise an irrational side equals a value only up to evaluation noise
                      (``FLOAT_NOISE`` / ``SYMPY_NOISE``, relative): ``\\sqrt{8}`` == ``2\\sqrt{2}``.
    ``identity``    two polynomials or rational functions in single-letter variables (or two
                    equations of them) agree in exact rational arithmetic at 4 points drawn from a
                    hash of the pair (:func:`_identity_compare`; differing at one point is a proof
                    of "not equal"): ``2(a+b)`` == ``2a+2b``, ``y=2x+1`` == ``2y=4x+2``, no sympy.
    ``symbolic``    math-verify (latex2sympy2_extended + sympy) says equal: expressions
                    (``\\frac{1}{2}x`` == ``x/2``), equations, tuples and intervals (order and
                    bracket type matter), sets (order does not), matrices.
    ``none``        nothing matched (reason ``wrong``), or there was no usable answer.
    When both sides are numbers the fast path's "not equal" is final (sympy is not run). Numbers
    the fast path cannot read (``\\log_2 8``) are evaluated by sympy and compared by the same
    rule, never by math-verify's own number comparison, which rounds to 6 decimal places. Tuples,
    intervals (brackets must match), sets and bare lists (``1, 2``; order free) made only of such
    numbers (and ``\\infty``) are compared element by element by the same rule; numbers inside
    matrices, or beside symbols, are compared by math-verify (its rounding applies there).

Percent (decision): MATH's convention holds - the percent sign is dropped, so ``50\\%`` == ``50``.
    The PRIME reference allows "percent variants", so when either side carries a percent sign its
    value divided by 100 is also accepted: ``50\\%`` == ``0.5``. Without a percent sign ``50`` and
    ``0.5`` are different answers.

Equations: an answer ``x = 3`` (one ``=``, a single variable, optionally subscripted, on the left)
    is compared by its right side, so ``x = 3`` == ``3`` (MATH convention, also math-verify's).

Timeouts (a hard ``CHECK_TIMEOUT_S`` per check, wherever ``grade_math`` is called from):
    math-verify is always called with its own signal-based timeouts disabled (``parsing_timeout=
    None``, ``timeout_seconds=None``) because they raise ``ValueError`` outside the main thread.
    * Main thread: the slow path runs under ``signal.setitimer(ITIMER_REAL)`` whose handler raises
      :class:`CheckTimeout` (a ``BaseException``, so library ``except Exception`` blocks do not
      swallow it; it re-fires every 50 ms until disarmed). A pre-existing SIGALRM handler and
      timer (pytest-timeout, a caller's alarm) are restored afterwards with their remaining time.
    * Any other thread: the slow path is sent to a lazily created module-level
      ``ProcessPoolExecutor`` (``forkserver``, else ``spawn``; ``POOL_WORKERS`` processes). The
      worker runs it in its own main thread under the same itimer; the caller waits at most
      ``CHECK_TIMEOUT_S + POOL_GRACE_S`` and, past that (a C-level computation a signal cannot
      interrupt), kills the pool's processes and lets the next check start a fresh pool.
    * If no process can be started (e.g. inside a daemonic process), the check runs in a daemon
      thread that is abandoned on timeout (the caller still gets ``timeout`` in time).
    Answers longer than ``MAX_ANSWER_CHARS`` are not parsed at all (reason ``too_long``).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import re
import signal
import threading
import time
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from fractions import Fraction

from eurus_prime.verifiers.verdict import Verdict

log = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 1000
CHECK_TIMEOUT_S = 2.0  #: hard limit of one slow (sympy) check, in seconds
POOL_GRACE_S = 2.0  #: extra wait for a pool worker before it is killed
POOL_START_TIMEOUT_S = 120.0  #: a fresh worker pool must answer a ping within this
POOL_WORKERS = 1
SLOW_CACHE_SIZE = 4096  #: results of slow checks, keyed by the two cleaned answers
MATH_VERIFY_TIMEOUT_S = None  # kept for callers that read it: math-verify's own timeout is off


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("math-verify")
    except Exception:  # noqa: BLE001
        return "unknown"


MATH_VERIFY_VERSION = _version()
VERIFIER = f"math/math_verify-{MATH_VERIFY_VERSION}"


class CheckTimeout(BaseException):
    """Raised inside a check by our alarm; a BaseException so ``except Exception`` misses it."""


# ---------------------------------------------------------------------------------- extraction

_BOX_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOX_BARE = re.compile(r"\\boxed\s+([^\s${}]+)")
_ANSWER_CUE = re.compile(r"(?:final\s+answer|the\s+answer|answer)\s*(?:is\s*:?|:|=)\s*", flags=re.IGNORECASE)


def _brace_matches(text: str) -> dict[int, int]:
    """``{open index: close index}`` for every matched unescaped brace pair; one linear pass."""
    stack: list[int] = []
    out: dict[int, int] = {}
    escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
            continue
        if ch == "\\":
            escaped = True
        elif ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            out[stack.pop()] = i
    return out


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{..}`` / ``\\fbox{..}`` in ``text``, braces matched."""
    starts = [m.end() for m in _BOX_START.finditer(text)]
    if not starts:
        return None
    matches = _brace_matches(text)
    for start in reversed(starts):
        close = matches.get(start - 1)
        if close is not None:
            return text[start:close]
    return None


def _after_cue(tail: str) -> str | None:
    tail = tail.lstrip()
    if tail.startswith("$"):
        dollars = re.match(r"\$\$?(.+?)\$", tail, flags=re.DOTALL)
        if dollars:
            return dollars.group(1).strip()
    line = tail.split("\n", 1)[0]
    line = re.split(r"\.\s|\$", line, maxsplit=1)[0]  # end of sentence / a stray dollar
    line = line.strip().rstrip(".").strip()
    return line or None


def extract_answer(response: str) -> str | None:
    """The final answer in ``response`` (see the module docstring), or None."""
    boxed = last_boxed(response)
    if boxed is not None:
        return boxed.strip()
    bare = _BOX_BARE.findall(response)
    if bare:
        return bare[-1].strip().rstrip(".")
    cues = list(_ANSWER_CUE.finditer(response))
    for cue in reversed(cues):
        found = _after_cue(response[cue.end() : cue.end() + 4 * MAX_ANSWER_CHARS])
        if found:
            return found
    return None


# ---------------------------------------------------------------------------------- normaliser

_UNIT_WORDS = (
    r"(?:square\s+|sq\.?\s*|cubic\s+)?(?:centimeters?|centimetres?|cm|millimeters?|mm|meters?|"
    r"metres?|m|kilometers?|km|inches|inch|in|feet|foot|ft|yards?|yd|miles?|mi|units?|"
    r"degrees?|deg|radians?|rad|dollars?|cents?|seconds?|sec|s|minutes?|min|hours?|hrs?|h|days?|"
    r"weeks?|months?|years?|kg|grams?|g|pounds?|lbs?|liters?|litres?|ml|mph|km/h|people|"
    r"students|apples|coins|books|cards|pens|stamps|shells|marbles|cookies|stickers|beads|toys|"
    r"ways|items|points|percent)(?:\^?\{?[23]\}?)?"
)
_TEXT_UNIT = re.compile(r"\\(?:text|textrm|mbox|mathrm)\{\s*" + _UNIT_WORDS + r"\s*\}(?:\^\{?[23]\}?)?\s*$")
_SPACED_UNIT = re.compile(r"(?<=[\d}.])\s+" + _UNIT_WORDS + r"\.?\s*$")
_WRAPPERS = re.compile(r"\\(?:text|textrm|textbf|textit|mathrm|mathbf|mbox|operatorname)\{([^{}]*)\}")
_EQ_LEFT = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?=(?!=)")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_FRAC_SHORT = re.compile(r"\\frac(\d)(\d)")
_FRAC_HALF = re.compile(r"\\frac(\{[^{}]*\})(\d)")
_SQRT_SHORT = re.compile(r"\\sqrt(\d+|[a-zA-Z])")
_A_SLASH_B = re.compile(r"(-?)(\d+)/(\d+)")


def _strip_common(answer: str) -> str:
    """Cleaning that keeps LaTeX parseable (spaces kept): wrappers, units, degrees, ``$``."""
    s = answer.strip()
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"\\(?:displaystyle|textstyle|!|,|;|:|quad|qquad)(?![a-zA-Z])", " ", s)
    s = s.replace("{,}", "").replace("~", " ")
    s = re.sub(r"\\(?:left|right|big|Big|bigl|bigr|Bigl|Bigr)(?![a-zA-Z])", "", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?", "", s).replace("\\circ", "").replace("\\degree", "")
    s = s.replace("°", "")
    for _ in range(2):
        s = _TEXT_UNIT.sub("", s).strip()
        s = _SPACED_UNIT.sub("", s).strip()
    s = _WRAPPERS.sub(r"\1", s)
    s = s.strip().rstrip(".").strip()
    return s


_MIXED_SPACED = re.compile(r"([-+]?)(\d+)\s+(\d+)/(\d+)")
_MIXED_FRAC = re.compile(r"([-+]?)(\d+)\\frac\{(\d+)\}\{(\d+)\}")
_REPEATING = re.compile(r"([-+]?)(\d*)\.(\d*)(?:\\overline\{(\d+)\}|\\overline(\d)|\\dot\{(\d)\}|\\dot(\d)|\((\d+)\))")


def _frac_text(sign: str, q: Fraction) -> str:
    q = -q if sign == "-" else q
    if q.denominator == 1:
        return str(q.numerator)
    return f"{'-' if q < 0 else ''}\\frac{{{abs(q.numerator)}}}{{{q.denominator}}}"


def _mixed(m: re.Match) -> str | None:
    """``2\\frac{1}{3}`` / ``2 1/3``: a whole number and a proper fraction, as one fraction."""
    whole, num, den = int(m.group(2)), int(m.group(3)), int(m.group(4))
    if den == 0 or num >= den:
        return None
    return _frac_text(m.group(1), whole + Fraction(num, den))


def _repeating(m: re.Match) -> str:
    """``0.1\\overline{6}``, ``0.\\dot{3}``, ``0.(3)``: a repeating decimal, as a fraction."""
    whole, fixed = m.group(2) or "0", m.group(3) or ""
    rep = next(g for g in m.groups()[3:] if g is not None)
    tail = Fraction(int(fixed + rep) - int(fixed or "0"), 10 ** len(fixed) * (10 ** len(rep) - 1))
    return _frac_text(m.group(1), int(whole) + tail)


def normalize(answer: str) -> str:
    """MATH-style normaliser: drop LaTeX wrappers (``\\text{}``, ``\\left``/``\\right``,
    ``\\displaystyle``, spacing commands), ``$``, all spaces, unit words, degrees, the percent sign,
    a trailing ".", thousands separators; ``\\dfrac``/``\\tfrac`` -> ``\\frac``; ``\\frac12`` ->
    ``\\frac{1}{2}``; ``a/b`` (integers) -> ``\\frac{a}{b}``; ``.5`` -> ``0.5``; ``x=3`` -> ``3``."""
    s = _strip_common(answer)
    m = _MIXED_SPACED.fullmatch(s)
    if m and _mixed(m) is not None:
        s = _mixed(m)
    s = re.sub(r"\s+", "", s)
    s = s.replace("\\%", "").replace("%", "")
    s = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF.sub(r"\\frac\1{\2}", s)
    s = _SQRT_SHORT.sub(r"\\sqrt{\1}", s)
    m = _MIXED_FRAC.fullmatch(s)
    if m and _mixed(m) is not None:
        s = _mixed(m)
    m = _REPEATING.fullmatch(s)
    if m:
        s = _repeating(m)
    if s.count("=") == 1 and _EQ_LEFT.match(s):
        s = s.split("=", 1)[1]
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    m = _A_SLASH_B.fullmatch(s)
    if m:
        s = f"{m.group(1)}\\frac{{{m.group(2)}}}{{{m.group(3)}}}"
    if s.startswith("."):
        s = "0" + s
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)
    return s.rstrip(".")


def _has_percent(answer: str) -> bool:
    return "%" in answer or "percent" in answer


# ---------------------------------------------------------------------------------- numbers


@dataclass(frozen=True)
class Num:
    """A number read from an answer.

    ``value``  exact (a ``Fraction``) when ``noise`` is 0; otherwise a rational approximation of
               an irrational value (``\\sqrt{2}``, ``\\pi``) with relative error at most ``noise``.
    ``unit``   for a decimal literal, the place of its last stated digit (``0.01`` for ``3.14``,
               ``10**5`` for ``1.5\\times10^{6}``): the precision the writer stated. None otherwise.
    ``digits`` a decimal literal's significant digits (0 otherwise)."""

    value: Fraction
    noise: float = 0.0
    unit: Fraction | None = None
    digits: int = 0

    @property
    def exact(self) -> bool:
        return self.noise == 0.0

    def scaled(self, k: Fraction) -> Num:
        return Num(self.value * k, self.noise, None if self.unit is None else self.unit * k, self.digits)


_DECIMAL = re.compile(r"([-+]?)(\d*)(?:\.(\d*))?(?:[eE]([-+]?\d{1,4}))?")
_SCI = re.compile(r"([-+]?\d+(?:\.\d*)?)(?:\\times|\\cdot|\*|×|x)10\^(?:\{([-+]?\d{1,4})\}|([-+]?\d))")
_PLAIN_FRAC = re.compile(r"([-+]?)\\frac\{([-+]?\d{1,60})\}\{([-+]?\d{1,60})\}|([-+]?\d{1,60})/(\d{1,60})")
FLOAT_NOISE = 1e-12  #: relative error allowed for the float evaluator's irrational values
SYMPY_NOISE = 1e-25  #: relative error allowed for sympy's 30-digit evaluation
MIN_REFERENCE_DIGITS = 3  #: a reference decimal with this many significant digits may be a rounding
MIN_ANSWER_DIGITS = 5  #: an answer's decimal with this many significant digits may be a rounding


def _decimal(text: str) -> Num | None:
    """A decimal literal (``12``, ``-0.50``, ``1.5e6``, ``1.5\\times10^{6}``) read exactly; an
    integer literal has no ``unit`` (it is exact, not a rounding)."""
    exp = 0
    m = _SCI.fullmatch(text)
    if m:
        text, exp = m.group(1), int(m.group(2) or m.group(3))
    m = _DECIMAL.fullmatch(text)
    if not m or not (m.group(2) or m.group(3)):
        return None
    sign, whole, frac, e = m.group(1), m.group(2) or "", m.group(3), m.group(4)
    exp += int(e) if e else 0
    if abs(exp) > 400:
        return None
    digits = whole + (frac or "")
    value = Fraction(int(digits or "0"), 10 ** len(frac or "")) * Fraction(10) ** exp
    value = -value if sign == "-" else value
    if frac is None and exp >= 0:
        return Num(value)  # an integer (also 3e5, 3\times10^{5}): exact, never a rounding
    place = Fraction(10) ** (exp - len(frac or ""))
    significant = len(digits.lstrip("0")) or 1
    return Num(value, unit=place, digits=significant)


def _exact_number(s: str) -> Num | None:
    """An integer, decimal (also in scientific notation) or integer fraction, after
    :func:`normalize`, read exactly."""
    if len(s) > 80:
        return None
    number = _decimal(s)
    if number is not None:
        return number
    m = _PLAIN_FRAC.fullmatch(s)
    if m:
        try:
            if m.group(2) is not None:
                value = Fraction(int(m.group(2)), int(m.group(3)))
                return Num(-value if m.group(1) == "-" else value)
            return Num(Fraction(int(m.group(4)), int(m.group(5))))
        except ZeroDivisionError:
            return None
    return None


def _terminates(q: Fraction) -> bool:
    """Whether ``q`` has a finite decimal expansion (its denominator is 2^a 5^b)."""
    d = q.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def _is_rounding_of(decimal: Num, other: Num, min_digits: int) -> bool | None:
    """Whether ``decimal`` may be read as a rounding of ``other`` (an irrational value or a
    rational whose expansion does not end), and if so whether it is one: within half a unit of its
    last stated digit. None when ``decimal`` is not such a rounding."""
    if decimal.unit is None or not decimal.exact or decimal.digits < min_digits:
        return None
    if other.exact and _terminates(other.value):
        return None  # two terminating decimals are compared exactly
    slack = abs(other.value) * Fraction(other.noise) if other.noise else 0
    return abs(decimal.value - other.value) <= decimal.unit / 2 + slack


def _same_number(a: Num, b: Num) -> bool | None:
    """``a`` (the answer) equals ``b`` (the reference)? Exact where both are exact; a tolerance only
    where a side is inexact, tied to the digits a decimal states. None: floats cannot decide."""
    if a.exact and b.exact and a.value == b.value:
        return True
    for decimal, other, min_digits in ((b, a, MIN_REFERENCE_DIGITS), (a, b, MIN_ANSWER_DIGITS)):
        verdict = _is_rounding_of(decimal, other, min_digits)
        if verdict is not None:
            return verdict
    if a.exact and b.exact:
        return False
    # An irrational side, compared with an exact or irrational value: equal up to evaluation noise.
    scale = max(abs(a.value), abs(b.value), Fraction(1))
    tol = scale * Fraction(max(a.noise, b.noise))
    if tol >= Fraction(1, 4):
        return None  # too large to tell an integer from its neighbour: the symbolic path decides
    return abs(a.value - b.value) <= tol


def _numbers_equal(a: Num, b: Num, pct_a: bool, pct_b: bool) -> bool | None:
    """:func:`_same_number`, where a side with a percent sign may also mean value / 100."""
    undecided = False
    for x in [a, a.scaled(Fraction(1, 100))] if pct_a else [a]:
        for y in [b, b.scaled(Fraction(1, 100))] if pct_b else [b]:
            same = _same_number(x, y)
            if same:
                return True
            undecided = undecided or same is None
    return None if undecided else False


class _NotSimple(Exception):
    pass


_TOKEN = re.compile(r"\s*(\\frac|\\sqrt|\\pi|\\cdot|\\times|\\div|\d+\.?\d*|\.\d+|[-+*/^(){}\[\]])")
MAX_EXACT_BITS = 4096  #: exact arithmetic falls back to floats beyond numbers of this size


def _as_float(v) -> float:
    f = float(v)
    if not math.isfinite(f):
        raise _NotSimple
    return f


def _exact_root(q: Fraction, n: int) -> Fraction | None:
    """The exact ``n``-th root of ``q`` >= 0 when it is rational, else None."""
    out = []
    for part in (q.numerator, q.denominator):
        r = round(part ** (1.0 / n)) if part < 2**1000 else None
        if r is None:
            return None
        hit = next((c for c in (r - 1, r, r + 1) if c >= 0 and c**n == part), None)
        if hit is None:
            return None
        out.append(hit)
    return Fraction(out[0], out[1])


_VAR_TOKEN = re.compile(r"\s*(\\frac|\\sqrt|\\pi|\\cdot|\\times|\\div|\d+\.?\d*|\.\d+|[-+*/^(){}\[\]]|[a-zA-Z])")


def _eval_number(s: str, env: dict[str, Fraction] | None = None) -> Num | None:
    """A small evaluator for closed forms: numbers, + - * / ^, ``\\frac``, ``\\sqrt`` (also
    ``\\sqrt[n]``), ``\\pi``, parentheses/braces, implicit products. Rational arithmetic stays
    exact (``Fraction``); a root that is not rational or ``\\pi`` makes the value a float
    (``noise`` ``FLOAT_NOISE``). None when ``s`` is anything else (variables, commas, functions) or
    the value overflows; depth-limited."""
    if len(s) > 200:
        return None
    tokens: list[str] = []
    pos = 0
    pattern = _TOKEN if env is None else _VAR_TOKEN
    while pos < len(s):
        m = pattern.match(s, pos)
        if not m:
            return None
        tokens.append(m.group(1))
        pos = m.end()
    if not tokens:
        return None
    it = {"i": 0}

    def peek() -> str | None:
        return tokens[it["i"]] if it["i"] < len(tokens) else None

    def take(expected: str | None = None) -> str:
        tok = peek()
        if tok is None or (expected is not None and tok != expected):
            raise _NotSimple
        it["i"] += 1
        return tok

    def big(v) -> bool:
        return isinstance(v, Fraction) and max(abs(v.numerator), v.denominator).bit_length() > MAX_EXACT_BITS

    def arith(x, y, op: str):
        if isinstance(x, Fraction) and isinstance(y, Fraction):
            if op == "/" and y == 0:
                raise _NotSimple
            v = {"+": x + y, "-": x - y, "*": x * y, "/": x / y if y else None}[op]
            if not big(v):
                return v
        fx, fy = _as_float(x), _as_float(y)
        if op == "/" and fy == 0:
            raise _NotSimple
        return _as_float({"+": fx + fy, "-": fx - fy, "*": fx * fy, "/": fx / fy if fy else 0.0}[op])

    def pow_(base, exp):
        if isinstance(exp, Fraction) and exp.denominator == 1 and abs(exp) <= 1000:
            if isinstance(base, Fraction):
                if base == 0 and exp < 0:
                    raise _NotSimple
                if (
                    base.numerator == 0
                    or max(abs(base.numerator), base.denominator).bit_length() * abs(exp) <= MAX_EXACT_BITS
                ):
                    return base ** int(exp)
        fb, fe = _as_float(base), _as_float(exp)
        if abs(fe) > 1000:
            raise _NotSimple
        try:
            v = fb**fe
        except (OverflowError, ZeroDivisionError) as exc:
            raise _NotSimple from exc
        if isinstance(v, complex):
            raise _NotSimple
        return _as_float(v)

    def root(arg, n):
        if (isinstance(n, Fraction) and n.denominator == 1 and n > 0) or n == 2:
            n_int = int(n)
            if isinstance(arg, Fraction) and arg >= 0:
                hit = _exact_root(arg, n_int)
                if hit is not None:
                    return hit
        fa, fn = _as_float(arg), _as_float(n)
        if fa < 0 or fn == 0:
            raise _NotSimple
        return _as_float(fa ** (1.0 / fn))

    def group(depth: int):
        take("{")
        v = expr(depth + 1)
        take("}")
        return v

    def atom(depth: int):
        if depth > 30:
            raise _NotSimple
        tok = peek()
        if tok is None:
            raise _NotSimple
        if tok == "\\frac":
            take()
            num = group(depth)
            den = group(depth)
            return arith(num, den, "/")
        if tok == "\\sqrt":
            take()
            n = Fraction(2)
            if peek() == "[":
                take()
                n = expr(depth + 1)
                take("]")
            arg = group(depth) if peek() == "{" else atom(depth + 1)
            return root(arg, n)
        if tok == "\\pi":
            take()
            return math.pi
        if tok in ("(", "{"):
            take()
            v = expr(depth + 1)
            take(")" if tok == "(" else "}")
            return v
        if tok[0].isdigit() or tok[0] == ".":
            take()
            return Fraction(tok)
        if env is not None and tok in env:
            take()
            return env[tok]
        raise _NotSimple

    def power(depth: int):
        base = atom(depth)
        if peek() == "^":
            take()
            if peek() == "{":
                exp = group(depth)
            else:
                tok = take()
                if not tok.isdigit():
                    raise _NotSimple
                exp = Fraction(int(tok[0]))  # x^23 means x^2 * 3 in LaTeX
                if len(tok) > 1:
                    return arith(pow_(base, exp), Fraction(int(tok[1:])), "*")
            return pow_(base, exp)
        return base

    def unary(depth: int):
        if peek() in ("-", "+"):
            sign = take()
            v = unary(depth + 1)
            return -v if sign == "-" else v
        return power(depth)

    def term(depth: int):
        v = unary(depth)
        while True:
            tok = peek()
            if tok in ("*", "\\cdot", "\\times"):
                take()
                v = arith(v, unary(depth), "*")
            elif tok in ("/", "\\div"):
                take()
                v = arith(v, unary(depth), "/")
            elif tok is not None and tok not in ("+", "-", ")", "}", "]", "^"):
                v = arith(v, power(depth), "*")  # implicit product: 2\sqrt{3}, 3\pi
            else:
                return v

    def expr(depth: int):
        if depth > 30:
            raise _NotSimple
        v = term(depth)
        while peek() in ("+", "-"):
            op = take()
            v = arith(v, term(depth), op)
        return v

    try:
        value = expr(0)
        if it["i"] != len(tokens):
            return None
    except (_NotSimple, ZeroDivisionError, OverflowError, ValueError, TypeError, RecursionError):
        return None
    if isinstance(value, Fraction):
        return Num(value)
    return Num(Fraction(value), noise=FLOAT_NOISE) if math.isfinite(value) else None


def _split_top(s: str) -> list[str]:
    """``s`` split at the commas outside any bracket."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return parts


_INF = {"\\infty": math.inf, "-\\infty": -math.inf, "+\\infty": math.inf, "\\infinity": math.inf}


def _collection(s: str) -> tuple[str, list] | None:
    """A tuple or interval ``(a,b]`` -> (brackets, numbers in order), a set ``\\{a,b\\}`` or a bare
    list ``a,b`` -> ("set", numbers); None unless every element is a number (or +-infinity)."""
    if s.startswith("\\{") and s.endswith("\\}"):
        kind, body = "set", s[2:-2]
    elif len(s) >= 2 and s[0] in "([" and s[-1] in ")]":
        kind, body = s[0] + s[-1], s[1:-1]
    elif "," in s and not any(c in s for c in "()[]{}"):
        kind, body = "set", s
    else:
        return None
    items = []
    for part in _split_top(body):
        part = part.strip()
        if part in _INF:
            items.append(_INF[part])
            continue
        number = _exact_number(part) or _eval_number(part)
        if number is None:
            return None
        items.append(number)
    return (kind, items) if len(items) >= 2 else None


def _items_equal(x, y) -> bool | None:
    if isinstance(x, float) or isinstance(y, float):  # infinities
        return x == y
    return _same_number(x, y)


def _collections_equal(a: tuple[str, list], b: tuple[str, list]) -> bool | None:
    """Tuples and intervals: same brackets, equal in order; sets: equal as sets. Numbers by the
    exact rule of :func:`_same_number`; None when a comparison cannot be decided here."""
    (ka, xs), (kb, ys) = a, b
    if ka != kb:
        return None if "set" in (ka, kb) else False
    if ka != "set":
        if len(xs) != len(ys):
            return False
        verdicts = [_items_equal(x, y) for x, y in zip(xs, ys)]
        return None if None in verdicts else all(verdicts)
    for left, right in ((xs, ys), (ys, xs)):  # every element of each has an equal in the other
        for x in left:
            verdicts = [_items_equal(x, y) for y in right]
            if True not in verdicts:
                return None if None in verdicts else False
    return True


IDENTITY_POINTS = 4  #: rational points at which two expressions in variables are compared


def _variables(*texts: str) -> set[str]:
    """Single-letter variable names in normalised LaTeX (command names like ``\\frac`` left out)."""
    return set(re.findall(r"[a-zA-Z]", re.sub(r"\\[a-zA-Z]+", " ", " ".join(texts))))


def _points(pred: str, truth: str, names: set[str]) -> list[dict[str, Fraction]]:
    """``IDENTITY_POINTS`` rational points drawn from a hash of the pair: fixed for a pair (so a
    grade is reproducible), unknowable in advance (so no answer can be tuned to them)."""
    import hashlib

    seed = hashlib.blake2b(f"{pred}\0{truth}".encode(), digest_size=32).digest()
    out = []
    for k in range(IDENTITY_POINTS):
        env = {}
        for j, v in enumerate(sorted(names)):
            h = hashlib.blake2b(seed + bytes([k, j]), digest_size=8).digest()
            env[v] = Fraction(int.from_bytes(h[:5], "big") % 1_000_003 + 2, int.from_bytes(h[5:], "big") % 997 + 2)
        out.append(env)
    return out


def _identity_compare(pred: str, truth: str) -> bool | None:
    """Two polynomials or rational functions in single-letter variables (or two equations of them,
    one ``=`` each), compared by exact rational evaluation at ``IDENTITY_POINTS`` points drawn
    from a hash of the pair. Different values at a point prove "not equal"; equal values at all
    points mean equal (two different rational functions of degree d agree at a point drawn from
    ~10^6 values with probability about d / 10^6, so at all four about (d / 10^6)^4). Equations
    are equal when one side-difference is a constant multiple of the other (``y=2x+1`` ==
    ``2y=4x+2``, as math-verify). None: outside that class (functions, roots of variables, ``e``
    or ``i``, anything inexact), and sympy decides."""
    if pred.count("=") != truth.count("=") or pred.count("=") > 1:
        return None
    names = _variables(pred, truth)
    if not names or names & {"e", "i"}:
        return None
    equation = "=" in pred
    pairs = []
    for env in _points(pred, truth, names):
        values = []
        for text in (pred, truth):
            sides = text.split("=") if equation else [text]
            nums = [_eval_number(side, env) for side in sides]
            if any(n is None or not n.exact for n in nums):
                return None
            values.append(nums[0].value - nums[1].value if equation else nums[0].value)
        pairs.append(values)
    if not equation:
        return all(a == b for a, b in pairs)
    if all(a == 0 and b == 0 for a, b in pairs):
        return None  # two identities (0 = 0 everywhere): leave it to sympy
    if any((a == 0) != (b == 0) for a, b in pairs):
        return False
    ratios = {a / b for a, b in pairs if b != 0}
    return len(ratios) == 1


def _fast_compare(pred_raw: str, truth_raw: str, pred: str, truth: str) -> tuple[bool, str] | None:
    """(equal, rule) when the cheap rules decide, else None (the slow path must)."""
    if pred == truth and pred:
        return True, "normaliser"
    a = _exact_number(pred) or _eval_number(pred)
    b = _exact_number(truth) or _eval_number(truth)
    if a is not None and b is not None:
        ok = _numbers_equal(a, b, _has_percent(pred_raw), _has_percent(truth_raw))
    elif a is None and b is None and "," in pred and "," in truth:
        ca, cb = _collection(pred), _collection(truth)
        ok = _collections_equal(ca, cb) if ca is not None and cb is not None else None
    elif a is None and b is None:
        ok = _identity_compare(pred, truth)
        if ok is not None:
            return ok, "identity" if ok else "none"
    else:
        ok = None
    if ok is None:
        return None
    return ok, "numeric" if ok else "none"


# ---------------------------------------------------------------------------------- slow path

_MV_READY = False


def _math_verify():
    """Import math-verify once and silence its "timeout is disabled" warning (we time out)."""
    global _MV_READY
    import math_verify
    from math_verify import grader, parser

    if not _MV_READY:
        grader.TIMEOUT_WARNING_SHOWN = True
        parser.TIMEOUT_WARNING_SHOWN = True
        _MV_READY = True
    return math_verify


def _sympy_number(parsed) -> Num | None:
    """The first real number in math-verify's parse: exact when sympy holds it as a rational,
    else its 30-digit value (``noise`` ``SYMPY_NOISE``). None for anything else (symbols, sets,
    complex values)."""
    import sympy

    for item in parsed:
        if isinstance(item, sympy.Basic) and getattr(item, "is_number", False) and not item.free_symbols:
            if item.is_Rational:
                return Num(Fraction(int(item.p), int(item.q)))
            value = item.evalf(30)
            if not value.is_real or not value.is_finite:
                return None
            return Num(Fraction(str(value)), noise=SYMPY_NOISE)
    return None


def _symbolic_compare(pred: str, truth: str) -> tuple[bool, str]:
    """Two numbers by :func:`_numbers_equal` (math-verify's own number comparison rounds to 6
    decimals, which would let near misses through); anything else by math-verify; (equal, rule).
    No timeout of its own: callers run it under :func:`_guarded`."""
    mv = _math_verify()
    gold = mv.parse(f"${truth}$", parsing_timeout=None)
    guess = mv.parse(f"${pred}$", parsing_timeout=None)
    if not gold or not guess:
        return False, "none"
    a, b = _sympy_number(guess), _sympy_number(gold)
    if a is not None and b is not None:
        if _numbers_equal(a, b, _has_percent(pred), _has_percent(truth)):
            return True, "numeric"
        return False, "none"
    if mv.verify(gold, guess, timeout_seconds=None):
        return True, "symbolic"
    return False, "none"


_TIMEOUT = ("timeout",)


def _with_alarm(fn, args, limit: float):
    """Run ``fn(*args)`` in the MAIN thread under an ITIMER_REAL alarm; ``_TIMEOUT`` if it fires.
    Restores the previous SIGALRM handler and the previous timer's remaining time."""
    armed = [True]
    fired = [False]

    def handler(signum, frame):  # noqa: ARG001
        if armed[0]:
            fired[0] = True
            raise CheckTimeout

    start = time.monotonic()
    old_handler = signal.signal(signal.SIGALRM, handler)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, limit, 0.05)
    try:
        try:
            result = fn(*args)
        finally:
            armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except CheckTimeout:
        result = _TIMEOUT
    finally:
        signal.signal(signal.SIGALRM, old_handler if old_handler is not None else signal.SIG_DFL)
        if old_delay > 0:
            left = old_delay - (time.monotonic() - start)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), old_interval)
    return _TIMEOUT if fired[0] else result


def _worker_check(pred: str, truth: str, limit: float):
    """Entry point in a pool worker (its main thread): the slow path under the worker's alarm."""
    try:
        return _with_alarm(_symbolic_compare, (pred, truth), limit)
    except Exception as exc:  # noqa: BLE001
        return ("error", f"{type(exc).__name__}: {exc}"[:500])


def _worker_ping() -> bool:
    _math_verify()
    return True


_CACHE: OrderedDict[tuple[str, str], tuple[bool, str]] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _cache_get(key: tuple[str, str]) -> tuple[bool, str] | None:
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
        return hit


def _cache_put(key: tuple[str, str], value) -> None:
    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], bool)):
        return  # only finished checks are cached (never timeouts or errors)
    with _CACHE_LOCK:
        _CACHE[key] = value
        while len(_CACHE) > SLOW_CACHE_SIZE:
            _CACHE.popitem(last=False)


_POOL: ProcessPoolExecutor | None = None
_POOL_SLOTS = threading.BoundedSemaphore(POOL_WORKERS)
_POOL_LOCK = threading.Lock()
_POOL_UNAVAILABLE = False


def _get_pool() -> ProcessPoolExecutor | None:
    global _POOL, _POOL_UNAVAILABLE
    with _POOL_LOCK:
        if _POOL is None and not _POOL_UNAVAILABLE:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            pool = None
            try:
                pool = ProcessPoolExecutor(max_workers=POOL_WORKERS, mp_context=ctx)
                pool.submit(_worker_ping).result(timeout=POOL_START_TIMEOUT_S)
                _POOL = pool
            except Exception as exc:  # noqa: BLE001 - e.g. a daemonic process cannot have children
                log.warning(
                    "grade_math: no worker process for timed checks (%s: %s); off-main-thread "
                    "checks will run in abandonable threads",
                    type(exc).__name__,
                    exc,
                )
                _POOL_UNAVAILABLE = True
                if pool is not None:
                    _kill_pool(pool)
        return _POOL


def _kill_pool(pool: ProcessPoolExecutor) -> None:
    global _POOL
    with_lock = _POOL_LOCK.acquire(timeout=5)
    try:
        if _POOL is pool:
            _POOL = None
    finally:
        if with_lock:
            _POOL_LOCK.release()
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            proc.kill()
        except Exception:  # noqa: BLE001
            pass
    try:
        pool.shutdown(wait=False, cancel_futures=True)
    except Exception:  # noqa: BLE001
        pass


def shutdown_pool() -> None:
    """Stop the worker pool (tests, clean exits); the next off-main-thread check starts another."""
    pool = _POOL
    if pool is not None:
        _kill_pool(pool)


def _pool_call(pred: str, truth: str, limit: float):
    for _attempt in range(2):
        pool = _get_pool()
        if pool is None:
            return _thread_call(pred, truth, limit)
        # One in-flight check per worker, so that a check's clock starts when a worker takes it
        # (a check queued behind a slow one is not mistaken for a hung one).
        with _POOL_SLOTS:
            try:
                future = pool.submit(_worker_check, pred, truth, limit)
            except (BrokenProcessPool, RuntimeError):
                _kill_pool(pool)
                continue
            try:
                return future.result(timeout=limit + POOL_GRACE_S)
            except FutureTimeout:
                log.warning(
                    "grade_math: a check ignored its alarm for %.1f s; killing the worker pool", limit + POOL_GRACE_S
                )
                _kill_pool(pool)
                return _TIMEOUT
            except BrokenProcessPool:  # died (killed, out of memory): retry once on a new pool
                _kill_pool(pool)
    return _TIMEOUT


def _thread_call(pred: str, truth: str, limit: float):
    """Last resort off the main thread without processes: a daemon thread abandoned on timeout."""
    box: list = []

    def run() -> None:
        try:
            box.append(_symbolic_compare(pred, truth))
        except BaseException as exc:  # noqa: BLE001
            box.append(("error", f"{type(exc).__name__}: {exc}"[:500]))

    t = threading.Thread(target=run, daemon=True, name="grade_math-check")
    t.start()
    t.join(limit)
    return box[0] if box else _TIMEOUT


def _guarded(pred: str, truth: str, limit: float | None = None):
    """The slow path with a hard timeout in any thread; ``(equal, rule)``, ``_TIMEOUT`` or
    ``("error", message)``."""
    limit = CHECK_TIMEOUT_S if limit is None else limit
    key = (pred, truth)
    hit = _cache_get(key)
    if hit is not None:
        return hit
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        try:
            result = _with_alarm(_symbolic_compare, key, limit)
        except Exception as exc:  # noqa: BLE001
            result = ("error", f"{type(exc).__name__}: {exc}"[:500])
    else:
        result = _pool_call(pred, truth, limit)
    _cache_put(key, result)
    return result


# ---------------------------------------------------------------------------------- grading


def _verdict(score_ok: bool, reason: str, rule: str, extracted: str | None, error: str | None = None) -> Verdict:
    return Verdict(float(score_ok), score_ok, reason, extracted=extracted, error=error, verifier=VERIFIER, rule=rule)


def grade_math(response: str, ground_truth: str) -> Verdict:
    """Score 1 if the extracted answer equals ``ground_truth``, else 0; never raises, never takes
    much longer than ``CHECK_TIMEOUT_S`` (+ ``POOL_GRACE_S`` off the main thread)."""
    try:
        answer = extract_answer(response or "")
    except Exception as exc:  # noqa: BLE001
        return _verdict(False, "error", "none", None, f"{type(exc).__name__}: {exc}"[:500])
    if answer is None or not answer.strip():
        return _verdict(False, "no_answer", "none", None)
    if len(answer) > MAX_ANSWER_CHARS:
        return _verdict(False, "too_long", "none", answer[:100])
    truth = str(ground_truth)
    if len(truth) > MAX_ANSWER_CHARS:
        return _verdict(False, "too_long", "none", answer, "ground truth too long")
    try:
        pred_n, truth_n = normalize(answer), normalize(truth)
        fast = _fast_compare(answer, truth, pred_n, truth_n)
    except Exception as exc:  # noqa: BLE001
        return _verdict(False, "error", "none", answer, f"{type(exc).__name__}: {exc}"[:500])
    if fast is not None:
        ok, rule = fast
        return _verdict(ok, "correct" if ok else "wrong", rule, answer)
    result = _guarded(_strip_common(answer), _strip_common(truth))
    if result == _TIMEOUT:
        return _verdict(False, "timeout", "none", answer)
    if result[0] == "error":
        return _verdict(False, "error", "none", answer, result[1])
    ok, rule = result
    return _verdict(ok, "correct" if ok else "wrong", rule, answer)
