"""The stages with ``prime.advantage_estimator``, ``prime.prm_loss``, ``prime.kl_*`` and
``prime.entropy_coef`` switched: each reaches the computation it names (tiny model, tables by hand)."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from eurus_prime.core.advantages import ADVANTAGE_ESTIMATORS
from eurus_prime.prime import policy as policy_lib
from eurus_prime.prime import prm as prm_lib
from eurus_prime.prime.batch import pad_ragged
from tests.prime.test_degenerate import N, _tables
from tests.prime.test_stages import CFG, _ckpt, _digest

LENGTHS = [5, 7, 3, 6, 4, 8, 2, 9, 5, 6, 3, 7]
SCORES = [1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1]  # groups of 3: (1,0,0) (1,1,0) (0,0,1) (1,0,1)


def _by_hand(seed=0):
    """prm_rewards, outcomes and process_rewards tables with random per-token values, no model."""
    rng = np.random.default_rng(seed)
    pids = [f"p{g}" for g in range(len(LENGTHS) // N) for _ in range(N)]
    key = {"prompt_id": pids, "sample_idx": np.tile(np.arange(N), len(pids) // N)}
    prm_rewards = pd.DataFrame({**key, "token_rewards": [rng.normal(size=n).astype(np.float32) for n in LENGTHS]})
    outcomes = pd.DataFrame({**key, "score": np.asarray(SCORES, dtype=np.float64)})
    old = [-rng.uniform(0.1, 3, size=n).astype(np.float32) for n in LENGTHS]
    ref = [o - rng.uniform(-0.5, 0.5, size=len(o)).astype(np.float32) for o in old]
    process_rewards = pd.DataFrame({**key, "old_logprobs": old, "ref_logprobs": ref})
    return prm_rewards, outcomes, process_rewards


@pytest.mark.parametrize("name", [n for n in ADVANTAGE_ESTIMATORS if n != "rft"])
def test_estimate_advantages_runs_the_named_estimator(name):
    prm_rewards, outcomes, _ = _by_hand()
    cfg = dataclasses.replace(CFG, advantage_estimator=name, process_coef=0.5, outcome_coef=2.0)
    rewards, mask, lengths = pad_ragged(list(prm_rewards["token_rewards"]))
    extra: dict = {}
    values = None
    if name == "gae":  # the critic's values, per token
        v = torch.linspace(-1, 1, mask.numel()).view(mask.shape) * mask
        values = prm_rewards[["prompt_id", "sample_idx"]].assign(
            values=[v[i, :n].numpy() for i, n in enumerate(lengths)]
        )
        extra = {"values": v, "gamma": cfg.gae_gamma, "lam": cfg.gae_lambda}
    adv = policy_lib.estimate_advantages(prm_rewards, outcomes, cfg, values=values)
    returns, expected = ADVANTAGE_ESTIMATORS[name](
        rewards, torch.tensor(SCORES, dtype=torch.float32), mask, N, process_coef=0.5, outcome_coef=2.0, **extra
    )
    for i, n in enumerate(lengths):
        np.testing.assert_array_equal(adv["advantages"][i], expected[i, :n].numpy())
        np.testing.assert_array_equal(adv["returns"][i], returns[i, :n].numpy())
    assert "kl" not in adv


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_kl_in_the_reward_is_subtracted_per_token_before_the_returns(estimator):
    prm_rewards, outcomes, process_rewards = _by_hand()
    cfg = dataclasses.replace(CFG, kl_coef=0.3, kl_in="reward", kl_estimator=estimator, advantage_estimator="grpo")
    adv = policy_lib.estimate_advantages(prm_rewards, outcomes, cfg, process_rewards)
    plain = policy_lib.estimate_advantages(
        prm_rewards, outcomes, dataclasses.replace(cfg, kl_coef=0.0), process_rewards
    )
    for i in range(len(adv)):
        old = process_rewards["old_logprobs"][i].astype(np.float64)
        ref = process_rewards["ref_logprobs"][i].astype(np.float64)
        kl = old - ref if estimator == "k1" else np.exp(ref - old) - (ref - old) - 1
        to_go = np.cumsum(kl[::-1])[::-1]
        # grpo takes no batch whitening, so the penalty shows as it is
        np.testing.assert_allclose(adv["returns"][i], plain["returns"][i] - 0.3 * to_go, rtol=1e-5, atol=1e-5)
        assert adv["kl"][i] == pytest.approx(kl.mean(), rel=1e-5)
    assert policy_lib.advantage_metrics(adv)["adv/kl"] == pytest.approx(float(adv["kl"].mean()))
    with pytest.raises(ValueError, match="kl_in = 'reward' needs the process_rewards table"):
        policy_lib.estimate_advantages(prm_rewards, outcomes, cfg)


def test_kl_off_by_default_ignores_process_rewards():
    prm_rewards, outcomes, process_rewards = _by_hand()
    a = policy_lib.estimate_advantages(prm_rewards, outcomes, CFG)
    b = policy_lib.estimate_advantages(prm_rewards, outcomes, CFG, process_rewards)
    pd.testing.assert_frame_equal(a, b)
    assert CFG.kl_coef == 0 and CFG.prm_loss == "ce" and CFG.advantage_estimator == "rloo"


# --------------------------------------------------------------------------- policy: KL in the loss, entropy
def _policy_batch(tok, shift: float = 0.0):
    """A tiny policy, its tables, and zero advantages (so that pg_loss has no gradient); the
    reference log-probs are the policy's minus ``shift``."""
    rollouts, outcomes, report = _tables(tok, LENGTHS, scores=SCORES)
    policy = _ckpt(tok)
    rewards = prm_lib.compute_process_rewards(policy, policy, policy, rollouts, report, CFG)
    rewards = rewards.assign(ref_logprobs=[np.asarray(o) - shift for o in rewards["old_logprobs"]])
    adv = pd.DataFrame(
        {
            "prompt_id": rewards["prompt_id"],
            "sample_idx": rewards["sample_idx"],
            "outcome": 0.0,
            "returns": rewards["old_logprobs"].map(np.zeros_like),
            "advantages": rewards["old_logprobs"].map(np.zeros_like),
        }
    )
    return policy, rollouts, rewards, adv


