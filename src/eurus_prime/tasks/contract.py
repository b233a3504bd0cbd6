"""The data contract: Eurus-2-RL-Data rows, validated, deduplicated and split.

One row per prompt: ``data_source`` (str), ``prompt`` (list of chat messages ``{role, content}``),
``ability`` (``math`` | ``code``), ``reward_model`` (``{style: "rule", ground_truth: str}``; for
code, JSON of the tests), ``extra_info`` (``{split, index}``). A row that breaks the contract stops
the run with an error naming the source, the row and the field; nothing is dropped silently. Opt in
to quarantine instead (``quarantine_prompts``): bad rows are set aside, whole, in a table that says
why, and the run goes on with the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from eurus_prime.tasks.countdown.steps import parse_ground_truth as parse_countdown
from eurus_prime.verifiers import ABILITIES
from eurus_prime.verifiers.code import parse_ground_truth as parse_code

log = logging.getLogger(__name__)

COLUMNS = ("data_source", "prompt", "ability", "reward_model", "extra_info")
ROLES = ("system", "user", "assistant")
#: Abilities whose ground truth has a structure to check (math's is any answer text).
GROUND_TRUTH_PARSERS = {"code": parse_code, "countdown": parse_countdown}
MAX_REPORTED_ERRORS = 10
QUARANTINE_COLUMNS = ("source", "row", "field", "reason", "row_json")
"""One row per quarantined input row: where it came from (``source``, ``row``: its 0-based
position there), what is wrong (``field`` and ``reason``; several problems are listed in the same
order, fields joined by ``", "``, reasons by ``"; "``) and the whole row as JSON (``row_json``)."""


class SchemaError(ValueError):
    """Rows that break the Eurus-2-RL-Data contract."""


def _as_list(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _row_errors(row: Mapping) -> list[tuple[str, str]]:
    """(field, problem) pairs for one row; empty when the row is valid."""
    errors: list[tuple[str, str]] = []
    if not isinstance(row["data_source"], str) or not row["data_source"]:
        errors.append(("data_source", f"must be a non-empty string, got {row['data_source']!r}"))
    prompt = _as_list(row["prompt"])
    if not isinstance(prompt, list) or not prompt:
        errors.append(("prompt", f"must be a non-empty list of messages, got {type(prompt).__name__}"))
    else:
        for j, msg in enumerate(prompt):
            if not isinstance(msg, Mapping) or not isinstance(msg.get("content"), str):
                errors.append((f"prompt[{j}]", "must be a {role, content} message with str content"))
            elif msg.get("role") not in ROLES:
                errors.append((f"prompt[{j}].role", f"must be one of {ROLES}, got {msg.get('role')!r}"))
        if not any(isinstance(m, Mapping) and m.get("role") == "user" for m in prompt):
            errors.append(("prompt", "has no user message"))
    ability = row["ability"]
    if ability not in ABILITIES:
        errors.append(("ability", f"must be one of {ABILITIES}, got {ability!r}"))
    rm = row["reward_model"]
    if not isinstance(rm, Mapping):
        errors.append(("reward_model", f"must be a {{style, ground_truth}} record, got {rm!r}"))
    else:
        if rm.get("style") != "rule":
            errors.append(("reward_model.style", f"must be 'rule', got {rm.get('style')!r}"))
        gt = rm.get("ground_truth")
        if not isinstance(gt, str) or not gt.strip():
            errors.append(("reward_model.ground_truth", f"must be a non-empty string, got {gt!r}"))
        elif ability in GROUND_TRUTH_PARSERS:
            try:
                GROUND_TRUTH_PARSERS[ability](gt)
            except ValueError as exc:
                errors.append(("reward_model.ground_truth", str(exc)))
    info = row["extra_info"]
    if not isinstance(info, Mapping) or "split" not in info or "index" not in info:
        errors.append(("extra_info", f"must be a {{split, index}} record, got {info!r}"))
    return errors


def _check_columns(frame: pd.DataFrame, source: str) -> None:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise SchemaError(f"{source}: missing column(s) {missing}; the Eurus-2-RL-Data schema needs {list(COLUMNS)}")


def _problems(frame: pd.DataFrame) -> list[tuple[int, str, str]]:
    """(row position, field, problem) for every problem of every row, in row order."""
    problems = []
    for i, row in enumerate(frame[list(COLUMNS)].to_dict("records")):
        problems += [(i, fld, msg) for fld, msg in _row_errors(row)]
    return problems


def _problem_lines(problems: list[tuple[int, str, str]], source: str) -> str:
    lines = [f"{source}: row {i}, field {fld}: {msg}" for i, fld, msg in problems[:MAX_REPORTED_ERRORS]]
    return "\n".join(lines) + ("\n..." if len(problems) > MAX_REPORTED_ERRORS else "")


def _plain_prompts(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["prompt"] = [[dict(m) for m in _as_list(p)] for p in out["prompt"]]
    return out


def validate_prompts(frame: pd.DataFrame, source: str = "<prompts>") -> pd.DataFrame:
    """Check every row against the contract; return the frame with ``prompt`` as plain lists.

    Raises:
        SchemaError: naming ``source``, the row number and the field of the first few bad rows,
        and how many rows are bad in all.
    """
    _check_columns(frame, source)
    problems = _problems(frame)
    if problems:
        bad_rows = len({i for i, _, _ in problems})
        raise SchemaError(
            f"{bad_rows} of {len(frame)} rows break the Eurus-2-RL-Data schema:\n" + _problem_lines(problems, source)
        )
    return _plain_prompts(frame)


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return dict(value)
    return repr(value)


def row_to_json(row: Mapping) -> str:
    """One row, every column, as JSON text (numpy arrays as lists; anything else JSON lacks as
    its ``repr``), so a quarantined row keeps all its data."""
    return json.dumps(dict(row), default=_json_default, ensure_ascii=False)


def empty_quarantine() -> pd.DataFrame:
    """A quarantine table with no rows and the columns and dtypes of a full one."""
    return pd.DataFrame(
        {
            "source": pd.Series(dtype=str),
            "row": pd.Series(dtype="int64"),
            "field": pd.Series(dtype=str),
            "reason": pd.Series(dtype=str),
            "row_json": pd.Series(dtype=str),
        }
    )


def quarantine_prompts(frame: pd.DataFrame, source: str = "<prompts>") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Like ``validate_prompts``, but set bad rows aside instead of failing.

    Returns:
        The valid rows (``prompt`` as plain lists, index reset) and the quarantine table: one row
        per bad input row, columns ``QUARANTINE_COLUMNS``. The two together hold every input row.

    Raises:
        SchemaError: when a column of the schema is missing (no row could be valid).
    """
    _check_columns(frame, source)
    problems = _problems(frame)
    by_row: dict[int, list[tuple[str, str]]] = {}
    for i, fld, msg in problems:
        by_row.setdefault(i, []).append((fld, msg))
    if not by_row:
        return _plain_prompts(frame).reset_index(drop=True), empty_quarantine()
    records = frame.to_dict("records")
    quarantine = pd.DataFrame(
        [
            {
                "source": source,
                "row": i,
                "field": ", ".join(fld for fld, _ in errs),
                "reason": "; ".join(msg for _, msg in errs),
                "row_json": row_to_json(records[i]),
            }
            for i, errs in by_row.items()
        ]
    ).astype(empty_quarantine().dtypes.to_dict())
    bad = np.zeros(len(frame), dtype=bool)
    bad[list(by_row)] = True
    return _plain_prompts(frame[~bad]).reset_index(drop=True), quarantine


