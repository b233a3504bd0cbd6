"""The generated near-miss / equivalence corpus: no near miss accepted, every equivalent accepted."""

from collections import Counter
from fractions import Fraction

import pytest

from eurus_prime.verifiers.math import grade_math
from eurus_prime.verifiers.near_miss import (
    decimal_text,
    mixed_text,
    near_miss_corpus,
    repeating_text,
    scientific,
    significant_text,
)

ROWS = near_miss_corpus()


def test_corpus_covers_magnitudes_forms_and_both_labels():
    kinds = Counter(kind for *_, kind in ROWS)
    assert len(ROWS) > 1500
    for kind in (
        "int+-1",
        "int+-1/2",
        "int+-10^-6",
        "frac+-1",
        "frac+-1/2",
        "decimal last digit+-1",
        "mixed",
        "mixed spaced",
        "repeating decimal",
        "thousands ,",
        "scientific \\times",
        "scientific e",
        "dfrac",
        "fraction -> decimal",
        "decimal -> fraction",
    ):
        assert kinds[kind] > 0, kind
    assert any(len(t.replace("-", "")) == 16 for _, t, _, k in ROWS if k == "int+-1")  # 10^15 magnitudes


@pytest.mark.parametrize("expected", [True, False], ids=["equivalents", "near_misses"])
def test_grader_on_corpus(expected):
    graded = [(a, t, kind, grade_math(f"\\boxed{{{a}}}", t)) for a, t, e, kind in ROWS if e is expected]
    wrong = [(a, t, kind, v.rule) for a, t, kind, v in graded if v.correct is not expected]
    assert not wrong, f"{len(wrong)} misgraded, e.g. {wrong[:5]}"


def test_text_helpers_hand_values():
    assert decimal_text(Fraction(1, 3), 6) == "0.333333" and decimal_text(Fraction(2, 3), 2) == "0.67"
    assert decimal_text(Fraction(-5, 8)) == "-0.625"
    assert repeating_text(Fraction(1, 6)) == "0.1\\overline{6}" and repeating_text(Fraction(1, 4)) is None
    assert repeating_text(Fraction(-22, 7)) == "-3.\\overline{142857}"
    assert mixed_text(Fraction(7, 3)) == "2\\frac{1}{3}" and mixed_text(Fraction(-7, 3), True) == "-2 1/3"
    assert scientific(Fraction(1500000)) == "1.5\\times10^{6}" and scientific(Fraction(-25, 1000), "e") == "-2.5e-2"
    assert significant_text(Fraction(82796, 3), 3) == "27600" and significant_text(Fraction(1, 3), 3) == "0.333"
