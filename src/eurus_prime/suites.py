"""Public evaluation benchmarks as prompt tables in the Eurus-2-RL-Data schema.

PRIME reports greedy pass@1 on seven suites: AIME 2024, AMC, MATH-500, Minerva Math,
OlympiadBench, LeetCode and LiveCodeBench. Each comes in its own native format, and mirrors of one
benchmark disagree on field names, so every suite has a converter that reads the common variants
and writes the one schema the rest of the project understands (``eurus_prime.contract``): the
question goes through ``prompting.build_messages`` (system prompt, Eurus-2 suffix), a math answer
becomes the ``ground_truth`` string, code tests become the JSON our code verifier runs
(``eurus_prime.verifiers.code``: ``inputs``/``outputs``, plus ``fn_name`` for call-based tests).

Errors. A row that lacks a field its suite needs is bad input: ``ValueError`` naming the file, the
row (0-based) and the field. A well-formed code row whose tests our verifier cannot run (see
``_convert_leetcode`` and ``_convert_livecodebench``) is left out, never silently: a warning gives
the count and the first reasons, and ``frame.attrs["skipped"]`` lists every ``(row, reason)``.
AIME rows from other years (AI-MO's set holds 2022-2024) are left out by design; their count is in
``frame.attrs["filtered"]``.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import logging
import math
import pickle
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eurus_prime.contract import COLUMNS, validate_prompts
from eurus_prime.prompting import build_messages, system_prompt
from eurus_prime.verifiers.math import last_boxed

log = logging.getLogger(__name__)

SPLIT = "test"
"""``extra_info.split`` of every row: these are held-out evaluation prompts."""
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
ID_FIELDS = ("id", "ID", "idx", "unique_id", "task_id", "question_id")
"""Native identifiers, kept as ``extra_info.id`` (a string, or None when a row has none)."""
SPEC_KEYS = ("name", "path", "hub_id", "split", "limit")
"""Keys of one suite in ``load_suites``."""
MAX_REPORTED_SKIPS = 5


class _BadRow(ValueError):
    """The row lacks a field its suite needs, or the field has the wrong type."""


class _Unconvertible(Exception):
    """The row is well formed, but its tests cannot be expressed for our code verifier."""


@dataclass(frozen=True)
class _Item:
    question: str
    ground_truth: str
    native_id: str | None


@dataclass(frozen=True)
class SuiteSpec:
    """How one benchmark is found and converted."""

    ability: str
    """``math`` or ``code``."""
    hub_id: str
    """Default Hugging Face dataset."""
    split: str
    """Default split of ``hub_id``."""
    fields: str
    """The native fields the converter reads, for people (error messages and docs)."""
    convert: Callable[[Mapping[str, Any]], _Item]
    hub_config: str | None = None
    """Configuration (subset) of the default ``hub_id``, where it has several."""
    hub_files: tuple[str, ...] = ()
    """JSON Lines files of the default ``hub_id`` read with the ``json`` builder, for datasets
    whose hub repository needs a loading script (which ``datasets`` >= 4 no longer runs)."""
    keep: Callable[[Mapping[str, Any]], bool] | None = None
    """Rows of the native data that belong to the suite (None: all)."""
    keep_note: str = ""
    """What ``keep`` leaves out, for the log."""


# ---------------------------------------------------------------------------------------------
# native fields


def _present(value: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (list, dict)):
        return bool(value)
    return True


def _first(row: Mapping[str, Any], names: Sequence[str]) -> tuple[str, Any] | None:
    """``(name, value)`` of the first of ``names`` that ``row`` has a non-empty value for."""
    return next(((n, row[n]) for n in names if _present(row.get(n))), None)


def _looked_for(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _need_text(row: Mapping[str, Any], names: Sequence[str], what: str) -> tuple[str, str]:
    found = _first(row, names)
    if found is None:
        raise _BadRow(f"no {what} field (looked for {_looked_for(names)})")
    name, value = found
    if not isinstance(value, str):
        raise _BadRow(f"field {name!r} must be a string, got {type(value).__name__}")
    return name, value


def _native_id(row: Mapping[str, Any]) -> str | None:
    found = _first(row, ID_FIELDS)
    return None if found is None else str(found[1])


# ---------------------------------------------------------------------------------------------
# math suites


def _answer_text(value: Any) -> str:
    """A native answer as a ground-truth string: integral floats (AMC's ``142.0``) as integers,
    lists (OlympiadBench's ``final_answer``) joined with ", ", TeX ``$`` delimiters dropped."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(_answer_text(v) for v in value)
    return re.sub(r"(?<!\\)\$", "", str(value)).strip()


def _boxed_answer(row: Mapping[str, Any], answers: Sequence[str], solutions: Sequence[str]) -> str:
    """The last ``\\boxed{}`` of the solution text (Minerva's and MATH's native answers)."""
    found = _first(row, solutions)
    boxed = None if found is None else last_boxed(str(found[1]))
    if boxed is None or not boxed.strip():
        raise _BadRow(
            f"no answer field (looked for {_looked_for(answers)}) and no solution with a "
            f"\\boxed{{}} answer (looked for {_looked_for(solutions)})"
        )
    return boxed.strip()


def _convert_math(
    row: Mapping[str, Any], *, questions: Sequence[str], answers: Sequence[str], solutions: Sequence[str] = ()
) -> _Item:
    """Question as is; answer from the first answer field, else (where ``solutions`` are named)
    the last ``\\boxed{}`` of the solution."""
    _, question = _need_text(row, questions, "question")
    found = _first(row, answers)
    if found is not None:
        answer = _answer_text(found[1])
        if not answer:
            raise _BadRow(f"field {found[0]!r} holds no answer: {found[1]!r}")
    elif solutions:
        answer = _boxed_answer(row, answers, solutions)
    else:
        raise _BadRow(f"no answer field (looked for {_looked_for(answers)})")
    return _Item(question, answer, _native_id(row))


def _is_aime_2024(row: Mapping[str, Any]) -> bool:
    """AI-MO's AIME set holds 2022-2024; PRIME keeps 2024 by the problem's URL. Rows without a
    URL (Maxwell-Jia/AIME_2024, all 2024) are kept."""
    url = row.get("url")
    return not _present(url) or "2024_AIME" in str(url)


# ---------------------------------------------------------------------------------------------
# code suites: shared


def _code_truth(inputs: list, outputs: list, fn_name: str | None = None) -> str:
    """The code verifier's ground truth JSON (call-based when ``fn_name`` is given)."""
    if not inputs:
        raise _Unconvertible("no tests")
    spec: dict[str, Any] = {"inputs": inputs, "outputs": outputs}
    if fn_name:
        spec["fn_name"] = fn_name
    try:
        return json.dumps(spec, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise _Unconvertible(f"a test value is not JSON: {exc}") from None


# ---------------------------------------------------------------------------------------------
# LeetCode (DeepSeek-Coder's contest set, which PRIME's eval runs)


def _leetcode_question(row: Mapping[str, Any]) -> str:
    """The question as PRIME's eval asks it: ``prompt_sft`` (statement, "Please complete the code
    below", the starter class). Without it, a plain statement plus ``starter_code`` when present,
    else ``prompt`` (the statement as a docstring over the starter class). The joining sentence is
    DeepSeek's ``prompt_sft`` wording, typo included, so both paths ask alike."""
    name, text = _need_text(row, ("prompt_sft", "question", "problem_description", "content", "prompt"), "question")
    starter = row.get("starter_code")
    if name in ("question", "problem_description", "content") and _present(starter):
        text += f"\n\nPlease complete the code below to solve above prblem:\n```python\n{starter}\n```"
    return text


def _signature(code: str, fn_name: str) -> list[str] | None:
    """Parameter names of ``def fn_name`` in the starter code (``self`` dropped), or None."""
    m = re.search(rf"def\s+{re.escape(fn_name)}\s*\((.*?)\)\s*(?:->[^:\n]*)?:", code, re.DOTALL)
    if m is None:
        return None
    try:
        args = ast.parse(f"def _({m.group(1)}): pass").body[0].args  # type: ignore[attr-defined]
    except SyntaxError:
        return None
    names = [a.arg for a in args.posonlyargs + args.args]
    return names[1:] if names[:1] == ["self"] else names


def _test_statements(source: str) -> list[ast.stmt]:
    """Top-level statements of the test program, with a ``def check(candidate)`` body inlined and
    the ``check(...)`` call that runs it dropped."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise _Unconvertible(f"the test program does not parse: {exc.msg} (line {exc.lineno})") from None
    out: list[ast.stmt] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "check":
            out += stmt.body
        elif not (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name)
            and stmt.value.func.id == "check"
        ):
            out.append(stmt)
    return out


def _value(node: ast.expr, bound: Mapping[str, Any]) -> Any:
    """A literal, or a name bound to one earlier in the test program."""
    if isinstance(node, ast.Name) and node.id in bound:
        return bound[node.id]
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        raise _Unconvertible(f"line {node.lineno}: {ast.unparse(node)[:60]!r} is not a literal") from None


def _callee(func: ast.expr, instances: set[str]) -> str | None:
    """``fn`` of ``<instance>.fn(...)``; None for ``candidate(...)`` (named by ``entry_point``)."""
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in instances:
        return func.attr
    if isinstance(func, ast.Name) and func.id == "candidate":
        return None
    raise _Unconvertible(f"line {func.lineno}: {ast.unparse(func)!r} is not a call of the solution")


@dataclass
class _Case:
    fn: str | None
    args: list
    kwargs: dict
    expected: Any


def _assert_case(stmt: ast.Assert, instances: set[str], bound: Mapping[str, Any]) -> _Case:
    test = stmt.test
    if not (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and isinstance(test.left, ast.Call)
    ):
        raise _Unconvertible(f"line {stmt.lineno}: the assert is not `<call> == <value>`: {ast.unparse(test)[:80]!r}")
    call = test.left
    if any(isinstance(a, ast.Starred) for a in call.args):
        raise _Unconvertible(f"line {stmt.lineno}: *args in {ast.unparse(call)[:60]!r}")
    kwargs: dict[str, Any] = {}
    for kw in call.keywords:
        value = _value(kw.value, bound)
        if kw.arg is not None:
            kwargs[kw.arg] = value
        elif isinstance(value, dict):
            kwargs.update(value)
        else:
            raise _Unconvertible(f"line {stmt.lineno}: ** of a {type(value).__name__}, not a dict")
    return _Case(
        _callee(call.func, instances), [_value(a, bound) for a in call.args], kwargs, _value(test.comparators[0], bound)
    )


def _leetcode_cases(source: str) -> list[_Case]:
    """The cases of a test program made of ``<obj> = Solution()``, literal assignments
    (``test_input = {...}``) and ``assert <obj>.<fn>(...) == <literal>`` (or ``candidate(...)``
    inside ``def check(candidate)``); any other statement raises ``_Unconvertible``."""
    instances: set[str] = set()
    bound: dict[str, Any] = {}
    cases = []
    for stmt in _test_statements(source):
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            target, value = stmt.targets[0].id, stmt.value
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "Solution":
                instances.add(target)
            else:
                bound[target] = _value(value, bound)
        elif isinstance(stmt, ast.Assert):
            cases.append(_assert_case(stmt, instances, bound))
        else:
            raise _Unconvertible(f"line {stmt.lineno}: not a test_input/assert statement: {ast.unparse(stmt)[:80]!r}")
    if not cases:
        raise _Unconvertible("the test program has no assert")
    return cases


def _positional(case: _Case, params: list[str] | None) -> list:
    """The call's arguments in signature order (keyword order when the signature is unknown)."""
    if not case.kwargs:
        return case.args
    rest = list(case.kwargs) if params is None else params[len(case.args) :]
    if set(rest) != set(case.kwargs):
        raise _Unconvertible(f"arguments {sorted(case.kwargs)} do not match the signature {params}")
    return case.args + [case.kwargs[p] for p in rest]


def _convert_leetcode(row: Mapping[str, Any]) -> _Item:
    """A LeetCode contest problem (DeepSeek-Coder's ``20240121-Jul.jsonl``, PRIME's
    ``leetcode-test.json``) as call-based tests.

    The faithful test is the native one: run the ``test`` program (``my_solution = Solution()``,
    then ``test_input = {...}`` / ``assert my_solution.fn(**test_input) == expected`` pairs)
    after the solution. Our verifier runs call-based tests instead, so each assert becomes one
    test: ``fn_name`` = the method, ``inputs`` = the arguments in the starter code's signature
    order, ``outputs`` = the expected value. Differences from running the asserts: floats compare
    with the verifier's tolerance, ``[x]`` also accepts ``x`` (the verifier's APPS rule), and only
    the first ``verifiers.code.MAX_TESTS`` tests run. A program with any statement other than
    these (an assert that is not ``call == literal``, a non-literal argument) is not converted:
    the row is skipped with the reason rather than graded on a subset of its tests.
    """
    _, source = _need_text(row, ("test",), "test")
    question = _leetcode_question(row)
    cases = _leetcode_cases(source)
    entry = row.get("entry_point")
    names = {c.fn or entry for c in cases}
    if len(names) != 1 or None in names:
        raise _Unconvertible(
            f"the asserts call {sorted(map(str, names))}; need one named method "
            "(candidate(...) needs an 'entry_point' field)"
        )
    fn_name = str(names.pop())
    code = "\n".join(str(row[k]) for k in ("starter_code", "prompt", "prompt_sft") if _present(row.get(k)))
    params = _signature(code, fn_name)
    inputs = [_positional(c, params) for c in cases]
    return _Item(question, _code_truth(inputs, [c.expected for c in cases], fn_name), _native_id(row))


# ---------------------------------------------------------------------------------------------
# LiveCodeBench

LCB_STARTER_FORMAT = (
    "You will use the following starter code to write the solution to the problem "
    "and enclose your code within delimiters."
)
LCB_STDIN_FORMAT = (
    "Read the inputs from stdin solve the problem and write the answer to stdout (do not "
    "directly test on the sample inputs). Enclose your code within delimiters as follows."
)


def _livecodebench_question(content: str, starter: str | None) -> str:
    """LiveCodeBench's generic question template (``lcb_runner/prompts/code_generation.py``), the
    one PRIME's eval sends before the Eurus-2 code suffix: the question, then the starter code or
    the stdin instructions."""
    if starter:
        fmt = f"### Format: {LCB_STARTER_FORMAT}\n```python\n{starter}\n```\n\n"
    else:
        fmt = f"### Format: {LCB_STDIN_FORMAT}\n```python\n# YOUR CODE HERE\n```\n\n"
    return f"### Question:\n{content}\n\n{fmt}### Answer: (use the provided format with backticks)\n\n"


class _DataOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain data only: a pickle that names any class or function is refused, so a
    dataset cannot run code here. (LiveCodeBench's private tests are a pickled ``str``.)"""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset")


def _decode_tests(value: Any, name: str) -> list[dict]:
    """LiveCodeBench tests: a list, JSON text, or base64 of zlib-compressed pickled JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            try:
                raw = zlib.decompress(base64.b64decode(value.encode(), validate=True))
                value = json.loads(_DataOnlyUnpickler(io.BytesIO(raw)).load())
            except (ValueError, TypeError, EOFError, zlib.error, pickle.UnpicklingError) as exc:
                raise _Unconvertible(f"{name!r} is neither JSON nor base64 zlib pickle: {exc}") from None
    if not isinstance(value, list) or not all(
        isinstance(t, Mapping) and {"input", "output", "testtype"} <= set(t) for t in value
    ):
        raise _Unconvertible(f"{name!r} is not a list of {{input, output, testtype}} tests")
    return list(value)


def _json_args(text: str) -> list:
    """A functional test's input: one JSON value per line, one line per argument."""
    try:
        return [json.loads(line) for line in text.strip().split("\n")]
    except json.JSONDecodeError as exc:
        raise _Unconvertible(f"a functional test input is not JSON lines: {exc}") from None


def _json_output(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Unconvertible(f"a functional test output is not JSON: {exc}") from None


def _func_name(row: Mapping[str, Any]) -> str:
    meta = row.get("metadata")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta) if meta.strip() else {}
        except json.JSONDecodeError:
            raise _Unconvertible(f"'metadata' is not JSON: {meta[:60]!r}") from None
    name = meta.get("func_name") if isinstance(meta, Mapping) else None
    if not _present(name):
        raise _Unconvertible("functional tests, but 'metadata' names no 'func_name'")
    return str(name)


def _convert_livecodebench(row: Mapping[str, Any]) -> _Item:
    """A LiveCodeBench code-generation problem; public then private tests.

    ``stdin`` tests become stdin/stdout tests. ``functional`` tests (LeetCode problems: the input
    is one JSON value per line, one per argument; the output is the JSON return value) become
    call-based tests of ``metadata.func_name``, which LiveCodeBench calls as a method of
    ``Solution()`` and our verifier also finds there. A problem whose tests mix both types, or
    whose functional tests have no ``func_name``, is skipped with the reason.
    """
    _, content = _need_text(row, ("question_content", "question", "problem"), "question")
    starter = _first(row, ("starter_code",))
    found = _first(row, ("public_test_cases",))
    if found is None:
        raise _BadRow("no tests field (looked for 'public_test_cases')")
    tests = _decode_tests(found[1], "public_test_cases")
    private = _first(row, ("private_test_cases",))
    if private is not None:
        tests += _decode_tests(private[1], "private_test_cases")
    kinds = {t["testtype"] for t in tests}
    if kinds == {"stdin"}:
        truth = _code_truth([t["input"] for t in tests], [t["output"] for t in tests])
    elif kinds == {"functional"}:
        truth = _code_truth(
            [_json_args(t["input"]) for t in tests], [_json_output(t["output"]) for t in tests], _func_name(row)
        )
    else:
        raise _Unconvertible(f"test types {sorted(map(str, kinds))}; need all 'stdin' or all 'functional'")
    question = _livecodebench_question(content, None if starter is None else str(starter[1]))
    return _Item(question, truth, _native_id(row))


# ---------------------------------------------------------------------------------------------
# registry

_COMPETITION = dict(questions=("problem", "question", "Problem"), answers=("answer", "Answer"))

SUITES: dict[str, SuiteSpec] = {
    "aime2024": SuiteSpec(
        "math",
        "AI-MO/aimo-validation-aime",
        "train",
        "problem | question | Problem; answer | Answer; url (rows of other years left out)",
        partial(_convert_math, **_COMPETITION),
        keep=_is_aime_2024,
        keep_note="not AIME 2024 (by 'url')",
    ),
    "amc": SuiteSpec(
        "math",
        "AI-MO/aimo-validation-amc",
        "train",
        "problem | question | Problem; answer | Answer",
        partial(_convert_math, **_COMPETITION),
    ),
    "math500": SuiteSpec(
        "math",
        "HuggingFaceH4/MATH-500",
        "test",
        "problem | question; answer, else last \\boxed{} of solution",
        partial(_convert_math, questions=("problem", "question"), answers=("answer",), solutions=("solution",)),
    ),
    "minerva_math": SuiteSpec(
        "math",
        "math-ai/minervamath",
        "test",
        "question | problem; answer, else last \\boxed{} of solution",
        partial(_convert_math, questions=("question", "problem"), answers=("answer",), solutions=("solution",)),
    ),
    "olympiadbench": SuiteSpec(
        "math",
        "Hothan/OlympiadBench",
        "train",
        "question | problem; final_answer (list) | answer",
        partial(_convert_math, questions=("question", "problem"), answers=("final_answer", "answer")),
        hub_config="OE_TO_maths_en_COMP",
    ),
    "leetcode": SuiteSpec(
        "code",
        "davidheineman/deepseek-leetcode",
        "test",
        "prompt_sft | question (+ starter_code) | prompt; test (assert program); entry_point (optional)",
        _convert_leetcode,
    ),
    "livecodebench": SuiteSpec(
        "code",
        "livecodebench/code_generation_lite",
        "test",
        "question_content; starter_code; public_test_cases; private_test_cases; metadata.func_name",
        _convert_livecodebench,
        hub_files=("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl"),
    ),
}
"""The suites by name. LiveCodeBench's default files are ``release_v4`` (May 2023 - Sep 2024),
the release PRIME evaluated."""


def get_suite(name: str) -> SuiteSpec:
    """The spec of suite ``name``; ValueError listing the valid names if there is none."""
    try:
        return SUITES[name]
    except KeyError:
        raise ValueError(f"unknown suite {name!r}; valid suites: {', '.join(SUITES)}") from None


# ---------------------------------------------------------------------------------------------
# reading


def _plain(value: Any) -> Any:
    """numpy arrays and scalars (parquet) as Python lists and scalars, recursively."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _records(data: Any, source: str) -> list[dict]:
    if isinstance(data, Mapping) and data and all(isinstance(v, list) for v in data.values()):
        data = [dict(zip(data, values)) for values in zip(*data.values())]  # column-oriented JSON
    if not isinstance(data, list):
        raise ValueError(f"{source}: expected a list of JSON objects, got {type(data).__name__}")
    for i, row in enumerate(data):
        if not isinstance(row, Mapping):
            raise ValueError(f"{source} row {i}: not a JSON object but {type(row).__name__}")
    return [dict(r) for r in data]


def _json_lines(text: str, source: str) -> list[dict]:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{source} line {n}: not JSON ({exc.msg})") from None
    return _records(rows, source)


def _read_local(path: Path) -> list[dict]:
    """Rows of a local ``.jsonl``, ``.json`` (an array, columns, or JSON Lines as PRIME's
    ``leetcode-test.json`` is) or ``.parquet`` file."""
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix or '(none)'!r}; use one of {list(LOCAL_SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if suffix == ".parquet":
        return [_plain(r) for r in pd.read_parquet(path).to_dict("records")]
    text = path.read_text(encoding="utf-8")
    if suffix == ".json":
        try:
            return _records(json.loads(text), str(path))
        except json.JSONDecodeError:
            pass
    return _json_lines(text, str(path))


def _read_hub(spec: SuiteSpec, hub_id: str, split: str) -> list[dict]:
    import datasets  # slow to import; only the hub path needs it

    if hub_id == spec.hub_id and spec.hub_files:
        files = [f"hf://datasets/{hub_id}/{f}" for f in spec.hub_files]
        ds = datasets.load_dataset("json", data_files={split: files}, split=split)
    else:
        ds = datasets.load_dataset(hub_id, spec.hub_config if hub_id == spec.hub_id else None, split=split)
    return [_plain(r) for r in ds.to_list()]


# ---------------------------------------------------------------------------------------------
# conversion


def _record(name: str, ability: str, item: _Item, system: str, index: int) -> dict:
    return {
        "data_source": name,
        "prompt": build_messages(item.question, ability, system),
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": item.ground_truth},
        "extra_info": {"split": SPLIT, "index": index, "id": item.native_id},
    }


def _report_skipped(source: str, name: str, skipped: list[tuple[int, str]], seen: int) -> None:
    if skipped:
        first = "; ".join(f"row {i}: {reason}" for i, reason in skipped[:MAX_REPORTED_SKIPS])
        log.warning(
            "%s: %d of %d %s rows could not be converted and are left out "
            "(frame.attrs['skipped'] lists them all); first: %s",
            source,
            len(skipped),
            seen,
            name,
            first,
        )


def _convert_rows(
    name: str, spec: SuiteSpec, rows: list[dict], source: str, system: str, limit: int | None
) -> tuple[list[dict], list[tuple[int, str]], int]:
    """(records, skipped (row, reason), rows left out by ``spec.keep``); stops at ``limit``."""
    records: list[dict] = []
    skipped: list[tuple[int, str]] = []
    filtered = seen = 0
    for i, row in enumerate(rows):
        if limit is not None and len(records) >= limit:
            break
        seen += 1
        if spec.keep is not None and not spec.keep(row):
            filtered += 1
            continue
        try:
            item = spec.convert(row)
        except _BadRow as exc:
            raise ValueError(f"{source} row {i}: {exc}") from None
        except _Unconvertible as exc:
            skipped.append((i, str(exc)))
            continue
        records.append(_record(name, spec.ability, item, system, len(records)))
    _report_skipped(source, name, skipped, seen)
    if filtered:
        log.info("%s: %d rows are %s and are left out", source, filtered, spec.keep_note)
    return records, skipped, filtered


def load_suite(
    name: str,
    path: str | Path | None = None,
    *,
    hub_id: str | None = None,
    split: str | None = None,
    system: str = "eurus2",
    limit: int | None = None,
) -> pd.DataFrame:
    """Load benchmark ``name`` as Eurus-2-RL-Data prompts (checked by ``contract``).

    Args:
        name: a key of ``SUITES``.
        path: a local ``.jsonl``/``.json``/``.parquet`` file in the benchmark's native format;
            when given, ``hub_id`` and ``split`` are not used.
        hub_id, split: the Hugging Face dataset and split (default: the suite's).
        system: name of the system prompt (``prompting.system_prompt``).
        limit: at most this many rows (the first ones converted).

    Returns:
        One row per problem: ``data_source`` = ``name``, ``extra_info`` = ``{split: "test",
        index: position in this table, id: native id or None}``. ``attrs``: ``source`` (the
        file or hub id), ``skipped`` (``(row, reason)`` of rows that could not be converted),
        ``filtered`` (rows not in the suite, e.g. AIME of other years).

    Raises:
        ValueError: unknown suite or system prompt, bad ``limit``, unsupported file type, a row
            lacking a needed field (names the file, the row and the field), or no row converted.
        FileNotFoundError: ``path`` does not exist.
    """
    spec = get_suite(name)
    system_text = system_prompt(system)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    if path is not None:
        source, rows = str(path), _read_local(Path(path))
    else:
        hub_id, split = hub_id or spec.hub_id, split or spec.split
        source, rows = f"{hub_id} ({split})", _read_hub(spec, hub_id, split)
    records, skipped, filtered = _convert_rows(name, spec, rows, source, system_text, limit)
    if not records:
        raise ValueError(
            f"{source}: no row of suite {name!r} could be converted ({len(rows)} rows, "
            f"{len(skipped)} skipped, {filtered} filtered out; fields read: {spec.fields})"
        )
    frame = validate_prompts(pd.DataFrame(records, columns=list(COLUMNS)), source)
    frame.attrs.update(source=source, skipped=skipped, filtered=filtered)
    return frame


def _suite_kwargs(spec: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(spec, str):
        return {"name": spec}
    if not isinstance(spec, Mapping) or "name" not in spec or set(spec) - set(SPEC_KEYS):
        raise ValueError(
            f"a suite is a name or a mapping with 'name' and optionally {list(SPEC_KEYS[1:])}; got {spec!r}"
        )
    return dict(spec)


def load_suites(specs: Sequence[str | Mapping[str, Any]], system: str = "eurus2") -> pd.DataFrame:
    """Several suites in one table, in the order given.

    Each spec is a suite name or ``{"name", "path", "hub_id", "split", "limit"}`` (all but
    ``name`` optional; see ``load_suite``). ``extra_info.index`` counts from 0 within each
    ``data_source``, so it stays unique when one suite comes from several files. ``attrs``:
    ``skipped`` as ``(source, row, reason)`` triples, ``filtered`` summed.
    """
    if not specs:
        raise ValueError("load_suites: no suites given")
    frames = [load_suite(system=system, **_suite_kwargs(s)) for s in specs]
    out = pd.concat(frames, ignore_index=True)
    counts: dict[str, int] = {}
    infos = []
    for source, info in zip(out["data_source"], out["extra_info"]):
        counts[source] = counts.get(source, 0) + 1
        infos.append({**info, "index": counts[source] - 1})
    out["extra_info"] = infos
    out.attrs = {
        "source": ", ".join(f.attrs["source"] for f in frames),
        "skipped": [(f.attrs["source"], i, reason) for f in frames for i, reason in f.attrs["skipped"]],
        "filtered": sum(f.attrs["filtered"] for f in frames),
    }
    return out
