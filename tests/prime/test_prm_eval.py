"""The PRM's own evaluation: the fixed set and the prm_eval table."""

import dataclasses
import math

import numpy as np
import pytest

from eurus_prime.prime import prm_eval
from eurus_prime.prime.prm_eval import METRICS, PrmEvalConfig
from tests.prime.test_stages import CFG, _ckpt


@pytest.fixture(scope="module")
def fixed_set(small_world, tiny_tokenizer):
    prompts, _ = small_world
    val = prompts[[e["split"] == "val" for e in prompts["extra_info"]]].reset_index(drop=True)
    sft = _ckpt(tiny_tokenizer)
    return sft, prm_eval.build_eval_set(sft, val, PrmEvalConfig(prompts=5, samples=3), CFG)


def test_the_fixed_set_is_graded_scored_and_reproducible(fixed_set, small_world, tiny_tokenizer):
    sft, table = fixed_set
    assert len(table) == 15 and (table.groupby("prompt_id").size() == 3).all()
    assert {"score", "correct", "first_wrong_step", "ref_logprobs", "response_ids"} <= set(table.columns)
    assert all(len(r) == len(ids) for r, ids in zip(table["ref_logprobs"], table["response_ids"]))
    prompts, _ = small_world
    val = prompts[[e["split"] == "val" for e in prompts["extra_info"]]].reset_index(drop=True)
    again = prm_eval.build_eval_set(_ckpt(tiny_tokenizer), val, PrmEvalConfig(prompts=5, samples=3), CFG)
    assert again["response"].tolist() == table["response"].tolist()


def test_a_prm_equal_to_its_reference_scores_at_chance(fixed_set):
    sft, table = fixed_set
    scored = prm_eval.score_eval_set(sft, table, CFG)
    assert all(np.all(q == 0) for q in scored["implicit_reward"])
    q = prm_eval.quality(scored, table, table, sft.tokenizer, CFG, 3)
    assert q["ce"] == pytest.approx(math.log(2)) and q["pairwise_acc"] == 0.5
    assert q["auc"] == 0.5 or math.isnan(q["auc"])  # every sequence score ties (NaN if one class only)


def test_evaluate_gives_a_row_per_set(fixed_set, tiny_tokenizer):
    sft, table = fixed_set
    other = _ckpt(tiny_tokenizer, version="prm@v1", seed=1)
    process_rewards = prm_eval.score_eval_set(other, table, CFG)
    out = prm_eval.evaluate(
        other, table, process_rewards, table, table, dataclasses.replace(CFG, samples_per_prompt=3), 3, with_fixed=True
    )
    assert out["set"].tolist() == ["fresh", "fixed"] and list(out.columns) == ["set", "responses", *METRICS]
    assert out.loc[0, "ce"] == pytest.approx(out.loc[1, "ce"])  # the same responses, the same PRM
    assert not (out["ce"] == pytest.approx(math.log(2))).all()
    only_fresh = prm_eval.evaluate(
        other, table, process_rewards, table, table, dataclasses.replace(CFG, samples_per_prompt=3), 3, with_fixed=False
    )
    assert only_fresh["set"].tolist() == ["fresh"]


def test_schedule_and_config_errors():
    cfg = PrmEvalConfig(every=5)
    assert [i for i in range(12) if cfg.should_score(i)] == [0, 4, 9]
    assert not PrmEvalConfig(every=0).should_score(0)
    with pytest.raises(ValueError, match="prm_eval.samples"):
        PrmEvalConfig(samples=1)
