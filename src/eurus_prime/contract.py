"""The data contract: Eurus-2-RL-Data rows, validated, deduplicated and split.

One row per prompt: ``data_source`` (str), ``prompt`` (list of chat messages ``{role, content}``),
``ability`` (``math`` | ``code``), ``reward_model`` (``{style: "rule", ground_truth: str}``; for
code, JSON of the tests), ``extra_info`` (``{split, index}``). A row that breaks the contract stops
the run with an error naming the source, the row and the field; nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from eurus_prime.verifiers.code import parse_ground_truth

log = logging.getLogger(__name__)

COLUMNS = ("data_source", "prompt", "ability", "reward_model", "extra_info")
ABILITIES = ("math", "code")
ROLES = ("system", "user", "assistant")
MAX_REPORTED_ERRORS = 10


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
        elif ability == "code":
            try:
                parse_ground_truth(gt)
            except ValueError as exc:
                errors.append(("reward_model.ground_truth", str(exc)))
    info = row["extra_info"]
    if not isinstance(info, Mapping) or "split" not in info or "index" not in info:
        errors.append(("extra_info", f"must be a {{split, index}} record, got {info!r}"))
    return errors


def validate_prompts(frame: pd.DataFrame, source: str = "<prompts>") -> pd.DataFrame:
    """Check every row against the contract; return the frame with ``prompt`` as plain lists.

    Raises:
        SchemaError: naming ``source``, the row number and the field of the first few bad rows,
        and how many rows are bad in all.
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{source}: missing column(s) {missing}; the Eurus-2-RL-Data schema needs {list(COLUMNS)}"
        )
    problems = []
    for i, row in enumerate(frame[list(COLUMNS)].to_dict("records")):
        problems += [(i, fld, msg) for fld, msg in _row_errors(row)]
    if problems:
        bad_rows = len({i for i, _, _ in problems})
        lines = [f"{source}: row {i}, field {fld}: {msg}" for i, fld, msg in problems[:MAX_REPORTED_ERRORS]]
        raise SchemaError(
            f"{bad_rows} of {len(frame)} rows break the Eurus-2-RL-Data schema:\n"
            + "\n".join(lines)
            + ("\n..." if len(problems) > MAX_REPORTED_ERRORS else "")
        )
    out = frame.copy()
    out["prompt"] = [[dict(m) for m in _as_list(p)] for p in out["prompt"]]
    return out


def prompt_key(messages) -> str:
    """Identity of a prompt for deduplication: its non-system messages (the question)."""
    return "\n".join(
        f"{m['role']}:{m['content']}" for m in _as_list(messages) if m["role"] != "system"
    )


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
            np.where(u < cfg.val_fraction, "val",
                     np.where(u < cfg.val_fraction + cfg.test_fraction, "test", "train")),
            index=frame.index,
        )
    value_to_table = {v: t for t, values in cfg.field_values.items() for v in values}
    return frame["extra_info"].map(lambda e: value_to_table.get(e["split"], "unused"))