def describe_quarantine(quarantine: pd.DataFrame) -> str:
    """The first few quarantined rows as ``<source>: row <i>, field <field>: <reason>`` lines."""
    lines = [
        f"{r.source}: row {r.row}, field {r.field}: {r.reason}"
        for r in quarantine.head(MAX_REPORTED_ERRORS).itertuples()
    ]
    return "\n".join(lines) + ("\n..." if len(quarantine) > MAX_REPORTED_ERRORS else "")


def prompt_key(messages) -> str:
    """Identity of a prompt for deduplication: its non-system messages (the question)."""
    return "\n".join(f"{m['role']}:{m['content']}" for m in _as_list(messages) if m["role"] != "system")


@dataclass(frozen=True)
class SplitConfig:
    """How validated prompts become train / val / test tables."""

    mode: str = "field"
    """``field``: use ``extra_info.split``; ``hash``: carve val/test by a stable hash."""
    field_values: dict = field(
        default_factory=lambda: {"train": ["train"], "val": ["val", "validation"], "test": ["test"]}
    )
    """``field`` mode: which ``extra_info.split`` values go to each table."""
    val_fraction: float = 0.01
    """``hash`` mode: share of prompts for validation."""
    test_fraction: float = 0.01
    """``hash`` mode: share of prompts for the held-out test."""
    salt: str = "eurus_prime"
    """``hash`` mode: salt of the hash (change it to draw another split)."""

    def __post_init__(self) -> None:
        if self.mode not in ("field", "hash"):
            raise ValueError(f"data_prep.split.mode must be 'field' or 'hash', got {self.mode!r}")
        if set(self.field_values) != {"train", "val", "test"}:
            raise ValueError(
                f"data_prep.split.field_values needs keys train, val, test; got {sorted(self.field_values)}"
            )
        if self.val_fraction < 0 or self.test_fraction < 0 or self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"data_prep.split fractions must be >= 0 and sum below 1, got val="
                f"{self.val_fraction}, test={self.test_fraction}"
            )


def deduplicate(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the first row of each distinct question; return (kept, dropped duplicates)."""
    keys = frame["prompt"].map(prompt_key)
    dup = keys.duplicated(keep="first")
    if dup.any():
        log.warning("data_prep: %d duplicate prompts dropped (kept the first of each)", int(dup.sum()))
    return frame[~dup].reset_index(drop=True), frame[dup].reset_index(drop=True)


def _hash_unit(key: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}\n{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(frame: pd.DataFrame, cfg: SplitConfig) -> pd.Series:
    """The table (train/val/test/unused) each row goes to."""
    if cfg.mode == "hash":
        u = frame["prompt"].map(lambda p: _hash_unit(prompt_key(p), cfg.salt))
        return pd.Series(
            np.where(u < cfg.val_fraction, "val", np.where(u < cfg.val_fraction + cfg.test_fraction, "test", "train")),
            index=frame.index,
        )
    value_to_table = {v: t for t, values in cfg.field_values.items() for v in values}
    return frame["extra_info"].map(lambda e: value_to_table.get(e["split"], "unused"))
