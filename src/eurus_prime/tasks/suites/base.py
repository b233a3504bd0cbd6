"""What every suite shares: the spec of a suite, the row errors, native-field lookup and the code-test JSON."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
    installed: Callable[[], tuple[str, list[dict]]] | None = None
    """Reads the suite offline from an installed package: ``(source, rows)``. Where set, it is the
    default source, and the hub is read only when a ``hub_id`` is given."""


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
