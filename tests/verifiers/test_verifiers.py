import json

import pytest

from eurus_prime.verifiers import verify, verify_all
from eurus_prime.verifiers.code import extract_code
from eurus_prime.verifiers.math import extract_answer, last_boxed

CALL = json.dumps({"fn_name": "f", "inputs": [[1], [2], [3]], "outputs": [2, 4, 6]})


@pytest.mark.parametrize(
    "text,answer",
    [
        ("so \\boxed{12}", "12"),
        ("\\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\fbox{7}", "7"),
        ("The answer is 42.", "42"),
        ("nothing here", None),
    ],
)
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


def test_last_boxed_matches_nested_braces():
    assert last_boxed("\\boxed{\\frac{a}{b}} end") == "\\frac{a}{b}"


@pytest.mark.parametrize(
    "response,truth,ok",
    [
        ("\\boxed{12}", "12", True),
        ("\\boxed{13}", "12", False),
        ("\\boxed{1,000}", "1000", True),
        ("\\boxed{0.5}", "\\frac{1}{2}", True),
        ("\\boxed{\\text{12}}", "12", True),
        ("\\boxed{50\\%}", "50", True),
        ("no box", "12", False),
    ],
)
def test_math_equivalence(response, truth, ok):
    assert verify("math", response, truth).correct is ok


def test_code_call_based_full_and_partial_credit():
    good = verify("code", "```python\ndef f(x):\n    return 2 * x\n```", CALL)
    assert good.score == 1.0 and good.correct and "rlimits" in good.isolation
    partial = verify("code", "```python\ndef f(x):\n    return x + 1\n```", CALL)
    assert partial.score == pytest.approx(1 / 3) and not partial.correct


def test_code_stdin_stdout():
    gt = json.dumps({"inputs": ["3\n", "5\n"], "outputs": ["6\n", "10\n"]})
    v = verify("code", "```python\nprint(int(input()) * 2)\n```", gt)
    assert v.correct


def test_code_crash_and_hang_score_zero():
    crash = verify("code", "```python\nraise SystemExit(3)\n```", CALL)
    assert crash.score == 0.0
    gt = json.dumps({"fn_name": "f", "inputs": [[1]], "outputs": [1]})
    import eurus_prime.verifiers.code as code

    old = code.PER_TEST_TIMEOUT_S
    code.PER_TEST_TIMEOUT_S = 0.5
    try:
        hang = verify("code", "```python\ndef f(x):\n    while True: pass\n```", gt)
    finally:
        code.PER_TEST_TIMEOUT_S = old
    assert hang.score == 0.0


def test_extract_code_takes_last_block():
    assert extract_code("```python\na=1\n```\ntext\n```python\nb=2\n```") == "b=2\n"


def test_verify_all_keeps_order_and_rejects_unknown_ability():
    out = verify_all(["math", "code", "math"], ["\\boxed{1}", "def f(x): return 2*x", "\\boxed{3}"], ["1", CALL, "4"])
    assert [v.correct for v in out] == [True, True, False]
    with pytest.raises(ValueError, match="row 0: unknown ability 'art'"):
        verify_all(["art"], ["x"], ["y"])


def test_grading_processes_are_shared_among_the_ranks_of_a_node(monkeypatch):
    from eurus_prime.verifiers import default_workers

    monkeypatch.setattr("os.cpu_count", lambda: 16)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_workers() == 16
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun --nproc-per-node 4
    assert default_workers() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert default_workers() == 1
