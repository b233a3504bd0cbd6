"""The countdown world's generator and demonstrator."""

import random

import pytest

from eurus_prime.tasks.contract import validate_prompts
from eurus_prime.tasks.countdown.steps import Puzzle, label_steps, parse_ground_truth, parse_question
from eurus_prime.tasks.countdown.world import CountdownWorldConfig, demonstrate, generate_countdown_world
from eurus_prime.verifiers import verify

pytest.importorskip("reasoning_gym")


@pytest.fixture(scope="module")
def world():
    cfg = CountdownWorldConfig(n_sft=200, n_train=40, n_val=20, n_test=40, seed=3)
    return cfg, *generate_countdown_world(cfg)


def test_splits_sizes_and_provenance(world):
    cfg, prompts, demos = world
    assert prompts["extra_info"].map(lambda e: e["split"]).value_counts().to_dict() == {
        "train": 40,
        "test": 40,
        "val": 20,
    }
    assert len(demos) == 200
    test = prompts[prompts["extra_info"].map(lambda e: e["split"]) == "test"]
    assert set(test["data_source"]) == {"countdown_id_n4", "countdown_novel_n3", "countdown_novel_n5"}
    assert (test["data_source"].str.contains("novel")).sum() == 20
    trained = prompts[prompts["extra_info"].map(lambda e: e["split"]) != "test"]
    assert set(trained["data_source"]) | set(demos["data_source"]) == {"countdown_id_n4"}
    info = prompts["extra_info"].iloc[0]
    assert info["generator"] == "countdown" and '"min_numbers": 4' in info["generator_config"]
    assert '"operators": ["+", "-"]' in info["generator_config"]
    # every prompt's question and ground truth are the same puzzle, and it can be solved
    for row in prompts.itertuples():
        assert parse_question(row.prompt[1]["content"]) == parse_ground_truth(row.reward_model["ground_truth"])
    # no puzzle crosses splits (sft may repeat itself, never another split's)
    by_split = {}
    for frame in (prompts, demos):
        for row in frame.itertuples():
            by_split.setdefault(row.reward_model["ground_truth"], set()).add(row.extra_info["split"])
    assert all(len(s) == 1 for s in by_split.values())
    validate_prompts(prompts)  # the Eurus-2-RL-Data contract, countdown ground truths included


def test_demonstrations_are_labelled_and_graded_alike(world):
    cfg, _, demos = world
    for row in demos.itertuples():
        v = verify("countdown", row.response, row.reward_model["ground_truth"])
        assert v.correct == (row.first_wrong_step == -1)
    share = (demos["first_wrong_step"] == -1).mean()
    assert 0.2 < share < 0.7  # the unskilled moves and the misconception cost some demonstrations, not all
    assert set(demos["first_wrong_step"]) >= {-1, *range(cfg.sizes[0] - 1)}  # first errors at every move


def test_a_fully_skilled_demonstrator_errs_only_by_the_misconception():
    p = Puzzle((9, 8, 1, 2, 3), 13, ("+", "-"))  # 9 + 8 = 17 overshoots 13
    for rate, want in ((0.0, {-1}), (1.0, {-1, 1})):
        cfg = CountdownWorldConfig(skill=1.0, misconception_rate=rate)
        got = {label_steps(p, demonstrate(p, random.Random(s), cfg)).first_wrong_step for s in range(30)}
        assert got <= want and -1 in got


def test_the_misconception_fires_where_the_context_shows_it():
    cfg = CountdownWorldConfig(misconception_rate=1.0, skill=1.0, operators=("+", "-", "*"), misconception_op="*")
    p = Puzzle((9, 8, 1, 2, 3), 30)  # after any first move that keeps 9 and 8, 9 * 8 = 72 > 30
    hits = 0
    for seed in range(20):
        r = demonstrate(p, random.Random(seed), cfg)
        lines = [x for x in r.splitlines() if " = " in x]
        first = lines[0]
        if "9" in first.split("=")[0] or "8" in first.split("=")[0]:
            continue
        assert lines[1].startswith("9 * 8 = 72"), r
        assert label_steps(p, r).first_wrong_step == 1
        hits += 1
    assert hits > 0
    never = CountdownWorldConfig(misconception_rate=0.0, skill=1.0, operators=("+", "-", "*"), misconception_op="*")
    assert all(label_steps(p, demonstrate(p, random.Random(s), never)).first_wrong_step == -1 for s in range(20))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("sizes", (8,), "pool sizes must be 2-7"),
        ("novel_sizes", (4,), "overlap sizes"),
        ("sizes", (), "nothing to train on"),
        ("misconception_rate", 1.5, "misconception_rate must be in"),
        ("skill", -0.1, "skill must be in"),
        ("min_target", 70, "min_target"),
        ("n_sft", -1, "n_sft must be >= 0"),
        ("operators", ("+", "/"), "must be of"),
        ("misconception_op", "*", "is not one of operators"),
    ],
)
def test_bad_config_is_refused_by_name(field, value, match):
    with pytest.raises(ValueError, match=match):
        CountdownWorldConfig(**{field: value})


def test_the_contract_checks_countdown_ground_truths(world):
    from eurus_prime.tasks.contract import SchemaError

    _, prompts, _ = world
    bad = prompts.head(3).copy()
    bad.at[bad.index[1], "reward_model"] = {"style": "rule", "ground_truth": "42"}
    with pytest.raises(
        SchemaError, match=r"row 1, field reward_model.ground_truth: countdown ground truth must be JSON"
    ):
        validate_prompts(bad, "countdown.parquet")


def test_drawing_in_parallel_gives_the_same_world():
    """The generator's tasks depend only on their index, so the processes that draw them do not
    change the world."""
    small = {"n_sft": 1100, "n_train": 10, "n_val": 10, "n_test": 10, "seed": 5}
    one = generate_countdown_world(CountdownWorldConfig(**small, workers=1))
    two = generate_countdown_world(CountdownWorldConfig(**small, workers=2))
    for a, b in zip(one, two):
        assert a.to_json() == b.to_json()