# Weight decay 0: with zero advantages and no other term the gradient is 0 and AdamW leaves the weights.
QUIET = dataclasses.replace(CFG, policy_weight_decay=0.0, policy_lr=1e-2)


def test_kl_in_the_loss_pulls_the_policy_towards_the_reference(tiny_tokenizer):
    policy, rollouts, rewards, adv = _policy_batch(tiny_tokenizer, shift=1.0)
    before = _digest(policy.model)
    off, stats_off = policy_lib.update_policy(policy, rollouts, rewards, adv, QUIET, 0)
    assert _digest(off.model) == before  # no KL term, no gradient
    # measured with kl_coef 0 too; at the first mini-batch the policy is the one that scored old_logprobs
    assert stats_off["kl"].iloc[0] == pytest.approx(1.0, abs=1e-4)  # k1 (the default) = 1

    cfg = dataclasses.replace(QUIET, kl_coef=1.0, kl_in="loss", kl_estimator="k2")
    policy, rollouts, rewards, adv = _policy_batch(tiny_tokenizer, shift=1.0)
    on, stats = policy_lib.update_policy(policy, rollouts, rewards, adv, cfg, 0)
    assert _digest(on.model) != before
    assert stats["kl"].iloc[0] == pytest.approx(0.5, abs=1e-4)  # k2 = 0.5 * 1^2
    again, stats_after = policy_lib.update_policy(on, rollouts, rewards, adv, cfg, 0)  # same shuffle, same rows
    assert stats_after["kl"].iloc[0] < stats["kl"].iloc[0] - 1e-3
    assert policy_lib.ppo_metrics(stats)["ppo/kl"] == pytest.approx(float(stats["kl"].mean()))


def test_entropy_coef_raises_the_policy_entropy(tiny_tokenizer):
    policy, rollouts, rewards, adv = _policy_batch(tiny_tokenizer)
    before = _digest(policy.model)
    cfg = dataclasses.replace(QUIET, entropy_coef=0.5)
    policy, stats = policy_lib.update_policy(policy, rollouts, rewards, adv, cfg, 0)
    assert _digest(policy.model) != before  # the entropy term alone moved it
    _, again = policy_lib.update_policy(policy, rollouts, rewards, adv, cfg, 0)  # same shuffle: same first rows
    assert again["entropy"].iloc[0] > stats["entropy"].iloc[0] + 1e-4
    assert np.isfinite(stats[["entropy", "kl"]].to_numpy()).all()


# --------------------------------------------------------------------------- PRM: dpo loss
def test_prm_dpo_loss_uses_the_groups_scores_before_the_update(tiny_tokenizer):
    rollouts, outcomes, report = _tables(tiny_tokenizer, LENGTHS, scores=SCORES)
    prm = _ckpt(tiny_tokenizer)
    rewards = prm_lib.compute_process_rewards(prm, prm, prm, rollouts, report, CFG)
    # PRM = reference: every sequence score is 0; give the table other pre-update scores instead.
    fake = np.linspace(-1, 1, len(rewards))
    rewards = rewards.assign(sequence_score=fake)
    cfg = dataclasses.replace(CFG, prm_loss="dpo", prm_mini_batch=len(rewards))  # one step over every row
    prm, _, stats = prm_lib.update_prm(prm, rollouts, rewards, outcomes, cfg, 0)
    expected = []
    for i, a in enumerate(SCORES):  # z = 0 for every row (PRM = reference at the forward pass)
        g = i - i % N
        opp = [fake[j] for j in range(g, g + N) if (SCORES[j] < a if a > 0 else SCORES[j] > a)]
        b = sum(opp) / len(opp) if opp else 0.0
        sign = 1 if a > 0 else -1
        expected.append(math.log1p(math.exp(-sign * (0 - b))))
    assert stats["loss"].iloc[0] == pytest.approx(sum(expected) / len(expected), rel=1e-5)
    ce, _, ce_stats = prm_lib.update_prm(
        _ckpt(tiny_tokenizer), rollouts, rewards, outcomes, dataclasses.replace(cfg, prm_loss="ce"), 0
    )
    assert ce_stats["loss"].iloc[0] == pytest.approx(math.log(2), abs=1e-6)  # ce ignores the stored scores
    assert _digest(ce.model) != _digest(prm.model)
