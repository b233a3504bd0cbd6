"""The stages of one PRIME iteration on a tiny model: table contracts, refusals, reproducibility."""

import dataclasses
import hashlib

import numpy as np
import pandas as pd
import pytest
import torch

from eurus_prime.datasets import Checkpoint
from eurus_prime.prime import policy as policy_lib
from eurus_prime.prime import prm as prm_lib
from eurus_prime.prime import rollouts as rollouts_lib
from eurus_prime.prime.config import PrimeConfig
from eurus_prime.tasks.tinyworld.model import build_model
from tests.conftest import SMALL_MODEL

CFG = PrimeConfig(
    prompts_per_step=4,
    oversample_factor=1.5,
    samples_per_prompt=3,
    max_response_length=16,
    filter_low=0.0,
    filter_high=1.0,
    prm_mini_batch=6,
    ppo_mini_batch=6,
    micro_batch=4,
    generation_batch_size=8,
    eval_max_items=5,
)


def _ckpt(tok, version="sft@v0", seed=0):
    torch.manual_seed(seed)
    return Checkpoint(
        model=build_model(dataclasses.replace(SMALL_MODEL, seed=seed), tok), tokenizer=tok, version=version
    )


def _digest(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def iteration0(small_world, tiny_tokenizer):
    """Stages 1-4 of iteration 0 on the small world, policy = PRM = reference."""
    prompts, _ = small_world
    train = prompts[[e["split"] == "train" for e in prompts["extra_info"]]].reset_index(drop=True)
    drawn = rollouts_lib.sample_prompts(train, CFG, iteration=0)
    sft = _ckpt(tiny_tokenizer)
    rollouts = rollouts_lib.generate_rollouts(sft, drawn, CFG, 0, sft.version)
    outcomes = rollouts_lib.verify_rollouts(rollouts)
    report = rollouts_lib.filter_prompts(outcomes, CFG)
    return train, drawn, rollouts, outcomes, report


def test_sample_prompts_depends_only_on_seed_and_iteration_and_walks_epochs(small_world):
    prompts, _ = small_world
    train = prompts[[e["split"] == "train" for e in prompts["extra_info"]]].reset_index(drop=True)
    cfg = dataclasses.replace(CFG, prompts_per_step=10, oversample_factor=2.0)  # 20 per iteration
    a = rollouts_lib.sample_prompts(train, cfg, iteration=1)
    assert a.equals(rollouts_lib.sample_prompts(train, cfg, iteration=1))
    one_epoch = pd.concat([rollouts_lib.sample_prompts(train, cfg, i) for i in range(len(train) // 20)])
    assert one_epoch["prompt_id"].is_unique and len(one_epoch) == len(train)  # each prompt once per epoch
    other = rollouts_lib.sample_prompts(train, dataclasses.replace(cfg, seed=1), iteration=1)
    assert not a["prompt_id"].equals(other["prompt_id"])
    assert list(a.columns) == [
        "iteration",
        "draw",
        "position",
        "source",
        "epoch",
        "prompt_id",
        "data_source",
        "ability",
        "prompt",
        "ground_truth",
    ]


def test_rollout_table_contract(iteration0):
    _, drawn, rollouts, outcomes, report = iteration0
    n = CFG.samples_per_prompt
    assert len(rollouts) == len(drawn) * n == len(outcomes)
    assert (rollouts["prompt_id"].to_numpy().reshape(-1, n) == drawn["prompt_id"].to_numpy()[:, None]).all()
    assert (rollouts["sample_idx"].to_numpy().reshape(-1, n) == np.arange(n)).all()
    assert (rollouts["response_length"] == rollouts["response_ids"].map(len)).all()
    assert (rollouts["response_length"] <= CFG.max_response_length).all()
    assert set(rollouts["finish_reason"]) <= {"stop", "length"}
    assert (rollouts["policy_version"] == "sft@v0").all()
    assert set(outcomes.columns) >= {"prompt_id", "sample_idx", "score", "correct", "reason", "isolation"}
    assert report["selected"].sum() == CFG.prompts_per_step  # band [0, 1]: every group passes


def test_filter_statuses_by_hand():
    cfg = dataclasses.replace(CFG, samples_per_prompt=4, prompts_per_step=2, filter_low=0.2, filter_high=0.8)
    scores = [1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0]
    outcomes = pd.DataFrame(
        {
            "prompt_id": np.repeat(list("abcde"), 4),
            "sample_idx": np.tile(range(4), 5),
            "data_source": "s",
            "ability": "math",
            "score": np.array(scores, float),
        }
    )
    report = rollouts_lib.filter_prompts(outcomes, cfg)
    assert report["status"].tolist() == ["too_easy", "too_hard", "selected", "selected", "surplus"]
    assert report["accuracy"].tolist() == [1.0, 0.0, 0.25, 0.5, 0.75]
    fixed = rollouts_lib.filter_prompts(outcomes.iloc[:8], dataclasses.replace(cfg, filter_mode="fixed_batch"))
    assert fixed["status"].tolist() == ["filled", "filled"] and fixed["selected"].all()
    # regenerate mode with every group out of the band: an error reporting the distribution.
    with pytest.raises(
        rollouts_lib.NothingSelected,
        match=r"every one of the 2 drawn prompt groups is outside the "
        r"accuracy band \[0.2, 0.8\]: accuracy distribution \{0.00: 1, 1.00: 1\} "
        r"\(1 too easy, 1 too hard\)",
    ):
        rollouts_lib.filter_prompts(outcomes.iloc[:8], cfg)


def test_a_later_draw_is_a_fresh_reproducible_extension(small_world):
    prompts, _ = small_world
    train = prompts[[e["split"] == "train" for e in prompts["extra_info"]]].reset_index(drop=True)
    first = rollouts_lib.sample_prompts(train, CFG, iteration=2)
    again = rollouts_lib.sample_prompts(train, CFG, iteration=2, draw=1, earlier=first)
    assert again.equals(rollouts_lib.sample_prompts(train, CFG, iteration=2, draw=1, earlier=first))
    assert again.iloc[: len(first)].equals(first)  # draw 1 keeps draw 0, then appends its own
    assert again["draw"].tolist() == [0] * len(first) + [1] * CFG.prompts_drawn
    assert again["position"].tolist() == list(range(len(again)))
    assert again["prompt_id"].is_unique  # never one prompt twice in an iteration
    with pytest.raises(ValueError, match="draw = -1 is invalid"):
        rollouts_lib.sample_prompts(train, CFG, iteration=2, draw=-1)
    with pytest.raises(
        ValueError,
        match=r"drawn_prompts: draw 2 extends draws 0..1, but the stored drawn_prompts lacks draw\(s\) \[1\]",
    ):
        rollouts_lib.sample_prompts(train, CFG, iteration=2, draw=2, earlier=first)
    with pytest.raises(ValueError, match="no stored drawn_prompts has them"):
        rollouts_lib.sample_prompts(train, CFG, iteration=2, draw=1, earlier=pd.DataFrame())


def test_prm_after_mode_at_iteration_0_gives_exactly_zero_rewards(iteration0, tiny_tokenizer):
    _, _, rollouts, outcomes, report = iteration0
    sft = _ckpt(tiny_tokenizer)
    rewards = prm_lib.compute_process_rewards(sft, sft, sft, rollouts, report, CFG)
    assert all((np.asarray(q) == 0).all() for q in rewards["implicit_reward"])
    assert (rewards["old_logprobs"].map(len) == rollouts["response_length"].to_numpy()[: len(rewards)]).all()
    prm = _ckpt(tiny_tokenizer)
    before = _digest(prm.model)
    _, prm_rewards, stats = prm_lib.update_prm(prm, rollouts, rewards, outcomes, CFG, iteration=0)
    first_step_rows = len(stats) and stats["responses"].iloc[0]
    assert first_step_rows == CFG.prm_mini_batch
    assert stats["loss"].iloc[0] == pytest.approx(np.log(2), abs=1e-6)  # sigmoid(0) against any label
    assert _digest(prm.model) != before and prm.optimizer_state
    zero = sum(int((np.asarray(r) == 0).all()) for r in prm_rewards["token_rewards"])
    assert zero >= CFG.prm_mini_batch  # the first mini-batch scored with the unchanged PRM


def _full_iteration(iteration0, tok, cfg=CFG):
    _, _, rollouts, outcomes, report = iteration0
    policy, prm, ref = _ckpt(tok), _ckpt(tok), _ckpt(tok)
    rewards = prm_lib.compute_process_rewards(policy, prm, ref, rollouts, report, cfg)
    prm, prm_rewards, prm_stats = prm_lib.update_prm(prm, rollouts, rewards, outcomes, cfg, 0)
    adv = policy_lib.estimate_advantages(prm_rewards, outcomes, cfg)
    policy, ppo = policy_lib.update_policy(policy, rollouts, rewards, adv, cfg, 0)
    return policy, prm, rewards, prm_rewards, adv, ppo


def test_update_stages_are_bit_reproducible(iteration0, tiny_tokenizer):
    a = _full_iteration(iteration0, tiny_tokenizer)
    b = _full_iteration(iteration0, tiny_tokenizer)
    assert _digest(a[0].model) == _digest(b[0].model) and _digest(a[1].model) == _digest(b[1].model)
    for x, y in zip(a[2:], b[2:]):
        pd.testing.assert_frame_equal(x, y)
    adv, ppo = a[4], a[5]
    assert len(ppo) == -(-len(adv) // CFG.ppo_mini_batch)
    assert np.isfinite(ppo[["pg_loss", "ppo_kl", "entropy", "grad_norm"]].to_numpy()).all()
    assert (adv["returns"].map(len) == adv["advantages"].map(len)).all()


def test_outcome_only_ablation_ignores_process_rewards(iteration0, tiny_tokenizer):
    _, _, rollouts, outcomes, report = iteration0
    cfg = dataclasses.replace(CFG, process_coef=0.0)
    prm_rewards = pd.DataFrame(
        {
            "prompt_id": rollouts["prompt_id"],
            "sample_idx": rollouts["sample_idx"],
            "token_rewards": [
                np.random.default_rng(i).normal(size=n) for i, n in enumerate(rollouts["response_length"])
            ],
        }
    )
    adv = policy_lib.estimate_advantages(prm_rewards, outcomes, cfg)
    zeroed = prm_rewards.assign(token_rewards=prm_rewards["token_rewards"].map(np.zeros_like))
    again = policy_lib.estimate_advantages(zeroed, outcomes, cfg)
    for x, y in zip(adv["advantages"], again["advantages"]):
        np.testing.assert_allclose(x, y, atol=1e-6)


def test_update_refuses_mixed_or_stale_policy_versions(iteration0, tiny_tokenizer):
    _, _, rollouts, outcomes, report = iteration0
    policy = _ckpt(tiny_tokenizer)
    rewards = prm_lib.compute_process_rewards(policy, policy, policy, rollouts, report, CFG)
    adv = pd.DataFrame(
        {
            "prompt_id": rewards["prompt_id"],
            "sample_idx": rewards["sample_idx"],
            "outcome": 0.0,
            "returns": rewards["old_logprobs"],
            "advantages": rewards["old_logprobs"].map(np.ones_like),
        }
    )
    mixed = rollouts.copy()
    mixed.loc[1, "policy_version"] = "policy/iter_0001@other"
    with pytest.raises(ValueError, match="different policy versions"):
        policy_lib.update_policy(policy, mixed, rewards, adv, CFG, 0)
    stale = _ckpt(tiny_tokenizer, version="policy/iter_0000@newer")
    with pytest.raises(ValueError, match="rerun generate_rollouts"):
        policy_lib.update_policy(stale, rollouts, rewards, adv, CFG, 0)


def test_no_selected_group_skips_the_update_and_says_so(iteration0, tiny_tokenizer, caplog):
    _, _, rollouts, outcomes, report = iteration0
    none = report.assign(selected=False)
    policy = _ckpt(tiny_tokenizer)
    before = _digest(policy.model)
    rewards = prm_lib.compute_process_rewards(policy, policy, policy, rollouts, none, CFG)
    prm, prm_rewards, prm_stats = prm_lib.update_prm(_ckpt(tiny_tokenizer), rollouts, rewards, outcomes, CFG, 0)
    adv = policy_lib.estimate_advantages(prm_rewards, outcomes, CFG)
    policy, ppo = policy_lib.update_policy(policy, rollouts, rewards, adv, CFG, 0)
    assert len(rewards) == len(adv) == len(ppo) == len(prm_stats) == 0
    assert _digest(policy.model) == before
    assert "no selected prompt groups" in caplog.text
    assert policy_lib.ppo_metrics(ppo) == {"ppo/skipped": 1.0}


@pytest.mark.parametrize(
    "override, message",
    [
        ({"samples_per_prompt": 1}, "prime.samples_per_prompt = 1 is invalid: RLOO needs at least 2"),
        ({"filter_low": 0.9, "filter_high": 0.1}, "the band is reversed"),
        ({"filter_high": 1.5}, "prime.filter_high = 1.5 is invalid: must be in [0, 1]"),
        ({"prm_update": "during"}, "valid values are ['after', 'before']"),
        ({"process_coef": 0.0, "outcome_coef": 0.0}, "nothing to learn from"),
        (
            {"process_reward": "gold"},
            "prime.process_reward = 'gold' is invalid: valid values are ['implicit', 'oracle', 'oracle_progress']",
        ),
        (
            {"advantage_estimator": "ppo"},
            "prime.advantage_estimator = 'ppo' is invalid: valid values are "
            "['rloo', 'rft', 'reinforce', 'reinforce_pp', 'grpo', 'prm_value', 'gae']",
        ),
        ({"gae_lambda": 1.5}, "prime.gae_lambda = 1.5 is invalid: must be in [0, 1]"),
        ({"critic_lr": 0.0}, "prime.critic_lr = 0.0 is invalid: must be > 0"),
        ({"max_draws_per_iteration": 0}, "prime.max_draws_per_iteration = 0 is invalid: must be >= 1"),
        ({"buffer_max_staleness": -1}, "prime.buffer_max_staleness = -1 is invalid: must be >= 0"),
        ({"filter_mode": "twice"}, "valid values are ['regenerate', 'single_draw', 'fixed_batch']"),
        ({"prm_freeze_after": -1}, "prime.prm_freeze_after = -1 is invalid"),
        ({"prm_loss": "bce"}, "prime.prm_loss = 'bce' is invalid: valid values are ['ce', 'dpo']"),
        ({"kl_coef": -0.1}, "prime.kl_coef = -0.1 is invalid: must be >= 0"),
        ({"kl_in": "advantage"}, "prime.kl_in = 'advantage' is invalid: valid values are ['reward', 'loss']"),
        ({"kl_estimator": "abs"}, "prime.kl_estimator = 'abs' is invalid: valid values are ['k1', 'k2', 'k3']"),
        (
            {"kl_coef": 0.1, "ref_type": "policy"},
            "prime.kl_coef = 0.1 needs a reference model, but prime.ref_type = 'policy'",
        ),
        (
            {"kl_coef": 0.1, "advantage_estimator": "rft"},
            "'rft' has no reward to subtract the KL from; use kl_in: loss",
        ),
    ],
)
def test_config_errors_name_the_parameter(override, message):
    with pytest.raises(ValueError) as err:
        PrimeConfig(**override)
    assert message in str(err.value)


def test_prompt_longer_than_the_context_is_an_error(iteration0, tiny_tokenizer):
    _, drawn, *_ = iteration0
    cfg = dataclasses.replace(CFG, max_response_length=10_000)
    with pytest.raises(ValueError, match="exceeds the model's context"):
        rollouts_lib.generate_rollouts(_ckpt(tiny_tokenizer), drawn, cfg, 0, "v")


def test_old_logprobs_reuse_the_samplers_after_a_teacher_forced_check(iteration0, tiny_tokenizer, caplog):
    _, _, rollouts, _, report = iteration0
    sft = _ckpt(tiny_tokenizer)
    assert rollouts["sampling_logprobs"].map(len).equals(rollouts["response_length"])
    forced = prm_lib.compute_process_rewards(
        sft, sft, sft, rollouts, report, dataclasses.replace(CFG, reuse_sampling_logprobs=False)
    )
    reused = prm_lib.compute_process_rewards(sft, sft, sft, rollouts, report, CFG)
    sampled = rollouts_lib.selected_rollouts(rollouts, report)["sampling_logprobs"]
    assert all((a == b).all() for a, b in zip(reused["old_logprobs"], sampled))  # taken as they are
    assert max(float(np.abs(a - b).max()) for a, b in zip(reused["old_logprobs"], forced["old_logprobs"])) < 1e-4
    assert all((a == b).all() for a, b in zip(reused["ref_logprobs"], forced["ref_logprobs"]))

    drifted = rollouts.assign(sampling_logprobs=[x + 0.01 for x in rollouts["sampling_logprobs"]])
    with caplog.at_level("WARNING"):
        checked = prm_lib.compute_process_rewards(sft, sft, sft, drifted, report, CFG)
    assert "logprob_reuse_tol" in caplog.text
    assert all((a == b).all() for a, b in zip(checked["old_logprobs"], forced["old_logprobs"]))
    hot = dataclasses.replace(CFG, temperature=0.7)  # sampled from logits / T: never reused
    assert prm_lib._sampling_logprobs(sft, rollouts_lib.selected_rollouts(rollouts, report), hot) is None
    no_column = rollouts.assign(sampling_logprobs=None)  # the hf engine, or a table from before the column
    assert prm_lib._sampling_logprobs(sft, rollouts_lib.selected_rollouts(no_column, report), CFG) is None


def test_a_frozen_prm_takes_no_step_and_keeps_its_scored_rewards(iteration0, tiny_tokenizer):
    train, drawn, rollouts, outcomes, report = iteration0
    sft = _ckpt(tiny_tokenizer)
    cfg = dataclasses.replace(CFG, prm_freeze_after=0)
    pr = prm_lib.compute_process_rewards(sft, sft, sft, rollouts, report, cfg)
    before = _digest(sft.model)
    prm, rewards, stats = prm_lib.update_prm(sft, rollouts, pr, outcomes, cfg, iteration=0)
    assert _digest(prm.model) == before and len(stats) == 0
    for used, scored in zip(rewards["prm_logprobs"], pr["prm_logprobs"]):
        assert np.array_equal(used, scored)
    assert not cfg.prm_frozen(-1) and dataclasses.replace(CFG, prm_freeze_after=3).prm_frozen(3)
    assert not CFG.prm_frozen(100)


def test_rft_estimator_trains_on_accepted_samples_only(iteration0, tiny_tokenizer):
    _, _, rollouts, outcomes, report = iteration0
    sft = _ckpt(tiny_tokenizer)
    cfg = dataclasses.replace(CFG, advantage_estimator="rft")
    pr = prm_lib.compute_process_rewards(sft, sft, sft, rollouts, report, cfg)
    _, rewards, _ = prm_lib.update_prm(_ckpt(tiny_tokenizer), rollouts, pr, outcomes, cfg, iteration=0)
    adv = policy_lib.estimate_advantages(rewards, outcomes, cfg)
    for score, a in zip(adv["outcome"], adv["advantages"]):
        assert set(np.unique(a)) <= ({1.0} if score >= 1 else {0.0})


def test_a_draw_across_an_epoch_boundary_holds_each_prompt_once(small_world):
    prompts, _ = small_world
    train = prompts[[e["split"] == "train" for e in prompts["extra_info"]]].reset_index(drop=True)
    cfg = dataclasses.replace(CFG, prompts_per_step=40, oversample_factor=1.0)  # 2/3 of the 60 prompts
    n = len(train)
    for iteration in range(3 * n // 40 + 2):  # every window of three epochs, boundaries included
        drawn = rollouts_lib.sample_prompts(train, cfg, iteration)
        assert drawn["prompt_id"].is_unique and len(drawn) == 40
    with pytest.raises(ValueError, match="prompts_train has only"):
        rollouts_lib.sample_prompts(train.head(5), cfg, 0)
