import copy

import pandas as pd
import pytest

from eurus_prime.tasks.contract import (
    SchemaError,
    SplitConfig,
    assign_splits,
    deduplicate,
    prompt_key,
    validate_prompts,
)


def good_rows() -> list[dict]:
    msgs = lambda q: [{"role": "system", "content": "s"}, {"role": "user", "content": q}]  # noqa: E731
    return [
        {
            "data_source": "a",
            "prompt": msgs("1+1?"),
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": "2"},
            "extra_info": {"split": "train", "index": 0},
        },
        {
            "data_source": "b",
            "prompt": msgs("write f"),
            "ability": "code",
            "reward_model": {"style": "rule", "ground_truth": '{"fn_name": "f", "inputs": [[1]], "outputs": [2]}'},
            "extra_info": {"split": "test", "index": 1},
        },
        {
            "data_source": "a",
            "prompt": msgs("2+2?"),
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": "4"},
            "extra_info": {"split": "val", "index": 2},
        },
    ]


def test_good_rows_pass_and_survive_parquet(tmp_path):
    frame = pd.DataFrame(good_rows())
    path = tmp_path / "p.parquet"
    frame.to_parquet(path)
    out = validate_prompts(pd.read_parquet(path), source=str(path))
    assert len(out) == 3
    assert out["prompt"][0] == good_rows()[0]["prompt"]


BAD = [
    ("ability", lambda r: r.update(ability="poetry")),
    ("data_source", lambda r: r.update(data_source="")),
    ("prompt", lambda r: r.update(prompt=[])),
    ("prompt[1].role", lambda r: r["prompt"][1].update(role="robot")),
    ("prompt", lambda r: r.update(prompt=[{"role": "system", "content": "only system"}])),
    ("reward_model.style", lambda r: r["reward_model"].update(style="model")),
    ("reward_model.ground_truth", lambda r: r["reward_model"].update(ground_truth="")),
    ("extra_info", lambda r: r.update(extra_info={"split": "train"})),
]


@pytest.mark.parametrize("field,breaker", BAD, ids=[b[0] for b in BAD])
def test_each_bad_row_names_source_row_and_field(field, breaker):
    rows = good_rows()
    breaker(rows[2])
    with pytest.raises(SchemaError) as err:
        validate_prompts(pd.DataFrame(rows), source="my.parquet")
    assert f"my.parquet: row 2, field {field}:" in str(err.value)
    assert "1 of 3 rows" in str(err.value)


def test_bad_code_ground_truth_is_named():
    rows = good_rows()
    rows[1]["reward_model"]["ground_truth"] = '{"inputs": [[1], [2]], "outputs": [2]}'
    with pytest.raises(SchemaError, match=r"row 1, field reward_model.ground_truth: .*2 inputs but 1 outputs"):
        validate_prompts(pd.DataFrame(rows), source="x")


def test_missing_column_is_named():
    frame = pd.DataFrame(good_rows()).drop(columns=["reward_model"])
    with pytest.raises(SchemaError, match=r"x: missing column\(s\) \['reward_model'\]"):
        validate_prompts(frame, source="x")


def test_deduplicate_keeps_first_and_returns_the_dropped():
    rows = good_rows()
    twin = copy.deepcopy(rows[0])
    twin["prompt"][0]["content"] = "another system prompt"  # same question
    twin["extra_info"] = {"split": "test", "index": 9}
    kept, dropped = deduplicate(pd.DataFrame(rows + [twin]))
    assert len(kept) == 3 and len(dropped) == 1
    assert dropped["extra_info"][0]["index"] == 9


def test_field_split_and_hash_split_are_disjoint_and_stable():
    frame = validate_prompts(pd.DataFrame(good_rows()))
    assert assign_splits(frame, SplitConfig()).tolist() == ["train", "test", "val"]
    cfg = SplitConfig(mode="hash", val_fraction=0.3, test_fraction=0.3)
    a, b = assign_splits(frame, cfg), assign_splits(frame, cfg)
    assert a.tolist() == b.tolist()
    assert set(a) <= {"train", "val", "test"}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mode": "random"}, "mode"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "fractions"),
        ({"field_values": {"train": ["train"]}}, "field_values"),
    ],
)
def test_split_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SplitConfig(**kwargs)


def test_prompt_key_ignores_system_message():
    a = [{"role": "system", "content": "x"}, {"role": "user", "content": "q"}]
    b = [{"role": "system", "content": "y"}, {"role": "user", "content": "q"}]
    assert prompt_key(a) == prompt_key(b)
