"""A generated corpus of near misses and equivalent forms for the math grader.

Every row is ``(answer, reference, expected, kind)``. For reference values from 1 to 10^15 in
magnitude, integers and fractions, positive and negative:

* **near misses** (``expected=False``): the value +-1, +-1/2, and a decimal off by one unit in
  its last digit (+-10^-k), in fraction, decimal, mixed-number and scientific forms; and a
  rounding to 3 significant digits (too coarse to stand for a fraction that does not terminate);
* **equivalents** (``expected=True``): fraction <-> decimal (terminating, repeating with
  ``\\overline``, or correctly rounded to ``ROUNDED_DECIMALS`` places), mixed numbers (``2\\frac{1}{3}``,
  ``2 1/3``), ``\\dfrac``, an unreduced fraction, thousands separators (``,`` and ``{,}``),
  scientific notation (``\\times10^{k}`` and ``e``).

``tests/verifiers/test_near_miss.py`` requires the grader to reject every near miss and accept
every equivalent; ``benchmarks/verifier_exactness.py`` reports the same for plain math-verify.
"""

from __future__ import annotations

import random
from fractions import Fraction

from eurus_prime.verifiers.math import _terminates

ROUNDED_DECIMALS = 6  #: places of the rounded-decimal equivalent of a non-terminating fraction
DENOMINATORS = (2, 3, 4, 6, 7, 8, 9, 11, 12, 16, 25, 40)


def decimal_text(q: Fraction, places: int | None = None) -> str:
    """``q`` as a decimal: exact when it terminates (``places`` None), else rounded half away from
    zero to ``places`` digits."""
    sign = "-" if q < 0 else ""
    q = abs(q)
    if places is None:
        places = 0
        while (q * 10**places).denominator != 1:
            places += 1
    scaled = q * 10**places
    n = int(scaled)
    if scaled - n >= Fraction(1, 2):
        n += 1
    whole, frac = divmod(n, 10**places)
    return f"{sign}{whole}" + (f".{frac:0{places}d}" if places else "")


