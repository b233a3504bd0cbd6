"""LiveCodeBench (code_generation_lite): public and private test cases, stdin or call-based."""

from __future__ import annotations

import base64
import io
import json
import logging
import pickle
import zlib
from collections.abc import Mapping
from typing import Any

from eurus_prime.tasks.suites.base import (
    _BadRow,
    _code_truth,
    _first,
    _Item,
    _native_id,
    _need_text,
    _present,
    _Unconvertible,
)

log = logging.getLogger(__name__)


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
