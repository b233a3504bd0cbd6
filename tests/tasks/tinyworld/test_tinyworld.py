import dataclasses
import json
import random

import pandas as pd
import pytest

from eurus_prime.tasks.contract import prompt_key, validate_prompts
from eurus_prime.tasks.prompting import MATH_SUFFIX, TINY_SYSTEM_PROMPT
from eurus_prime.tasks.tinyworld.code_tasks import NOVEL_TEMPLATES, TEMPLATES, demonstrate_code, sample_code_task
from eurus_prime.tasks.tinyworld.math_tasks import VERBS, demonstrate_math, sample_math_task
from eurus_prime.tasks.tinyworld.world import TinyWorldConfig, generate_world, task_signature
from eurus_prime.verifiers import verify_all
from tests.conftest import SMALL_WORLD


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
        for b in names[i + 1 :]:
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
    [
        ({"n_test": -1}, "n_test"),
        ({"code_fraction": 1.5}, "code_fraction"),
        ({"misconception_rate": -0.1}, "misconception_rate"),
        ({"math_difficulties": ()}, "math_difficulties"),
        ({"system_prompt": "long"}, "valid names"),
        ({"novel_share": 2.0}, "novel_share"),
        ({"novel_math_difficulties": (3, 4)}, "overlap"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TinyWorldConfig(**kwargs)


def test_too_small_world_fails_loudly():
    # Far fewer distinct code prompts than 20,000 are reachable in 3 draws per wanted row: the
    # generator must stop and name the split instead of looping.
    with pytest.raises(ValueError, match="usable prompts for split 'test'"):
        generate_world(
            TinyWorldConfig(n_sft=0, n_train=0, n_val=0, n_test=20000, code_fraction=1.0, max_draws_factor=3)
        )


def test_world_has_the_same_ability_share_in_every_split():
    prompts, demos = generate_world(TinyWorldConfig(n_sft=3000, n_train=1000, n_val=200, n_test=1000))
    info = prompts["extra_info"]
    kind = info.map(lambda e: e["split"] + ("/novel" if e["novel"] else ""))
    share = prompts.groupby(kind)["ability"].apply(lambda a: (a == "code").mean())
    # In-distribution test rows are math: nearly every code task of the training templates is a
    # training task renamed (see the module docstring).
    assert share.to_dict() == {"test": 0.0, "test/novel": 0.4, "train": 0.4, "val": 0.4}
    assert (demos["ability"] == "code").mean() == 0.4


def _tasks(cfg):
    """Every drawn task of ``generate_world(cfg)`` by split, in row order."""
    import eurus_prime.tasks.tinyworld.world as world

    seen: dict[str, list] = {}
    original = world._row

    def spy(d, split, index, system):
        seen.setdefault(split, []).append(d)
        return original(d, split, index, system)

    world._row = spy
    try:
        prompts, demos = world.generate_world(cfg)
    finally:
        world._row = original
    return prompts, demos, seen


def test_test_split_is_not_recall_and_holds_out_structures():
    cfg = TinyWorldConfig(n_sft=3000, n_train=800, n_val=100, n_test=400, seed=2)
    prompts, _, tasks = _tasks(cfg)
    trained = {task_signature(d.task) for split in ("sft", "train", "val") for d in tasks[split]}
    test = tasks["test"]
    assert len(test) == 400 and sum(d.novel for d in test) == 200
    assert not {task_signature(d.task) for d in test} & trained  # no renamed training task
    assert len({task_signature(d.task) for d in test}) == 400  # and no task twice
    train_lengths = {
        d.task.difficulty for split in ("sft", "train", "val") for d in tasks[split] if d.ability == "math"
    }
    train_templates = {
        d.task.template for split in ("sft", "train", "val") for d in tasks[split] if d.ability == "code"
    }
    for d in test:
        if d.novel and d.ability == "math":
            assert d.task.difficulty in cfg.novel_math_difficulties and d.task.difficulty not in train_lengths
        elif d.novel:
            assert d.task.template in NOVEL_TEMPLATES and d.task.template not in train_templates
        else:
            assert d.ability == "math" and d.task.difficulty in cfg.math_difficulties
    rows = prompts[prompts["extra_info"].map(lambda e: e["split"]) == "test"]
    novel = rows["extra_info"].map(lambda e: e["novel"])
    assert rows["data_source"].str.contains("_novel").eq(novel).all()
    assert 0.3 < novel.head(100).mean() < 0.7  # any head of the split mixes the kinds


def test_renamed_tasks_share_a_signature():
    rng = random.Random(1)
    task = sample_math_task(rng, 3)
    renamed = dataclasses.replace(task, name="Zed", item="pebbles")
    assert task_signature(renamed) == task_signature(task)
    code = sample_code_task(rng, TEMPLATES[0])
    assert task_signature(dataclasses.replace(code, fn_name="other", arg="q")) == task_signature(code)
    assert task_signature(dataclasses.replace(code, constants={"a": code.constants["a"] % 9 + 1})) != task_signature(
        code
    )


def test_the_test_split_rules_leave_the_training_splits_alone():
    base = dict(n_sft=500, n_train=100, n_val=30, n_test=60, seed=5)
    a_p, a_d = generate_world(TinyWorldConfig(**base))
    b_p, b_d = generate_world(TinyWorldConfig(**base, novel_share=0.2, novel_math_difficulties=(4, 5)))

    def training(frame):
        return frame[frame["extra_info"].map(lambda e: e["split"]) != "test"].reset_index(drop=True)

    pd.testing.assert_frame_equal(training(a_p), training(b_p))
    pd.testing.assert_frame_equal(a_d, b_d)
    assert not training(b_p)["extra_info"].map(lambda e: e["novel"]).any()


def test_novel_code_templates_verify_and_differ_from_training():
    rng = random.Random(3)
    descriptions = {t.description for t in TEMPLATES}
    tasks = [sample_code_task(rng, t) for t in NOVEL_TEMPLATES for _ in range(2)]
    assert not {t.template.description for t in tasks} & descriptions
    responses = [demonstrate_code(t, rng, 0.0) for t in tasks]
    assert all(v.correct for v in verify_all(["code"] * len(tasks), responses, [t.ground_truth for t in tasks]))
