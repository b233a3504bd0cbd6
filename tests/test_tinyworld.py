import json
import random

import pandas as pd
import pytest

from eurus_prime.contract import prompt_key, validate_prompts
from eurus_prime.prompting import MATH_SUFFIX, TINY_SYSTEM_PROMPT
from eurus_prime.tinyworld.code_tasks import TEMPLATES, demonstrate_code, sample_code_task
from eurus_prime.tinyworld.math_tasks import VERBS, demonstrate_math, sample_math_task
from eurus_prime.tinyworld.world import TinyWorldConfig, generate_world
from eurus_prime.verifiers import verify_all

from .conftest import SMALL_WORLD


def test_same_seed_same_world_other_seed_other_world(small_world):
    prompts, demos = small_world
    again_p, again_d = generate_world(SMALL_WORLD)
    pd.testing.assert_frame_equal(prompts, again_p)
    pd.testing.assert_frame_equal(demos, again_d)
    other_p, _ = generate_world(TinyWorldConfig(**{**SMALL_WORLD.__dict__, "seed": 4}))
    assert prompt_key(other_p["prompt"][0]) != prompt_key(prompts["prompt"][0])


def test_splits_are_disjoint_and_sized(small_world):
    prompts, demos = small_world
    splits = prompts["extra_info"].map(lambda e: e["split"])
    assert splits.value_counts().to_dict() == {"train": 60, "test": 40, "val": 20}
    assert len(demos) == 300
    keys = {name: list(prompts[splits == name]["prompt"].map(prompt_key)) for name in ("train", "val", "test")}
    for name, k in keys.items():
        assert len(set(k)) == len(k), f"duplicate prompts inside {name}"
    keys = {name: set(k) for name, k in keys.items()}
    keys["sft"] = set(demos["prompt"].map(prompt_key))  # may repeat a task: several demonstrations
    names = list(keys)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not keys[a] & keys[b], f"{a} and {b} share prompts"


def test_world_rows_follow_the_eurus_schema(small_world):
    prompts, demos = small_world
    validate_prompts(prompts)
    validate_prompts(demos)
    row = prompts.iloc[0]
    assert row["prompt"][0] == {"role": "system", "content": TINY_SYSTEM_PROMPT}
    assert TINY_SYSTEM_PROMPT.startswith("\n") and TINY_SYSTEM_PROMPT.endswith("\n")
    assert set(prompts["ability"]) == {"math", "code"}
    math_row = prompts[prompts["ability"] == "math"].iloc[0]
    assert math_row["prompt"][1]["content"].endswith(MATH_SUFFIX)


def test_correct_demonstrator_verifies_and_misconceptions_fail(small_world):
    rng = random.Random(0)
    math_tasks = [sample_math_task(rng, d) for d in (1, 2, 3, 4) for _ in range(25)]
    code_tasks = [sample_code_task(rng, t) for t in TEMPLATES for _ in range(3)]
    responses = [demonstrate_math(t, rng, 0.0) for t in math_tasks]
    responses += [demonstrate_code(t, rng, 0.0) for t in code_tasks]
    truths = [str(t.answer) for t in math_tasks] + [t.ground_truth for t in code_tasks]
    abilities = ["math"] * len(math_tasks) + ["code"] * len(code_tasks)
    assert all(v.correct for v in verify_all(abilities, responses, truths))

    # Always-misconceived demonstrations fail on the tasks that carry a misconception.
    buggy_code = [sample_code_task(rng, t) for t in TEMPLATES if t.wrong_body for _ in range(5)]
    wrong = [demonstrate_code(t, rng, 1.0) for t in buggy_code]
    verdicts = verify_all(["code"] * len(wrong), wrong, [t.ground_truth for t in buggy_code])
    assert sum(v.correct for v in verdicts) <= 2  # boundary cases make the wrong body fail
    sells = next(v for v in VERBS if v.template.startswith("sells"))
    assert sells.wrong_op == "+"


def test_code_ground_truth_is_eurus_call_based_json(small_world):
    prompts, _ = small_world
    gt = json.loads(prompts[prompts["ability"] == "code"].iloc[0]["reward_model"]["ground_truth"])
    assert set(gt) == {"fn_name", "inputs", "outputs"}
    assert len(gt["inputs"]) == len(gt["outputs"]) >= 5


@pytest.mark.parametrize(
    "kwargs,match",
    [({"n_test": -1}, "n_test"), ({"code_fraction": 1.5}, "code_fraction"),
     ({"misconception_rate": -0.1}, "misconception_rate"), ({"math_difficulties": ()}, "math_difficulties"),
     ({"system_prompt": "long"}, "valid names")],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TinyWorldConfig(**kwargs)


def test_too_small_world_fails_loudly():
    # Far fewer distinct code prompts than 20,000 are reachable in 3 draws per wanted row: the
    # generator must stop and name the split instead of looping.
    with pytest.raises(ValueError, match="usable prompts for split 'test'"):
        generate_world(TinyWorldConfig(n_sft=0, n_train=0, n_val=0, n_test=20000, code_fraction=1.0,
                                       max_draws_factor=3))


def test_world_has_the_same_ability_share_in_every_split():
    prompts, demos = generate_world(TinyWorldConfig(n_sft=3000, n_train=1000, n_val=200, n_test=1000))
    share = prompts.groupby(prompts["extra_info"].map(lambda e: e["split"]))["ability"].apply(
        lambda a: (a == "code").mean())
    assert share.to_dict() == {"test": 0.4, "train": 0.4, "val": 0.4}
    assert (demos["ability"] == "code").mean() == 0.4
