"""data_prep: raw prompts -> validated, deduplicated train / val / test tables."""

from __future__ import annotations

import logging

import pandas as pd

from eurus_prime.tasks.contract import (
    SchemaError,
    SplitConfig,
    assign_splits,
    deduplicate,
    describe_quarantine,
    empty_quarantine,
    quarantine_prompts,
    validate_prompts,
)

log = logging.getLogger(__name__)

QUARANTINE_TABLE = "prompts_quarantine (data/02_primary/quarantine.parquet)"
"""Where quarantined rows go, for messages: the catalog entry and its file."""


def validate_raw_prompts(
    raw_prompts: pd.DataFrame, quarantine: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Check every row against the Eurus-2-RL-Data schema.

    By default a bad row fails the run, naming source, row and field. With
    ``data_prep.quarantine: true`` bad rows go to the quarantine table instead (with the field,
    the reason and the whole row as JSON) and the run goes on with the rest.

    Returns:
        ``validated_prompts``, ``prompts_quarantine`` (always written; empty, with the same
        columns, when no row is quarantined) and MLflow metrics ``data_prep/rows_in``,
        ``data_prep/quarantined`` and ``data_prep/rows_kept`` (rows that passed validation).
    """
    source = raw_prompts.attrs.get("source", "raw_prompts")
    if quarantine:
        valid, bad = quarantine_prompts(raw_prompts, source=source)
    else:
        valid, bad = validate_prompts(raw_prompts, source=source), empty_quarantine()
    if len(bad):
        log.warning(
            "data_prep: %d of %d rows break the Eurus-2-RL-Data schema and were quarantined to %s; %d rows kept:\n%s",
            len(bad),
            len(raw_prompts),
            QUARANTINE_TABLE,
            len(valid),
            describe_quarantine(bad),
        )
    metrics = {
        "data_prep/rows_in": {"value": float(len(raw_prompts)), "step": 0},
        "data_prep/quarantined": {"value": float(len(bad)), "step": 0},
        "data_prep/rows_kept": {"value": float(len(valid)), "step": 0},
    }
    return valid, bad, metrics


def split_prompts(
    prompts: pd.DataFrame, quarantine: pd.DataFrame, split: SplitConfig
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Deduplicate by question, then cut into train / val / test.

    Returns:
        ``prompts_train``, ``prompts_val``, ``prompts_test`` and ``data_prep_report``: one row per
        (table, ability) with its count, plus ``duplicates_dropped`` and ``quarantined`` rows, so
        nothing leaves the run unaccounted for.

    Raises:
        SchemaError: when every row was quarantined (the quarantine table, already written, says
        why).
    """
    if prompts.empty and len(quarantine):
        raise SchemaError(
            f"data_prep: all {len(quarantine)} rows break the Eurus-2-RL-Data schema, so nothing is "
            f"left to split; every row is in the quarantine table {QUARANTINE_TABLE} with its "
            f"field and reason. The first:\n{describe_quarantine(quarantine)}"
        )
    kept, dropped = deduplicate(prompts)
    table = assign_splits(kept, split)
    out = {name: kept[table == name].reset_index(drop=True) for name in ("train", "val", "test")}
    for name, frame in out.items():
        if frame.empty:
            raise ValueError(
                f"data_prep: the {name} table is empty; check data_prep.split "
                f"(mode={split.mode!r}) against the rows' extra_info.split values "
                f"{sorted(kept['extra_info'].map(lambda e: e['split']).unique())}"
            )
    report = (
        pd.DataFrame({"table": table, "ability": kept["ability"]})
        .value_counts()
        .rename("rows")
        .reset_index()
        .sort_values(["table", "ability"], ignore_index=True)
    )
    report = pd.concat(
        [
            report,
            pd.DataFrame(
                [
                    {"table": "duplicates_dropped", "ability": "all", "rows": len(dropped)},
                    {"table": "quarantined", "ability": "all", "rows": len(quarantine)},
                ]
            ),
        ],
        ignore_index=True,
    )
    log.info("data_prep: %s", {k: len(v) for k, v in out.items()})
    return out["train"], out["val"], out["test"], report
