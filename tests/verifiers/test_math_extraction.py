"""Answer extraction and Verdict provenance of ``grade_math``."""

import pytest

from eurus_prime.verifiers.math import VERIFIER, extract_answer, grade_math, last_boxed


@pytest.mark.parametrize(
    "text,answer",
    [
        ("so \\boxed{12}", "12"),
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\frac{\\sqrt{3}}{2}} done", "\\frac{\\sqrt{3}}{2}"),
        ("\\fbox{7}", "7"),
        ("\\boxed{1} and finally \\fbox{2}", "2"),
        ("\\boxed {5}", "5"),
        ("\\boxed 5", "5"),
        ("\\boxed{\\{1,2\\}}", "\\{1,2\\}"),
        ("\\boxed{\\left\\{ 1 \\right.}", "\\left\\{ 1 \\right."),
        ("\\boxed{3} but then \\boxed{unclosed", "3"),
        ("The answer is 42.", "42"),
        ("The answer is 42. I checked it twice.", "42"),
        ("So the answer is: 3.5", "3.5"),
        ("Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", "\\frac{1}{2}"),
        ("final answer: x = 3\nmore text", "x = 3"),
        ("The answer is 4. Wait, no: the answer is 5.", "5"),
        ("nothing here", None),
        ("", None),
    ],
)
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


def test_last_boxed_nested_and_linear_on_big_inputs():
    assert last_boxed("\\boxed{\\frac{a}{b}} end") == "\\frac{a}{b}"
    assert last_boxed("\\boxed{" * 100_000) is None  # unmatched: one linear pass, no quadratic scan


def test_verdict_provenance():
    v = grade_math("\\boxed{12}", "12")
    assert (v.reason, v.rule, v.extracted, v.verifier) == ("correct", "normaliser", "12", VERIFIER)
    assert grade_math("\\boxed{0.5}", "\\frac{1}{2}").rule == "numeric"
    assert grade_math("\\boxed{\\frac{1}{2}x}", "x/2").rule == "identity"
    assert grade_math("\\boxed{\\sin^2 x + \\cos^2 x}", "1").rule == "symbolic"
    wrong = grade_math("\\boxed{13}", "12")
    assert (wrong.score, wrong.reason, wrong.rule, wrong.extracted) == (0.0, "wrong", "none", "13")
    none = grade_math("I do not know", "12")
    assert (none.score, none.reason, none.rule, none.extracted) == (0.0, "no_answer", "none", None)
