"""Opt-in quarantine of rows that break the Eurus-2-RL-Data contract (data_prep.quarantine)."""

import json
import logging

import pandas as pd
import pytest

from eurus_prime.pipelines.data_prep.nodes import split_prompts, validate_raw_prompts
from eurus_prime.tasks.contract import (
    QUARANTINE_COLUMNS,
    SchemaError,
    SplitConfig,
    describe_quarantine,
    empty_quarantine,
    quarantine_prompts,
    validate_prompts,
)

from .test_contract import good_rows

SOURCE = "data/01_raw/eurus2_rl_data.parquet"


def mixed_rows() -> pd.DataFrame:
    """Three good rows (0, 2, 5) among five bad ones of different kinds, one of them twice bad."""
    good = good_rows()
    rows = [dict(good[0]), *[json.loads(json.dumps(good[0])) for _ in range(7)]]
    rows[2] = good[1]
    rows[5] = good[2]
    rows[1]["ability"] = "poetry"  # unknown ability
    rows[3]["reward_model"] = {"style": "rule"}  # missing ground truth
    rows[4]["prompt"] = [{"role": "system", "content": "only a system prompt"}]  # no user message
    rows[6]["prompt"][1]["content"] = None  # message without str content
    rows[7]["ability"] = "code"  # two problems in one row
    rows[7]["reward_model"]["ground_truth"] = '{"inputs": [[1], [2]], "outputs": [2]}'
    rows[7]["extra_info"] = {"split": "train"}
    for i, r in enumerate(rows):
        r["extra_info"] = {**r["extra_info"], "index": i} if "index" in r["extra_info"] else r["extra_info"]
        r["prompt"] = [
            dict(m, content=m["content"] if m["content"] is None else f"{m['content']} #{i}") for m in r["prompt"]
        ]
    return pd.DataFrame(rows)


EXPECTED = {  # row -> (field, reason)
    1: ("ability", "must be one of ('math', 'code', 'countdown'), got 'poetry'"),
    3: ("reward_model.ground_truth", "must be a non-empty string, got None"),
    4: ("prompt", "has no user message"),
    6: ("prompt[1]", "must be a {role, content} message with str content"),
    7: (
        "reward_model.ground_truth, extra_info",
        "code ground_truth has 2 inputs but 1 outputs; must be a {split, index} record, got {'split': 'train'}",
    ),
}


def test_quarantine_sets_bad_rows_aside_with_row_field_and_reason():
    frame = mixed_rows()
    valid, quarantine = quarantine_prompts(frame, source=SOURCE)

    assert tuple(quarantine.columns) == QUARANTINE_COLUMNS
    assert quarantine["row"].tolist() == sorted(EXPECTED)
    assert (quarantine["source"] == SOURCE).all()
    assert {r.row: (r.field, r.reason) for r in quarantine.itertuples()} == EXPECTED
    # The good rows go on, in order, with a fresh index and prompts as plain lists.
    assert valid["extra_info"].map(lambda e: e["index"]).tolist() == [0, 2, 5]
    assert valid.index.tolist() == [0, 1, 2]
    assert isinstance(valid["prompt"][0], list)
    assert len(valid) + len(quarantine) == len(frame)


def test_quarantined_row_json_keeps_the_whole_row_even_from_parquet(tmp_path):
    frame = mixed_rows().assign(extra_column=range(8))
    path = tmp_path / "raw.parquet"
    frame.to_parquet(path)
    _, quarantine = quarantine_prompts(pd.read_parquet(path), source=str(path))  # numpy arrays inside
    original = json.loads(quarantine.set_index("row").at[1, "row_json"])
    assert original["ability"] == "poetry"
    assert original["extra_column"] == 1
    assert original["prompt"][1] == {"role": "user", "content": "1+1? #1"}
    assert original["reward_model"] == {"style": "rule", "ground_truth": "2"}


def test_describe_quarantine_reads_like_the_schema_error():
    _, quarantine = quarantine_prompts(mixed_rows(), source=SOURCE)
    lines = describe_quarantine(quarantine).splitlines()
    assert lines[0] == f"{SOURCE}: row 1, field ability: must be one of ('math', 'code', 'countdown'), got 'poetry'"
    assert len(lines) == len(EXPECTED)


