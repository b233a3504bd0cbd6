"""LeetCode (DeepSeek-Coder's contest set, which PRIME's eval runs): assert programs become call-based tests."""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eurus_prime.tasks.suites.base import (
    _code_truth,
    _Item,
    _native_id,
    _need_text,
    _present,
    _Unconvertible,
)

log = logging.getLogger(__name__)


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