def repeating_text(q: Fraction) -> str | None:
    """``q`` as ``W.F\\overline{R}`` (long division), or None if it terminates or the period is long."""
    sign = "-" if q < 0 else ""
    q = abs(q)
    whole, rem = divmod(q.numerator, q.denominator)
    digits, seen = [], {}
    while rem and rem not in seen and len(digits) < 40:
        seen[rem] = len(digits)
        rem *= 10
        digits.append(str(rem // q.denominator))
        rem %= q.denominator
    if not rem or rem not in seen:
        return None
    start = seen[rem]
    return f"{sign}{whole}.{''.join(digits[:start])}\\overline{{{''.join(digits[start:])}}}"


def significant_text(q: Fraction, digits: int) -> str:
    """``q`` rounded to ``digits`` significant digits (an integer text when the rounding is one)."""
    exp = len(str(abs(q.numerator) // q.denominator)) if abs(q) >= 1 else 0
    places = digits - exp
    if places >= 0:
        return decimal_text(q, places)
    step = 10 ** (-places)
    return decimal_text(Fraction(round(q / step) * step), 0)


def thousands(n: int, sep: str = ",") -> str:
    return f"{n:,}".replace(",", sep)


def scientific(q: Fraction, style: str = "times") -> str | None:
    """A terminating ``q`` as ``m\\times10^{k}`` / ``me k`` with 1 <= |m| < 10, all digits kept."""
    if q == 0 or not _terminates(q):
        return None
    text = decimal_text(q).lstrip("-")
    digits = text.replace(".", "").lstrip("0")
    point = text.index(".") if "." in text else len(text)
    lead = len(text.replace(".", "")) - len(text.replace(".", "").lstrip("0"))
    exp = point - lead - 1
    mant = digits.rstrip("0") or "0"
    mantissa = mant[0] + ("." + mant[1:] if len(mant) > 1 else "")
    sign = "-" if q < 0 else ""
    return f"{sign}{mantissa}\\times10^{{{exp}}}" if style == "times" else f"{sign}{mantissa}e{exp}"


def fraction_text(q: Fraction, command: str = "\\frac") -> str:
    if q.denominator == 1:
        return str(q.numerator)
    sign = "-" if q < 0 else ""
    return f"{sign}{command}{{{abs(q.numerator)}}}{{{q.denominator}}}"


def mixed_text(q: Fraction, spaced: bool = False) -> str | None:
    sign = "-" if q < 0 else ""
    whole, rest = divmod(abs(q.numerator), q.denominator)
    if whole == 0 or rest == 0:
        return None
    return f"{sign}{whole} {rest}/{q.denominator}" if spaced else f"{sign}{whole}\\frac{{{rest}}}{{{q.denominator}}}"


def _integer_rows(n: int) -> list[tuple[str, str, bool, str]]:
    truth = str(n)
    q = Fraction(n)
    rows = [(str(n + d), truth, False, "int+-1") for d in (-1, 1)]
    rows += [(fraction_text(q + d), truth, False, "int+-1/2") for d in (Fraction(-1, 2), Fraction(1, 2))]
    rows += [(decimal_text(q + d), truth, False, "int+-1/2 decimal") for d in (Fraction(-1, 2), Fraction(1, 2))]
    rows += [(decimal_text(q + Fraction(s, 10**k)), truth, False, f"int+-10^-{k}") for k in (1, 4, 6) for s in (-1, 1)]
    rows += [
        (f"{n}.0", truth, True, "decimal point"),
        (fraction_text(Fraction(3 * n, 3)).replace("\\frac", "\\dfrac"), truth, True, "dfrac"),
    ]
    rows.append((f"\\frac{{{3 * n}}}{{3}}", truth, True, "unreduced fraction"))
    if abs(n) >= 1000:
        rows += [
            (thousands(n), truth, True, "thousands ,"),
            (thousands(n, "{,}"), truth, True, "thousands {,}"),
            (str(n), thousands(n), True, "reference with thousands"),
        ]
    if abs(n) >= 10:
        rows += [(scientific(q), truth, True, "scientific \\times"), (scientific(q, "e"), truth, True, "scientific e")]
        near = q + (1 if q > 0 else -1)
        rows.append((scientific(near), truth, False, "int+-1 scientific"))
    return rows


def _fraction_rows(q: Fraction) -> list[tuple[str, str, bool, str]]:
    truth = fraction_text(q)
    rows = [(fraction_text(q + d), truth, False, "frac+-1") for d in (-1, 1)]
    rows += [(fraction_text(q + d), truth, False, "frac+-1/2") for d in (Fraction(-1, 2), Fraction(1, 2))]
    rows += [
        (fraction_text(q), truth, True, "same"),
        (fraction_text(q, "\\dfrac"), truth, True, "dfrac"),
        (f"{'-' if q < 0 else ''}{abs(q.numerator)}/{q.denominator}", truth, True, "a/b"),
        (
            f"{'-' if q < 0 else ''}\\frac{{{2 * abs(q.numerator)}}}{{{2 * q.denominator}}}",
            truth,
            True,
            "unreduced fraction",
        ),
    ]
    for spaced in (False, True):
        mixed = mixed_text(q, spaced)
        if mixed:
            rows.append((mixed, truth, True, "mixed spaced" if spaced else "mixed"))
            rows.append((mixed_text(q + (1 if q > 0 else -1), spaced), truth, False, "mixed whole+-1"))
    if _terminates(q):
        dec = decimal_text(q)
        rows += [(dec, truth, True, "fraction -> decimal"), (truth, dec, True, "decimal -> fraction")]
        places = len(dec.split(".")[1]) if "." in dec else 0
        unit = Fraction(1, 10**places)
        rows += [(decimal_text(q + s * unit, places), truth, False, "decimal last digit+-1") for s in (-1, 1)]
        rows += [(decimal_text(q + s * unit, places), dec, False, "decimal last digit+-1 vs decimal") for s in (-1, 1)]
        sci = scientific(q)
        if sci and abs(q) >= 10:
            rows.append((sci, truth, True, "scientific \\times"))
    else:
        rep = repeating_text(q)
        if rep:
            rows.append((rep, truth, True, "repeating decimal"))
        rounded = decimal_text(q, ROUNDED_DECIMALS)
        rows.append((rounded, truth, True, f"rounded to {ROUNDED_DECIMALS} places"))
        unit = Fraction(1, 10**ROUNDED_DECIMALS)
        rows += [
            (decimal_text(Fraction(rounded) + s * unit, ROUNDED_DECIMALS), truth, False, "rounded last digit+-1")
            for s in (-1, 1)
        ]
        rows.append((significant_text(q, 3), truth, False, "rounded to 3 significant digits"))
    return rows


def near_miss_corpus(seed: int = 0, per_magnitude: int = 3, max_exponent: int = 15) -> list[tuple[str, str, bool, str]]:
    """The corpus: ``per_magnitude`` integers and fractions per power of ten from 10^0 to
    10^``max_exponent``, half of them negative. Deterministic in ``seed``."""
    rng = random.Random(seed)
    rows: list[tuple[str, str, bool, str]] = []
    for e in range(max_exponent + 1):
        for i in range(per_magnitude):
            sign = -1 if i % 2 else 1
            n = rng.randrange(max(2, 10**e), 10 ** (e + 1))
            rows += _integer_rows(sign * n)
            den = DENOMINATORS[(e * per_magnitude + i) % len(DENOMINATORS)]
            q = Fraction(rng.randrange(10**e * den, 10 ** (e + 1) * den), den)
            while q.denominator == 1:
                q += Fraction(1, den)
            rows += _fraction_rows(sign * q)
    return rows
