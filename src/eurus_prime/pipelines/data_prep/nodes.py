"""data_prep: raw prompts -> validated, deduplicated train / val / test tables."""

from __future__ import annotations

import logging

import pandas as pd

from eurus_prime.contract import SplitConfig, assign_splits, deduplicate, validate_prompts

log = logging.getLogger(__name__)


def validate_raw_prompts(raw_prompts: pd.DataFrame) -> pd.DataFrame:
    """Check every row against the Eurus-2-RL-Data schema; fail naming source, row and field."""
    source = raw_prompts.attrs.get("source", "raw_prompts")
    return validate_prompts(raw_prompts, source=source)


def split_prompts(
    prompts: pd.DataFrame, split: SplitConfig
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Deduplicate by question, then cut into train / val / test.

    Returns:
        ``prompts_train``, ``prompts_val``, ``prompts_test`` and ``data_prep_report``: one row per
        (table, ability) with its count, plus a ``duplicates_dropped`` row, so nothing leaves
        the run unaccounted for.
    """
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
        [report, pd.DataFrame([{"table": "duplicates_dropped", "ability": "all", "rows": len(dropped)}])],
        ignore_index=True,
    )
    log.info("data_prep: %s", {k: len(v) for k, v in out.items()})
    return out["train"], out["val"], out["test"], report
