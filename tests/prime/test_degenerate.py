"""Degenerate training states: each handled, logged and tested with its message.

NaN/inf losses and gradients (``prime.nonfinite``), zero-length responses, a fully truncated
batch and a verifier that crashes on one row. The tables are built by hand (random token ids, a
tiny model) so that every case is exact and fast.
"""

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest
import torch

from eurus_prime import verifiers
from eurus_prime.core.advantages import prime_advantages
from eurus_prime.core.masked import masked_mean, masked_whiten
from eurus_prime.core.ppo import ppo_policy_loss
from eurus_prime.core.rewards import implicit_process_rewards, last_token_mask, prm_loss
from eurus_prime.engines.train.updates import NonFiniteError
from eurus_prime.prime import policy as policy_lib
from eurus_prime.prime import prm as prm_lib
from eurus_prime.prime import rollouts as rollouts_lib
from eurus_prime.prime.batch import pad_ragged, pad_values
from eurus_prime.prime.config import PrimeConfig
from eurus_prime.verifiers import Verdict
from tests.prime.test_stages import CFG, _ckpt, _digest

N = CFG.samples_per_prompt  # 3
GROUPS = 4  # 12 rows: 2 mini-batches of 6 for the PRM and the policy


def _tables(tok, lengths, scores=None, finish=None, seed=0):
    """rollouts, outcomes and a filter report (every group selected) for ``len(lengths)`` rows of
    random tokens; ``lengths`` are the response lengths (0 allowed)."""
    rng = np.random.default_rng(seed)
    rows = len(lengths)
    assert rows % N == 0
    vocab = len(tok)
    pids = [f"train/{g}" for g in range(rows // N) for _ in range(N)]
    prompts = {p: rng.integers(10, vocab, size=int(rng.integers(3, 8))).astype(np.int32) for p in dict.fromkeys(pids)}
    scores = np.asarray(scores if scores is not None else rng.integers(0, 2, size=rows), dtype=np.float64)
    rollouts = pd.DataFrame(
        {
            "iteration": 0,
            "policy_version": "sft@v0",
            "prompt_id": pids,
            "sample_idx": np.tile(np.arange(N), rows // N),
            "data_source": "tiny",
            "ability": "math",
            "response": ["x" * n for n in lengths],
            "prompt_ids": [prompts[p] for p in pids],
            "response_ids": [rng.integers(10, vocab, size=n).astype(np.int32) for n in lengths],
            "response_length": list(lengths),
            "finish_reason": finish if finish is not None else ["stop"] * rows,
        }
    )
    outcomes = rollouts[["prompt_id", "sample_idx", "data_source", "ability"]].assign(score=scores)
    report = pd.DataFrame({"prompt_id": list(dict.fromkeys(pids)), "selected": True})
    return rollouts, outcomes, report


def _flat(column) -> np.ndarray:
    return np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in column] + [np.zeros(0)])


def _opt_tensors(state: dict) -> list[torch.Tensor]:
    return [v.clone() for s in state["state"].values() for v in s.values() if torch.is_tensor(v)]


@pytest.fixture()
def batch(tiny_tokenizer):
    return _tables(tiny_tokenizer, [5, 7, 3, 6, 4, 8, 2, 9, 5, 6, 3, 7])


# --------------------------------------------------------------------------- config
def test_nonfinite_switch_is_validated():
    assert PrimeConfig().nonfinite == "skip"
    with pytest.raises(ValueError) as err:
        PrimeConfig(nonfinite="halt")
    assert "prime.nonfinite = 'halt' is invalid: valid values are ['skip', 'stop']" in str(err.value)


# --------------------------------------------------------------------------- NaN / inf: policy
def _policy_inputs(tok, batch, cfg=CFG):
    rollouts, outcomes, report = batch
    policy = _ckpt(tok)
    rewards = prm_lib.compute_process_rewards(policy, policy, policy, rollouts, report, cfg)
    prm_rewards = rewards[["prompt_id", "sample_idx"]].assign(token_rewards=rewards["implicit_reward"])
    adv = policy_lib.estimate_advantages(prm_rewards, outcomes, cfg)
    adv = adv.assign(advantages=[np.linspace(-1, 1, len(a), dtype=np.float32) for a in adv["advantages"]])
    return policy, rollouts, rewards, adv


def test_nan_advantages_skip_every_step_and_leave_weights_and_adam_moments_untouched(tiny_tokenizer, batch, caplog):
    policy, rollouts, rewards, adv = _policy_inputs(tiny_tokenizer, batch)
    policy, _ = policy_lib.update_policy(policy, rollouts, rewards, adv, CFG, 0)  # a real step: AdamW moments exist
    weights, moments = _digest(policy.model), _opt_tensors(policy.optimizer_state)
    assert moments
    poisoned = adv.assign(advantages=adv["advantages"].map(lambda a: np.full_like(a, np.nan)))
    with caplog.at_level(logging.WARNING):
        policy, stats = policy_lib.update_policy(policy, rollouts, rewards, poisoned, CFG, 3)
    assert stats["skipped"].dtype == bool and stats["skipped"].all() and len(stats) == 2
    assert _digest(policy.model) == weights
    after = _opt_tensors(policy.optimizer_state)
    assert len(after) == len(moments) and all(torch.equal(a, b) for a, b in zip(after, moments))
    assert (
        "update_policy: iteration 3 epoch 0 step 0: the loss is nan; the mini-batch is skipped, "
        "no optimizer step (prime.nonfinite=skip)"
    ) in caplog.text
    assert "update_policy: iteration 3 epoch 0 step 1: the loss is nan" in caplog.text
    assert policy_lib.ppo_metrics(stats) == {"ppo/skipped_steps": 2.0}  # no NaN means logged


def test_one_nan_row_skips_only_its_mini_batch(tiny_tokenizer, batch):
    policy, rollouts, rewards, adv = _policy_inputs(tiny_tokenizer, batch)
    before = _digest(policy.model)
    poisoned = adv.copy()
    poisoned.at[4, "advantages"] = np.full_like(adv.at[4, "advantages"], np.inf)  # -inf * ratio: inf loss
    policy, stats = policy_lib.update_policy(policy, rollouts, rewards, poisoned, CFG, 0)
    assert stats["skipped"].tolist().count(True) == 1 and len(stats) == 2
    assert _digest(policy.model) != before  # the other mini-batch stepped
    assert all(torch.isfinite(p).all() for p in policy.model.parameters())
    metrics = policy_lib.ppo_metrics(stats)
    assert metrics["ppo/skipped_steps"] == 1.0 and np.isfinite(list(metrics.values())).all()


def test_nan_advantages_stop_raises_naming_stage_iteration_step_and_switch(tiny_tokenizer, batch):
    cfg = dataclasses.replace(CFG, nonfinite="stop")
    policy, rollouts, rewards, adv = _policy_inputs(tiny_tokenizer, batch, cfg)
    poisoned = adv.assign(advantages=adv["advantages"].map(lambda a: np.full_like(a, np.nan)))
    with pytest.raises(NonFiniteError) as err:
        policy_lib.update_policy(policy, rollouts, rewards, poisoned, cfg, 2)
    assert str(err.value) == (
        "update_policy: iteration 2 epoch 0 step 0: the loss is nan; stopping because "
        "prime.nonfinite=stop (prime.nonfinite=skip skips such mini-batches instead)"
    )


def test_infinite_grad_norm_is_caught_in_both_modes(tiny_tokenizer, batch, monkeypatch, caplog):
    real = torch.nn.utils.clip_grad_norm_
    calls = []

    def exploding(params, max_norm, *a, **kw):
        norm = real(params, max_norm, *a, **kw)
        calls.append(1)
        return torch.tensor(float("inf")) if len(calls) == 1 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", exploding)
    policy, rollouts, rewards, adv = _policy_inputs(tiny_tokenizer, batch)
    with caplog.at_level(logging.WARNING):
        _, stats = policy_lib.update_policy(policy, rollouts, rewards, adv, CFG, 1)
    assert stats["skipped"].tolist() == [True, False]
    assert "update_policy: iteration 1 epoch 0 step 0: the grad norm is inf" in caplog.text
    calls.clear()
    with pytest.raises(
        NonFiniteError,
        match=r"update_prm: iteration 1 step 0: the grad norm is inf; stopping "
        r"because prime.nonfinite=stop",
    ):
        prm_lib.update_prm(
            _ckpt(tiny_tokenizer), rollouts, rewards, batch[1], dataclasses.replace(CFG, nonfinite="stop"), 1
        )


def test_a_poisoned_checkpoint_is_never_returned(tiny_tokenizer, batch, caplog):
    policy, rollouts, rewards, adv = _policy_inputs(tiny_tokenizer, batch)
    with torch.no_grad():
        policy.model.model.norm.weight[0] = float("nan")
    with pytest.raises(
        NonFiniteError,
        match="update_policy: iteration 0: parameter model.norm.weight is not "
        "finite after the update; refusing to return a poisoned checkpoint",
    ):
        policy_lib.update_policy(policy, rollouts, rewards, adv, CFG, 0)
    assert "the loss is nan; the mini-batch is skipped" in caplog.text  # skip mode skipped every step first


# --------------------------------------------------------------------------- NaN / inf: PRM
def test_nan_ref_logprobs_skip_the_prm_update(tiny_tokenizer, batch, caplog):
    rollouts, outcomes, report = batch
    sft = _ckpt(tiny_tokenizer)
    rewards = prm_lib.compute_process_rewards(sft, sft, sft, rollouts, report, CFG)
    poisoned = rewards.assign(ref_logprobs=rewards["ref_logprobs"].map(lambda a: np.full_like(a, np.nan)))
    prm = _ckpt(tiny_tokenizer)
    before = _digest(prm.model)
    with caplog.at_level(logging.WARNING):
        prm, prm_rewards, stats = prm_lib.update_prm(prm, rollouts, poisoned, outcomes, CFG, 5)
    assert stats["skipped"].tolist() == [True, True]
    assert _digest(prm.model) == before
    assert not prm.optimizer_state["state"]  # AdamW never stepped: no moments at all
    assert (
        "update_prm: iteration 5 step 0: the loss is nan; the mini-batch is skipped, no optimizer step "
        "(prime.nonfinite=skip)"
    ) in caplog.text
    metrics = prm_lib.prm_metrics(poisoned, prm_rewards, outcomes, stats, CFG)
    assert metrics["prm/skipped_steps"] == 2.0 and "prm/loss" not in metrics

    # only one row poisoned: its mini-batch is skipped, the other trains
    one = rewards.copy()
    one.at[0, "ref_logprobs"] = np.full_like(rewards.at[0, "ref_logprobs"], np.nan)
    prm, prm_rewards, stats = prm_lib.update_prm(_ckpt(tiny_tokenizer), rollouts, one, outcomes, CFG, 5)
    assert stats["skipped"].sum() == 1 and _digest(prm.model) != before
    assert prm_lib.prm_metrics(one, prm_rewards, outcomes, stats, CFG)["prm/skipped_steps"] == 1.0


def test_nan_ref_logprobs_stop_raises(tiny_tokenizer, batch):
    rollouts, outcomes, report = batch
    sft = _ckpt(tiny_tokenizer)
    rewards = prm_lib.compute_process_rewards(sft, sft, sft, rollouts, report, CFG)
    poisoned = rewards.assign(ref_logprobs=rewards["ref_logprobs"].map(lambda a: np.full_like(a, np.nan)))
    with pytest.raises(NonFiniteError) as err:
        prm_lib.update_prm(
            _ckpt(tiny_tokenizer), rollouts, poisoned, outcomes, dataclasses.replace(CFG, nonfinite="stop"), 4
        )
    assert str(err.value) == (
        "update_prm: iteration 4 step 0: the loss is nan; stopping because "
        "prime.nonfinite=stop (prime.nonfinite=skip skips such mini-batches instead)"
    )


def test_normal_updates_mark_nothing_skipped(tiny_tokenizer, batch):
    rollouts, outcomes, report = batch
    sft = _ckpt(tiny_tokenizer)
    rewards = prm_lib.compute_process_rewards(sft, sft, sft, rollouts, report, CFG)
    _, prm_rewards, stats = prm_lib.update_prm(_ckpt(tiny_tokenizer), rollouts, rewards, outcomes, CFG, 0)
    assert list(stats.columns) == ["iteration", "step", "responses", "loss", "grad_norm", "skipped"]
    assert not stats["skipped"].any()
    metrics = prm_lib.prm_metrics(rewards, prm_rewards, outcomes, stats, CFG)
    assert metrics["prm/skipped_steps"] == 0.0 and np.isfinite(metrics["prm/loss"])


# --------------------------------------------------------------------------- zero-length responses
@pytest.mark.parametrize("prm_update, granularity", [("after", "token"), ("before", "whole")])
def test_zero_length_responses_flow_through_every_stage(tiny_tokenizer, prm_update, granularity):
    cfg = dataclasses.replace(CFG, prm_update=prm_update, granularity=granularity)
    # one empty response in the first two groups, a whole group of empty ones, and a normal group
    lengths = [0, 5, 7, 6, 0, 4, 0, 0, 0, 3, 8, 2]
    rollouts, outcomes, report = _tables(tiny_tokenizer, lengths, scores=[0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1])
    policy, prm, ref = _ckpt(tiny_tokenizer), _ckpt(tiny_tokenizer, seed=1), _ckpt(tiny_tokenizer, seed=2)
    rewards = prm_lib.compute_process_rewards(policy, prm, ref, rollouts, report, cfg)
    for col in ("old_logprobs", "ref_logprobs", "prm_logprobs", "implicit_reward"):
        assert rewards[col].map(len).tolist() == lengths
        assert np.isfinite(_flat(rewards[col])).all()
    assert np.isfinite(rewards["sequence_score"]).all()
    prm, prm_rewards, prm_stats = prm_lib.update_prm(prm, rollouts, rewards, outcomes, cfg, 0)
    assert not prm_stats["skipped"].any() and np.isfinite(prm_stats["loss"]).all()
    assert prm_rewards["token_rewards"].map(len).tolist() == lengths
    assert np.isfinite(_flat(prm_rewards["token_rewards"])).all()
    assert np.isfinite(prm_rewards["sequence_score"]).all()
    adv = policy_lib.estimate_advantages(prm_rewards, outcomes, cfg)
    assert adv["advantages"].map(len).tolist() == lengths == adv["returns"].map(len).tolist()
    assert np.isfinite(_flat(adv["advantages"])).all() and np.isfinite(adv["process_return"]).all()
    assert np.isfinite(list(policy_lib.advantage_metrics(adv).values())).all()
    before = _digest(policy.model)
    policy, ppo = policy_lib.update_policy(policy, rollouts, rewards, adv, cfg, 0)
    assert not ppo["skipped"].any()
    assert np.isfinite(ppo[["pg_loss", "pg_clipfrac", "ppo_kl", "entropy", "grad_norm"]].to_numpy()).all()
    assert _digest(policy.model) != before
    assert np.isfinite(list(policy_lib.ppo_metrics(ppo).values())).all()


def test_every_response_empty(tiny_tokenizer):
    rollouts, outcomes, report = _tables(tiny_tokenizer, [0] * 6, scores=[0, 1, 0, 0, 0, 1])
    sft = _ckpt(tiny_tokenizer)
    rewards = prm_lib.compute_process_rewards(sft, sft, sft, rollouts, report, CFG)
    assert rewards["implicit_reward"].map(len).tolist() == [0] * 6
    prm, prm_rewards, stats = prm_lib.update_prm(_ckpt(tiny_tokenizer), rollouts, rewards, outcomes, CFG, 0)
    assert not stats["skipped"].any() and stats["loss"].iloc[0] == pytest.approx(np.log(2), abs=1e-6)
    adv = policy_lib.estimate_advantages(prm_rewards, outcomes, CFG)
    assert adv["advantages"].map(len).tolist() == [0] * 6
    policy, ppo = policy_lib.update_policy(sft, rollouts, rewards, adv, CFG, 0)
    assert not ppo["skipped"].any() and np.isfinite(ppo["pg_loss"]).all()


def test_core_functions_on_empty_rows():
    padded, mask, lengths = pad_ragged([np.zeros(0), np.array([0.5, -1.0]), np.zeros(0)])
    assert padded.shape == mask.shape == (3, 2) and lengths == [0, 2, 0] and mask[0].sum() == 0
    empty, empty_mask, _ = pad_ragged([np.zeros(0), np.zeros(0)])
    assert empty.shape == (2, 0)
    assert pad_ragged([])[0].shape == (0, 0)
    assert pad_values([np.zeros(0)], 3).tolist() == [[0.0, 0.0, 0.0]]
    assert last_token_mask(mask).tolist() == [[0, 0], [0, 1], [0, 0]]
    assert last_token_mask(empty_mask).shape == (2, 0)
    zero = torch.zeros(2, 3)
    assert masked_mean(torch.ones(2, 3), zero) == 0 and (masked_whiten(torch.ones(2, 3), zero) == 0).all()
    for gran in ("token", "whole"):
        for norm in ("batch_norm", "none"):
            r = implicit_process_rewards(padded, torch.zeros_like(padded), mask, granularity=gran, normalisation=norm)
            assert torch.isfinite(r).all() and (r[0] == 0).all()
            assert implicit_process_rewards(empty, empty, empty_mask, granularity=gran, normalisation=norm).shape == (
                2,
                0,
            )
    loss = prm_loss(padded, torch.zeros_like(padded), mask, torch.tensor([0.0, 1.0, 1.0]))
    assert torch.isfinite(loss)
    # RLOO over groups of 3 with empty rows, and with no tokens at all
    returns, adv = prime_advantages(padded, torch.tensor([0.0, 1.0, 0.0]), mask, 3)
    assert torch.isfinite(adv).all() and (adv[0] == 0).all() and (adv[2] == 0).all()
    returns, adv = prime_advantages(torch.zeros(3, 0), torch.tensor([0.0, 1.0, 0.0]), torch.zeros(3, 0), 3)
    assert adv.shape == (3, 0)
    pg, diag = ppo_policy_loss(
        torch.zeros(2, 1, requires_grad=True), torch.zeros(2, 1), torch.ones(2, 1), torch.zeros(2, 1)
    )
    assert pg == 0 and all(torch.isfinite(v) for v in diag.values())
    pg.backward()


# --------------------------------------------------------------------------- truncation
def test_every_response_truncated_warns_with_the_share(tiny_tokenizer, caplog):
    rollouts, _, _ = _tables(tiny_tokenizer, [4] * 6, finish=["length"] * 6)
    rollouts["iteration"] = 7
    with caplog.at_level(logging.WARNING):
        metrics = rollouts_lib.rollout_metrics(rollouts, dataclasses.replace(CFG, max_response_length=4))
    assert metrics["rollout/truncated_share"] == 1.0
    assert (
        "generate_rollouts: iteration 7: truncated share 100%: all 6 responses hit "
        "prime.max_response_length=4 tokens; raise prime.max_response_length"
    ) in caplog.text


def test_some_responses_truncated_do_not_warn(tiny_tokenizer, caplog):
    rollouts, _, _ = _tables(tiny_tokenizer, [4] * 6, finish=["length"] * 5 + ["stop"])
    with caplog.at_level(logging.WARNING):
        metrics = rollouts_lib.rollout_metrics(rollouts, CFG)
        rollouts_lib.rollout_metrics(rollouts.assign(finish_reason="stop"))
    assert metrics["rollout/truncated_share"] == pytest.approx(5 / 6)
    assert "truncated share" not in caplog.text


# --------------------------------------------------------------------------- verifier crash
def test_a_verifier_crash_on_one_row_scores_it_zero_and_grades_the_rest(monkeypatch, caplog):
    real_math = verifiers.grade_math

    def math(response, truth):
        if response == "boom":
            raise RuntimeError("sympy exploded")
        return real_math(response, truth)

    def code(response, truth):
        if response == "kaboom":
            raise OSError("x" * 2000)
        return Verdict(1.0, True, "correct", isolation="rlimits")

    monkeypatch.setattr(verifiers, "grade_math", math)
    monkeypatch.setattr(verifiers, "grade_code", code)
    abilities = ["math", "math", "code", "code", "math"]
    responses = [r"\boxed{2}", "boom", "print(1)", "kaboom", r"\boxed{3}"]
    with caplog.at_level(logging.WARNING):
        out = verifiers.verify_all(abilities, responses, ["2", "2", "t", "t", "2"])
    assert [v.score for v in out] == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert [v.reason for v in out] == ["correct", "verifier_error", "correct", "verifier_error", "wrong"]
    assert out[1].error == "RuntimeError: sympy exploded" and not out[1].correct
    assert out[3].error.startswith("OSError: xxx") and len(out[3].error) == verifiers.MAX_ERROR_CHARS
    assert out[3].error.endswith("...")
    assert (
        "verify_all: the math verifier raised on row 1 (RuntimeError: sympy exploded); the row scores 0 "
        "(reason verifier_error) and the rest of the batch goes on"
    ) in caplog.text
    assert "verify_all: the code verifier raised on row 3 (OSError: xxx" in caplog.text


def test_verify_rollouts_keeps_a_crashed_row_in_the_outcomes(monkeypatch, tiny_tokenizer):
    def math(response, truth):
        if response == "xxx":
            raise ValueError("bad latex")
        return Verdict(0.0, False, "no_answer")

    monkeypatch.setattr(verifiers, "grade_math", math)
    rollouts, _, _ = _tables(tiny_tokenizer, [1, 2, 3, 3, 2, 1])
    rollouts["ground_truth"] = "1"
    outcomes = rollouts_lib.verify_rollouts(rollouts)
    assert len(outcomes) == 6
    assert outcomes["reason"].tolist() == [
        "no_answer",
        "no_answer",
        "verifier_error",
        "verifier_error",
        "no_answer",
        "no_answer",
    ]
    assert (outcomes["score"] == 0).all() and outcomes.loc[2, "error"] == "ValueError: bad latex"
