"""Benchmark suites: native rows -> Eurus-2-RL-Data prompts whose ground truth our verifiers grade."""

import base64
import json
import logging
import pickle
import re
import shutil
import zlib
from pathlib import Path

import pandas as pd
import pytest

from eurus_prime.tasks.contract import validate_prompts
from eurus_prime.tasks.prompting import CODE_SUFFIX, EURUS2_SYSTEM_PROMPT, MATH_SUFFIX, TINY_SYSTEM_PROMPT
from eurus_prime.tasks.suites import SUITES, load_suite, load_suites
from eurus_prime.verifiers import verify
from tests import FIXTURES

SUITE_FILES = FIXTURES / "suites"


def fixture(name: str) -> Path:
    return SUITE_FILES / f"{name}.jsonl"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def truths(frame: pd.DataFrame) -> list[str]:
    return [rm["ground_truth"] for rm in frame["reward_model"]]


def user(frame: pd.DataFrame, i: int) -> str:
    return frame["prompt"][i][1]["content"]


def py(code: str) -> str:
    return f"[ADVANCE]\n\n```python\n{code}\n```"


# ---------------------------------------------------------------------------------------------
# every suite


def test_registry_lists_prime_s_seven_suites_and_humaneval():
    assert list(SUITES) == [
        "aime2024",
        "amc",
        "math500",
        "minerva_math",
        "olympiadbench",
        "leetcode",
        "livecodebench",
        "humaneval",
    ]
    assert {n: s.ability for n, s in SUITES.items()} == {
        "aime2024": "math",
        "amc": "math",
        "math500": "math",
        "minerva_math": "math",
        "olympiadbench": "math",
        "leetcode": "code",
        "livecodebench": "code",
        "humaneval": "code",
    }