def test_without_quarantine_the_first_bad_row_still_fails_naming_file_row_and_field():
    with pytest.raises(SchemaError) as err:
        validate_prompts(mixed_rows(), source=SOURCE)
    message = str(err.value)
    assert message.startswith("5 of 8 rows break the Eurus-2-RL-Data schema:\n")
    assert f"{SOURCE}: row 1, field ability: must be one of ('math', 'code', 'countdown'), got 'poetry'" in message
    assert f"{SOURCE}: row 3, field reward_model.ground_truth: must be a non-empty string" in message


def test_the_node_fails_by_default_and_quarantines_when_asked(caplog):
    frame = mixed_rows()
    frame.attrs["source"] = SOURCE
    with pytest.raises(SchemaError, match=r"eurus2_rl_data\.parquet: row 1, field ability: must be one of"):
        validate_raw_prompts(frame)
    with pytest.raises(SchemaError, match="row 1, field ability"):
        validate_raw_prompts(frame, quarantine=False)

    with caplog.at_level(logging.WARNING, logger="eurus_prime.pipelines.data_prep.nodes"):
        valid, quarantine, metrics = validate_raw_prompts(frame, quarantine=True)
    assert len(valid) == 3 and quarantine["row"].tolist() == [1, 3, 4, 6, 7]
    assert metrics == {
        "data_prep/rows_in": {"value": 8.0, "step": 0},
        "data_prep/quarantined": {"value": 5.0, "step": 0},
        "data_prep/rows_kept": {"value": 3.0, "step": 0},
    }
    warning = caplog.text
    assert (
        "5 of 8 rows break the Eurus-2-RL-Data schema and were quarantined to prompts_quarantine "
        "(data/02_primary/quarantine.parquet); 3 rows kept"
    ) in warning
    assert f"{SOURCE}: row 1, field ability: must be one of" in warning


@pytest.mark.parametrize("quarantine", [False, True])
def test_a_clean_input_writes_an_empty_quarantine_with_the_same_columns(tmp_path, quarantine):
    valid, bad, metrics = validate_raw_prompts(pd.DataFrame(good_rows()), quarantine=quarantine)
    assert len(valid) == 3 and bad.empty
    assert metrics["data_prep/quarantined"]["value"] == 0.0
    path = tmp_path / "q.parquet"
    bad.to_parquet(path)
    _, full = quarantine_prompts(mixed_rows())
    full.to_parquet(tmp_path / "full.parquet")
    empty_back, full_back = pd.read_parquet(path), pd.read_parquet(tmp_path / "full.parquet")
    assert tuple(empty_back.columns) == QUARANTINE_COLUMNS
    assert empty_back.dtypes.to_dict() == full_back.dtypes.to_dict() == empty_quarantine().dtypes.to_dict()


def test_missing_column_fails_even_with_quarantine():
    frame = pd.DataFrame(good_rows()).drop(columns=["ability"])
    with pytest.raises(SchemaError, match=r"x: missing column\(s\) \['ability'\]"):
        quarantine_prompts(frame, source="x")


def test_report_counts_the_quarantined_rows():
    valid, quarantine = quarantine_prompts(mixed_rows(), source=SOURCE)
    _, _, _, report = split_prompts(valid, quarantine, SplitConfig())
    assert report.set_index("table").loc["quarantined"].to_dict() == {"ability": "all", "rows": 5}
    assert report.set_index("table").loc["duplicates_dropped", "rows"] == 0
    clean = validate_prompts(pd.DataFrame(good_rows()))
    _, _, _, report = split_prompts(clean, empty_quarantine(), SplitConfig())
    assert report.set_index("table").loc["quarantined", "rows"] == 0


def test_all_rows_quarantined_fails_naming_the_quarantine_table():
    frame = mixed_rows().iloc[[1, 3, 4]]
    valid, quarantine = quarantine_prompts(frame, source=SOURCE)
    assert valid.empty and len(quarantine) == 3
    with pytest.raises(SchemaError) as err:
        split_prompts(valid, quarantine, SplitConfig())
    message = str(err.value)
    assert message.startswith(
        "data_prep: all 3 rows break the Eurus-2-RL-Data schema, so nothing is left to split; every row "
        "is in the quarantine table prompts_quarantine (data/02_primary/quarantine.parquet)"
    )
    assert f"{SOURCE}: row 0, field ability: must be one of" in message
