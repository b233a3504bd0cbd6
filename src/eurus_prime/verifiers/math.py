"""Math answer extraction and equivalence (PRIME_REFERENCE.md, "Verifiers").

Extraction
    The content of the LAST ``\\boxed{...}`` / ``\\fbox{...}`` (braces matched in one linear pass,
    escaped ``\\{`` ``\\}`` ignored), else ``\\boxed 5`` (no braces), else the text after the last
    "final answer is" / "final answer:" / "the answer is" / "answer:" (a ``$...$`` span if one
    follows, else up to the end of the line or sentence).

Equivalence, cheapest first (``Verdict.rule`` names the rule that decided):
    ``normaliser``  the MATH-style normalised strings are equal (:func:`normalize`).
    ``numeric``     both sides evaluate to numbers within relative ``REL_TOL`` (1e-4): plain
                    integers/decimals/fractions/percentages are read exactly with ``Fraction``;
                    closed forms with ``\\sqrt``, ``\\pi``, ``^``, ``\\frac`` by a small float
                    evaluator; anything else, after math-verify said "not equal", from sympy's
                    ``evalf``. Two integers (|n| < 2**53) must be exactly equal: 1000001 != 1000000.
    ``symbolic``    math-verify (latex2sympy2_extended + sympy) says equal: expressions
                    (``\\frac{1}{2}x`` == ``x/2``), equations, tuples and intervals (order and
                    bracket type matter), sets (order does not), matrices.
    ``none``        nothing matched (reason ``wrong``), or there was no usable answer.
    When both sides are plain numbers the fast path's "not equal" is final (sympy is not run).

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
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from fractions import Fraction
from collections import OrderedDict

from eurus_prime.verifiers.verdict import Verdict

log = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 1000
CHECK_TIMEOUT_S = 2.0  #: hard limit of one slow (sympy) check, in seconds
POOL_GRACE_S = 2.0  #: extra wait for a pool worker before it is killed
POOL_START_TIMEOUT_S = 120.0  #: a fresh worker pool must answer a ping within this
POOL_WORKERS = 1
REL_TOL = 1e-4
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
_ANSWER_CUE = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is\s*:?|:|=)\s*", flags=re.IGNORECASE
)


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
        found = _after_cue(response[cue.end():cue.end() + 4 * MAX_ANSWER_CHARS])
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
_TEXT_UNIT = re.compile(
    r"\\(?:text|textrm|mbox|mathrm)\{\s*" + _UNIT_WORDS + r"\s*\}(?:\^\{?[23]\}?)?\s*$"
)
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


def normalize(answer: str) -> str:
    """MATH-style normaliser: drop LaTeX wrappers (``\\text{}``, ``\\left``/``\\right``,
    ``\\displaystyle``, spacing commands), ``$``, all spaces, unit words, degrees, the percent sign,
    a trailing ".", thousands separators; ``\\dfrac``/``\\tfrac`` -> ``\\frac``; ``\\frac12`` ->
    ``\\frac{1}{2}``; ``a/b`` (integers) -> ``\\frac{a}{b}``; ``.5`` -> ``0.5``; ``x=3`` -> ``3``."""
    s = _strip_common(answer)
    s = re.sub(r"\s+", "", s)
    s = s.replace("\\%", "").replace("%", "")
    s = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF.sub(r"\\frac\1{\2}", s)
    s = _SQRT_SHORT.sub(r"\\sqrt{\1}", s)
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


# ---------------------------------------------------------------------------------- fast numbers

_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d{1,3})?")
_PLAIN_FRAC = re.compile(r"([-+]?)\\frac\{([-+]?\d{1,50})\}\{([-+]?\d{1,50})\}|([-+]?\d{1,50})/(\d{1,50})")


def _exact_number(s: str) -> Fraction | None:
    """An integer, decimal or integer fraction (after :func:`normalize`) read exactly."""
    if len(s) > 60:
        return None
    if _PLAIN_NUMBER.fullmatch(s):
        try:
            return Fraction(s)
        except (ValueError, ZeroDivisionError):
            return None
    m = _PLAIN_FRAC.fullmatch(s)
    if m:
        try:
            if m.group(2) is not None:
                value = Fraction(int(m.group(2)), int(m.group(3)))
                return -value if m.group(1) == "-" else value
            return Fraction(int(m.group(4)), int(m.group(5)))
        except ZeroDivisionError:
            return None
    return None


class _NotSimple(Exception):
    pass


_TOKEN = re.compile(r"\s*(\\frac|\\sqrt|\\pi|\\cdot|\\times|\\div|\d+\.?\d*|\.\d+|[-+*/^(){}\[\]])")


def _float_eval(s: str) -> float | None:
    """A tiny float evaluator for closed forms: numbers, + - * / ^, ``\\frac``, ``\\sqrt`` (also
    ``\\sqrt[n]``), ``\\pi``, parentheses/braces, implicit products. None when ``s`` is anything
    else (variables, commas, functions) or the value overflows; depth-limited."""
    if len(s) > 200:
        return None
    tokens: list[str] = []
    pos = 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
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

    def group(depth: int) -> float:
        take("{")
        v = expr(depth + 1)
        take("}")
        return v

    def atom(depth: int) -> float:
        if depth > 30:
            raise _NotSimple
        tok = peek()
        if tok is None:
            raise _NotSimple
        if tok == "\\frac":
            take()
            num = group(depth)
            den = group(depth)
            return num / den
        if tok == "\\sqrt":
            take()
            root = 2.0
            if peek() == "[":
                take()
                root = expr(depth + 1)
                take("]")
            arg = group(depth) if peek() == "{" else atom(depth + 1)
            if arg < 0 or root == 0:
                raise _NotSimple
            return arg ** (1.0 / root)
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
            return float(tok)
        raise _NotSimple

    def power(depth: int) -> float:
        base = atom(depth)
        if peek() == "^":
            take()
            if peek() == "{":
                exp = group(depth)
            else:
                tok = take()
                if not tok.isdigit():
                    raise _NotSimple
                exp = float(tok[0])  # x^23 means x^2 * 3 in LaTeX
                if len(tok) > 1:
                    return _checked(base**exp) * float(tok[1:])
            if abs(exp) > 1000:
                raise _NotSimple
            return _checked(base**exp)
        return base

    def unary(depth: int) -> float:
        if peek() in ("-", "+"):
            sign = -1.0 if take() == "-" else 1.0
            return sign * unary(depth + 1)
        return power(depth)

    def term(depth: int) -> float:
        v = unary(depth)
        while True:
            tok = peek()
            if tok in ("*", "\\cdot", "\\times"):
                take()
                v = _checked(v * unary(depth))
            elif tok in ("/", "\\div"):
                take()
                v = _checked(v / unary(depth))
            elif tok is not None and tok not in ("+", "-", ")", "}", "]", "^"):
                v = _checked(v * power(depth))  # implicit product: 2\sqrt{3}, 3\pi
            else:
                return v

    def expr(depth: int) -> float:
        if depth > 30:
            raise _NotSimple
        v = term(depth)
        while peek() in ("+", "-"):
            sign = 1.0 if take() == "+" else -1.0
            v = _checked(v + sign * term(depth))
        return v

    try:
        value = expr(0)
        if it["i"] != len(tokens):
            return None
        return value if math.isfinite(value) else None
    except (_NotSimple, ZeroDivisionError, OverflowError, ValueError, TypeError):
        return None


def _checked(v: float | complex) -> float:
    if isinstance(v, complex) or not math.isfinite(v):
        raise _NotSimple
    return v


def _close(a: float, b: float) -> bool:
    if not (math.isfinite(a) and math.isfinite(b)):
        return False  # infinities are compared symbolically, never within a tolerance
    if a == b:
        return True
    if _is_int(a) and _is_int(b):
        return False  # integers are compared exactly
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b))


def _is_int(v: float) -> bool:
    return float(v).is_integer() and abs(v) < 2**53


def _numeric_equal(a, b, pct_a: bool, pct_b: bool) -> bool:
    """``a`` == ``b`` within tolerance; a side with a percent sign may also mean value / 100."""
    cands_a = [a, a / 100] if pct_a else [a]
    cands_b = [b, b / 100] if pct_b else [b]
    for x in cands_a:
        for y in cands_b:
            if isinstance(x, Fraction) and isinstance(y, Fraction):
                if x == y or (not (x.denominator == 1 and y.denominator == 1)
                              and _close(float(x), float(y))):
                    return True
            elif _close(float(x), float(y)):
                return True
    return False


def _fast_compare(pred_raw: str, truth_raw: str, pred: str, truth: str) -> tuple[bool, str] | None:
    """(equal, rule) when the cheap rules decide, else None (the slow path must)."""
    if pred == truth and pred:
        return True, "normaliser"
    pct_a, pct_b = _has_percent(pred_raw), _has_percent(truth_raw)
    a, b = _exact_number(pred), _exact_number(truth)
    if a is not None and b is not None:
        ok = _numeric_equal(a, b, pct_a, pct_b)
        return ok, "numeric" if ok else "none"
    fa = float(a) if a is not None else _float_eval(pred)
    fb = float(b) if b is not None else _float_eval(truth)
    if fa is not None and fb is not None:
        ok = _numeric_equal(fa, fb, pct_a, pct_b)
        return ok, "numeric" if ok else "none"
    return None


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


def _sympy_number(parsed) -> complex | None:
    import sympy

    for item in parsed:
        if isinstance(item, sympy.Basic) and getattr(item, "is_number", False) and not item.free_symbols:
            value = complex(item.evalf(30))
            return value
    return None


def _symbolic_compare(pred: str, truth: str) -> tuple[bool, str]:
    """math-verify, then sympy numeric evaluation; (equal, rule). No timeout of its own: callers
    run it under :func:`_guarded`."""
    mv = _math_verify()
    gold = mv.parse(f"${truth}$", parsing_timeout=None)
    guess = mv.parse(f"${pred}$", parsing_timeout=None)
    if not gold or not guess:
        return False, "none"
    if mv.verify(gold, guess, timeout_seconds=None):
        return True, "symbolic"
    a, b = _sympy_number(guess), _sympy_number(gold)
    if a is not None and b is not None and abs(a.imag) < 1e-12 and abs(b.imag) < 1e-12:
        if _numeric_equal(a.real, b.real, _has_percent(pred), _has_percent(truth)):
            return True, "numeric"
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
                log.warning("grade_math: no worker process for timed checks (%s: %s); off-main-thread "
                            "checks will run in abandonable threads", type(exc).__name__, exc)
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
                log.warning("grade_math: a check ignored its alarm for %.1f s; killing the worker "
                            "pool", limit + POOL_GRACE_S)
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
    return Verdict(float(score_ok), score_ok, reason, extracted=extracted, error=error,
                   verifier=VERIFIER, rule=rule)


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