@pytest.mark.parametrize("name", list(SUITES))
def test_each_fixture_becomes_valid_eurus2_prompts(name):
    frame = load_suite(name, fixture(name))
    validate_prompts(frame, name)  # raises on any contract breach
    ability = SUITES[name].ability
    assert list(frame.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert set(frame["data_source"]) == {name} and set(frame["ability"]) == {ability}
    assert [e["index"] for e in frame["extra_info"]] == list(range(len(frame)))
    assert {e["split"] for e in frame["extra_info"]} == {"test"}
    for messages in frame["prompt"]:
        assert [m["role"] for m in messages] == ["system", "user"]
        assert messages[0]["content"] == EURUS2_SYSTEM_PROMPT
        assert messages[1]["content"].endswith(MATH_SUFFIX if ability == "math" else CODE_SUFFIX)
    assert frame.attrs["source"] == str(fixture(name))


# ---------------------------------------------------------------------------------------------
# math


MATH_EXPECTED = {
    "aime2024": (["204", "25", "73"], "Every morning Aya goes for a $9$-kilometer-long walk", ["60", "61", "75"]),
    "amc": (["142", "5", "2"], "What is the value of \\[3+\\frac{1}{3+", ["0", "11", "25"]),
    "math500": (
        ["\\left( 3, \\frac{\\pi}{2} \\right)", "\\frac{14}{3}", "9"],
        "Convert the point $(0,3)$",
        ["test/precalculus/807.json", "test/algebra/2584.json", "test/number_theory/572.json"],
    ),
    "minerva_math": (["1.6", "4.5e33", "16000"], "Each of the two Magellan telescopes", ["0", "1", "2"]),
    "olympiadbench": (["2", "\\frac{1}{2 n+2}", "2^{1009}"], "Xenia and Sergey play", ["1606", "1607", "1612"]),
}


@pytest.mark.parametrize("name", list(MATH_EXPECTED))
def test_math_questions_answers_and_ids(name):
    answers, question_start, ids = MATH_EXPECTED[name]
    frame = load_suite(name, fixture(name))
    assert truths(frame) == answers
    assert user(frame, 0).startswith(question_start)
    assert [e["id"] for e in frame["extra_info"]] == ids


@pytest.mark.parametrize(
    "name,row,response,wrong",
    [
        ("aime2024", 0, "so the walk takes \\boxed{204} minutes", "\\boxed{240}"),
        ("amc", 0, "\\boxed{142}", "\\boxed{141}"),
        ("math500", 1, "\\boxed{\\dfrac{14}{3}}", "\\boxed{\\frac{3}{14}}"),
        ("minerva_math", 2, "\\boxed{16000}", "\\boxed{8000}"),
        ("olympiadbench", 2, "\\boxed{2^{1009}}", "\\boxed{2^{1008}}"),
    ],
)
def test_math_ground_truth_grades_right_and_wrong_answers(name, row, response, wrong):
    truth = truths(load_suite(name, fixture(name)))[row]
    assert verify("math", response, truth).correct
    assert not verify("math", wrong, truth).correct


def test_aime_keeps_2024_only_and_counts_the_rest():
    frame = load_suite("aime2024", fixture("aime2024"))
    assert len(frame) == 3 and frame.attrs["filtered"] == 1 and frame.attrs["skipped"] == []


def test_mirror_field_names_are_accepted(tmp_path):
    aime = write_jsonl(
        tmp_path / "aime.jsonl", [{"ID": "2024-I-4", "Problem": "Find $m+n$.", "Solution": "...", "Answer": 116}]
    )
    frame = load_suite("aime2024", aime)
    assert truths(frame) == ["116"] and frame["extra_info"][0]["id"] == "2024-I-4"
    minerva = write_jsonl(tmp_path / "minerva.jsonl", [{"question": "Compute $2+2$.", "answer": "4"}])
    frame = load_suite("minerva_math", minerva)
    assert truths(frame) == ["4"] and user(frame, 0).startswith("Compute $2+2$.")
    assert frame["extra_info"][0]["id"] is None


def test_math_answer_taken_from_the_last_box_of_the_solution(tmp_path):
    path = write_jsonl(
        tmp_path / "math.jsonl", [{"problem": "p", "solution": "first \\boxed{1}, then \\boxed{\\frac{a}{b}}."}]
    )
    assert truths(load_suite("math500", path)) == ["\\frac{a}{b}"]


# ---------------------------------------------------------------------------------------------
# LeetCode


PUSHES_RIGHT = """class Solution:
    def minimumPushes(self, word: str) -> int:
        return sum(i // 8 + 1 for i in range(len(word)))"""
PUSHES_WRONG = """class Solution:
    def minimumPushes(self, word: str) -> int:
        return len(word)"""
PAIRS_RIGHT = """class Solution:
    def countOfPairs(self, n, x, y):
        res = [0] * n
        for i in range(1, n + 1):
            for j in range(1, n + 1):
                if i != j:
                    res[min(abs(i - j), abs(i - x) + 1 + abs(y - j), abs(i - y) + 1 + abs(x - j)) - 1] += 1
        return res"""
PAIRS_WRONG = """def countOfPairs(n, x, y):
    return [n * (n - 1)] + [0] * (n - 1)"""


def test_leetcode_question_is_prime_prompt_sft_and_asserts_become_calls(caplog):
    native = [json.loads(line) for line in fixture("leetcode").read_text().splitlines()]
    with caplog.at_level(logging.WARNING, logger="eurus_prime.tasks.suites"):
        frame = load_suite("leetcode", fixture("leetcode"))
    assert user(frame, 0) == native[0]["prompt_sft"] + CODE_SUFFIX
    assert json.loads(truths(frame)[1]) == {
        "fn_name": "countOfPairs",
        "inputs": [[3, 1, 3], [5, 2, 4], [4, 1, 1]],
        "outputs": [[6, 0, 0], [10, 8, 2, 0, 0], [6, 4, 2, 0]],
    }
    assert frame["extra_info"][0]["id"] == native[0]["task_id"]
    [(row, reason)] = frame.attrs["skipped"]
    assert row == 2 and "the assert is not `<call> == <value>`" in reason
    assert "1 of 3 leetcode rows could not be converted" in caplog.text and "row 2:" in caplog.text


@pytest.mark.parametrize(
    "row,right,wrong",
    [(0, PUSHES_RIGHT, PUSHES_WRONG), (1, PAIRS_RIGHT, PAIRS_WRONG)],
    ids=["minimumPushes", "countOfPairs"],
)
def test_leetcode_ground_truth_grades_reference_solutions(row, right, wrong):
    truth = truths(load_suite("leetcode", fixture("leetcode")))[row]
    assert verify("code", py(right), truth).correct
    assert not verify("code", py(wrong), truth).correct


def test_leetcode_orders_keyword_arguments_by_the_signature_and_reads_check_candidate(tmp_path):
    stub = "class Solution:\n    def f(self, n: int, x: int, y: int) -> List[int]:\n        "
    path = write_jsonl(
        tmp_path / "lc.jsonl",
        [
            {
                "task_id": "kw",
                "prompt": f'"""\nStatement.\n"""\n{stub}',
                "test": '\nmy_solution = Solution()\n\ntest_input = { "y": 3, "n": 4, "x": 1 }\n'
                "assert my_solution.f(**test_input) == [1, 2]\n",
            },
            {
                "task_id": "cand",
                "question": "Add two numbers.",
                "entry_point": "add",
                "starter_code": "class Solution:\n    def add(self, a: int, b: int) -> int:\n        ",
                "test": "def check(candidate):\n    assert candidate(1, b=2) == 3\n    assert candidate(a=-1, b=1) == 0\n\n"
                "check(Solution().add)\n",
            },
        ],
    )
    frame = load_suite("leetcode", path)
    assert json.loads(truths(frame)[0])["inputs"] == [[4, 1, 3]]
    assert json.loads(truths(frame)[1]) == {"fn_name": "add", "inputs": [[1, 2], [-1, 1]], "outputs": [3, 0]}
    assert user(frame, 0).startswith('"""\nStatement.')
    assert "```python\nclass Solution:\n    def add" in user(frame, 1)


# ---------------------------------------------------------------------------------------------
# LiveCodeBench


TESTED_RIGHT = """class Solution:
    def countTestedDevices(self, batteryPercentages):
        count = 0
        for b in batteryPercentages:
            if b - count > 0:
                count += 1
        return count"""
TESTED_WRONG = """class Solution:
    def countTestedDevices(self, batteryPercentages):
        return sum(1 for b in batteryPercentages if b > 0)"""
CANDIES_RIGHT = """class Solution:
    def distributeCandies(self, n, limit):
        return sum(1 for a in range(limit + 1) for b in range(limit + 1) if 0 <= n - a - b <= limit)"""
CANDIES_WRONG = """class Solution:
    def distributeCandies(self, n, limit):
        return (n + 1) * (n + 2) // 2"""
PASSES_RIGHT = """n, l = map(int, input().split())
print(sum(int(a) >= l for a in input().split()))"""
PASSES_WRONG = """n, l = map(int, input().split())
print(sum(int(a) > l for a in input().split()))"""


def test_livecodebench_question_template_and_tests():
    frame = load_suite("livecodebench", fixture("livecodebench"))
    first = user(frame, 0)
    assert first.startswith("### Question:\nYou are given a 0-indexed integer array batteryPercentages")
    assert (
        "### Format: You will use the following starter code to write the solution to the problem and "
        "enclose your code within delimiters.\n```python\nclass Solution:\n    def countTestedDevices"
    ) in first
    assert "### Answer: (use the provided format with backticks)\n\n" + CODE_SUFFIX in first
    assert "Read the inputs from stdin solve the problem" in user(frame, 2)
    assert json.loads(truths(frame)[0]) == {  # 2 public + 3 compressed private tests
        "fn_name": "countTestedDevices",
        "inputs": [[[1, 1, 2, 1, 3]], [[0, 1, 2]], [[0]], [[5, 5, 5]], [[2, 0, 1, 3]]],
        "outputs": [3, 2, 0, 3, 2],
    }
    assert json.loads(truths(frame)[1])["inputs"][:2] == [[5, 2], [3, 3]]  # newline-separated arguments
    stdin = json.loads(truths(frame)[2])
    assert "fn_name" not in stdin and stdin["outputs"] == ["3\n", "0\n", "6\n", "1\n"]
    assert [e["id"] for e in frame["extra_info"]] == ["3220", "3199", "abc330_a"]
    assert frame.attrs["skipped"] == [(3, "functional tests, but 'metadata' names no 'func_name'")]


@pytest.mark.parametrize(
    "row,right,wrong",
    [(0, TESTED_RIGHT, TESTED_WRONG), (1, CANDIES_RIGHT, CANDIES_WRONG), (2, PASSES_RIGHT, PASSES_WRONG)],
    ids=["functional", "functional-two-args", "stdin"],
)
def test_livecodebench_ground_truth_grades_reference_solutions(row, right, wrong):
    truth = truths(load_suite("livecodebench", fixture("livecodebench")))[row]
    assert verify("code", py(right), truth).correct
    assert not verify("code", py(wrong), truth).correct


class Boom:
    """A pickle payload that would run code on load if the loader allowed classes."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_livecodebench_private_tests_never_unpickle_objects(tmp_path):
    row = json.loads(fixture("livecodebench").read_text().splitlines()[0])
    evil = row | {"private_test_cases": base64.b64encode(zlib.compress(pickle.dumps(Boom()))).decode()}
    harmless = row | {"question_id": "ok", "private_test_cases": "[]"}
    frame = load_suite("livecodebench", write_jsonl(tmp_path / "lcb.jsonl", [evil, harmless]))
    [(index, reason)] = frame.attrs["skipped"]
    assert index == 0 and "refusing to load builtins.print" in reason
    assert frame["extra_info"][0]["id"] == "ok"


# ---------------------------------------------------------------------------------------------
# files, options and errors


def test_parquet_and_json_files_read_like_jsonl(tmp_path):
    reference = load_suite("olympiadbench", fixture("olympiadbench"))
    parquet = tmp_path / "olympiadbench.parquet"
    pd.read_json(fixture("olympiadbench"), lines=True).to_parquet(parquet)  # final_answer: a list column
    assert truths(load_suite("olympiadbench", parquet)) == truths(reference)
    array = tmp_path / "amc.json"
    array.write_text(json.dumps([json.loads(x) for x in fixture("amc").read_text().splitlines()]))
    assert truths(load_suite("amc", array)) == ["142", "5", "2"]
    lines_in_json = tmp_path / "leetcode-test.json"  # PRIME's file: JSON Lines named .json
    shutil.copy(fixture("leetcode"), lines_in_json)
    assert len(load_suite("leetcode", lines_in_json)) == 2


def test_limit_and_system_prompt():
    frame = load_suite("aime2024", fixture("aime2024"), limit=2, system="tiny")
    assert truths(frame) == ["204", "25"] and frame["prompt"][0][0]["content"] == TINY_SYSTEM_PROMPT
    assert len(load_suite("livecodebench", fixture("livecodebench"), limit=1)) == 1
    with pytest.raises(ValueError, match="limit must be >= 1"):
        load_suite("amc", fixture("amc"), limit=0)
    with pytest.raises(ValueError, match="unknown system prompt 'nope'"):
        load_suite("amc", fixture("amc"), system="nope")


def test_missing_field_names_the_file_row_and_field(tmp_path):
    rows = [json.loads(x) for x in fixture("aime2024").read_text().splitlines()]
    del rows[3]["answer"]
    path = write_jsonl(tmp_path / "aime2024.jsonl", rows)
    with pytest.raises(ValueError, match=re.escape(f"{path} row 3: no answer field (looked for 'answer', 'Answer')")):
        load_suite("aime2024", path)
    no_question = write_jsonl(tmp_path / "lcb.jsonl", [{"public_test_cases": "[]"}])
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"{no_question} row 0: no question field (looked for 'question_content', 'question', 'problem')"
        ),
    ):
        load_suite("livecodebench", no_question)
    no_box = write_jsonl(tmp_path / "minerva.jsonl", [{"problem": "p", "solution": "no box here"}])
    with pytest.raises(ValueError, match=r"row 0: no answer field .* no solution with a \\boxed\{\} answer"):
        load_suite("minerva_math", no_box)


def test_bad_names_files_and_contents(tmp_path):
    with pytest.raises(ValueError, match="unknown suite 'aime'; valid suites: aime2024, amc, math500"):
        load_suite("aime")
    csv = tmp_path / "aime.csv"
    csv.write_text("problem,answer\n")
    with pytest.raises(ValueError, match=r"aime\.csv: unsupported file type '\.csv'"):
        load_suite("aime2024", csv)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_suite("aime2024", tmp_path / "missing.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"problem": "p", "answer": 1}\n{"problem": \n')
    with pytest.raises(ValueError, match=r"broken\.jsonl line 2: not JSON"):
        load_suite("amc", broken)
    unconvertible = write_jsonl(tmp_path / "lcb.jsonl", [{"question_content": "q", "public_test_cases": "[]"}])
    with pytest.raises(ValueError, match="no row of suite 'livecodebench' could be converted"):
        load_suite("livecodebench", unconvertible)


def test_load_suites_concatenates_and_reindexes_within_each_suite():
    frame = load_suites(
        [
            {"name": "amc", "path": str(fixture("amc"))},
            {"name": "leetcode", "path": fixture("leetcode")},
            {"name": "amc", "path": fixture("amc"), "limit": 2},
        ],
        system="tiny",
    )
    validate_prompts(frame, "suites")
    assert list(frame["data_source"]) == ["amc"] * 3 + ["leetcode"] * 2 + ["amc"] * 2
    assert [e["index"] for e in frame["extra_info"]] == [0, 1, 2, 0, 1, 3, 4]
    assert frame.attrs["skipped"] == [(str(fixture("leetcode")), 2, frame.attrs["skipped"][0][2])]
    with pytest.raises(ValueError, match="a suite is a name or a mapping with 'name'"):
        load_suites([{"name": "amc", "file": "x.jsonl"}])
    with pytest.raises(ValueError, match="no suites given"):
        load_suites([])


class FakeHub:
    """Stands in for ``datasets.load_dataset``: records the call, returns the AMC fixture rows."""

    def __init__(self):
        self.calls = []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        rows = [json.loads(x) for x in fixture("amc").read_text().splitlines()]
        return type("Dataset", (), {"to_list": lambda self: rows})()


def test_hub_loading_uses_each_suites_defaults(monkeypatch):
    import datasets

    hub = FakeHub()
    monkeypatch.setattr(datasets, "load_dataset", hub)
    frame = load_suite("amc")
    assert frame.attrs["source"] == "AI-MO/aimo-validation-amc (train)" and len(frame) == 3
    load_suite("olympiadbench")
    load_suite("olympiadbench", hub_id="someone/olympiad-mirror", split="test")
    assert hub.calls[:3] == [
        (("AI-MO/aimo-validation-amc", None), {"split": "train"}),
        (("Hothan/OlympiadBench", "OE_TO_maths_en_COMP"), {"split": "train"}),
        (("someone/olympiad-mirror", None), {"split": "test"}),
    ]
    with pytest.raises(ValueError, match="row 0: no tests field"):  # AMC rows are not LiveCodeBench rows
        load_suite("livecodebench")
    args, kwargs = hub.calls[3]
    assert args == ("json",) and kwargs["split"] == "test"
    assert kwargs["data_files"]["test"][0] == "hf://datasets/livecodebench/code_generation_lite/test.jsonl"
