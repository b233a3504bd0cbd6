"""Memory-aware micro-batching (``prime.micro_batch_tokens``, ``prime.batch.budget_micro_batches``).

A token cap changes how many rows go through one forward pass, so it changes memory and time;
it must not change a log-prob or the PRM's update (a mean over sequences). PPO's loss is a token
mean per micro-batch, as in the reference, so there a split reweighs tokens, as ``micro_batch`` does.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from eurus_prime.prime import batch as batch_mod
from eurus_prime.prime import policy as policy_lib
from eurus_prime.prime import prm as prm_lib
from eurus_prime.prime.batch import budget_micro_batches, micro_batches, packed_tokens, score_responses
from eurus_prime.prime.config import PrimeConfig
from tests.prime.test_degenerate import _tables
from tests.prime.test_stages import CFG, _ckpt

LENGTHS = [5, 7, 3, 6, 4, 8, 2, 9, 5, 6, 3, 7, 4, 4, 6]
BASE = dataclasses.replace(CFG, policy_lr=2e-3, prm_lr=2e-3, micro_batch=6, prm_mini_batch=6, ppo_mini_batch=6)


def _ids(prompt_lens, response_lens):
    return [[1] * n for n in prompt_lens], [[2] * n for n in response_lens]


def test_budget_cuts_by_rows_and_by_packed_tokens():
    prompts, responses = _ids([3, 3, 4, 4, 5, 5, 6], [1, 2, 2, 5, 9, 12, 20])
    order = list(range(7))
    micros = budget_micro_batches(order, prompts, responses, max_rows=4, max_tokens=24)
    assert [i for m in micros for i in m] == order  # every row once, in order
    for m in micros:
        assert len(m) <= 4
        assert len(m) == 1 or packed_tokens(prompts, responses, m) <= 24
    # short rows share a pass, long rows go alone: (4+2)*3=18 <= 24, adding row 3 gives (4+5)*4=36
    assert micros == [[0, 1, 2], [3], [4], [5], [6]]
    # a looser cap pairs rows 3 and 4: 2*(5+9)=28 <= 30
    assert budget_micro_batches(order, prompts, responses, 4, 30) == [[0, 1, 2], [3, 4], [5], [6]]
    # the row cap still binds when the tokens would allow more
    assert budget_micro_batches(order, prompts, responses, 2, 10**6) == [[0, 1], [2, 3], [4, 5], [6]]
    # a row over the budget on its own still gets its micro-batch
    assert packed_tokens(prompts, responses, [6]) == 26 > 24


def test_no_budget_is_plain_row_micro_batches_and_bad_arguments_are_named():
    prompts, responses = _ids([2] * 5, [3] * 5)
    assert budget_micro_batches(range(5), prompts, responses, 2) == micro_batches(range(5), 2)
    assert budget_micro_batches([], prompts, responses, 2, 10) == []
    with pytest.raises(ValueError, match="max_tokens = 0"):
        budget_micro_batches(range(5), prompts, responses, 2, 0)
    with pytest.raises(ValueError, match="max_rows = 0"):
        budget_micro_batches(range(5), prompts, responses, 0, 10)
    with pytest.raises(ValueError, match=r"prime.micro_batch_tokens = 0 is invalid"):
        PrimeConfig(micro_batch_tokens=0)


def _record_packs(monkeypatch, *modules):
    seen = []
    real = modules[0].forward_rows

    def spy(model, prompt_ids, response_ids, rows, pad_id, **kw):
        seen.append((len(rows), packed_tokens(prompt_ids, response_ids, rows)))
        return real(model, prompt_ids, response_ids, rows, pad_id, **kw)

    for module in modules:
        monkeypatch.setattr(module, "forward_rows", spy)
    return seen


def test_scoring_under_a_token_cap_gives_the_same_logprobs_in_smaller_passes(tiny_tokenizer, monkeypatch):
    rollouts, _, _ = _tables(tiny_tokenizer, LENGTHS, seed=3)
    ckpt = _ckpt(tiny_tokenizer)
    p_ids, r_ids = list(rollouts["prompt_ids"]), list(rollouts["response_ids"])
    pad = tiny_tokenizer.pad_token_id
    seen = _record_packs(monkeypatch, batch_mod)
    full = score_responses(ckpt.model, p_ids, r_ids, pad, micro_batch=len(r_ids))
    assert len(seen) == 1
    widths = [len(p) + len(r) for p, r in zip(p_ids, r_ids)]
    cap = 3 * max(widths)
    seen.clear()
    capped = score_responses(ckpt.model, p_ids, r_ids, pad, micro_batch=len(r_ids), max_tokens=cap)
    assert len(seen) > 1 and all(tokens <= cap for rows, tokens in seen if rows > 1)
    for a, b in zip(full, capped):
        np.testing.assert_allclose(a, b, atol=1e-5)


def _max_diff(a, b) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


def test_updates_under_a_token_cap_leave_the_same_weights(tiny_tokenizer, monkeypatch):
    rollouts, outcomes, report = _tables(tiny_tokenizer, LENGTHS, seed=3)
    ckpt = _ckpt(tiny_tokenizer)
    rewards = prm_lib.compute_process_rewards(ckpt, ckpt, ckpt, rollouts, report, BASE)
    rng = np.random.default_rng(0)
    adv = rollouts[["prompt_id", "sample_idx"]].assign(
        advantages=[rng.normal(size=n).astype(np.float32) for n in rollouts["response_length"]]
    )

    def run(cfg):
        prm, prm_rewards, prm_stats = prm_lib.update_prm(copy.deepcopy(ckpt), rollouts, rewards, outcomes, cfg, 0)
        start = len(seen)
        policy, ppo_stats = policy_lib.update_policy(copy.deepcopy(ckpt), rollouts, rewards, adv, cfg, 0)
        ppo_packs.append(seen[start:])
        return prm, policy, prm_stats, ppo_stats, prm_rewards

    seen = _record_packs(monkeypatch, prm_lib, policy_lib)
    ppo_packs: list[list[tuple[int, int]]] = []  # (rows, tokens) of each PPO forward pass, per run
    prm_a, policy_a, prm_s_a, ppo_s_a, rew_a = run(BASE)
    passes_uncapped = len(seen)
    widths = [len(p) + len(r) for p, r in zip(rollouts["prompt_ids"], rollouts["response_ids"])]
    cap = 2 * max(widths)
    seen.clear()
    prm_b, policy_b, prm_s_b, ppo_s_b, rew_b = run(dataclasses.replace(BASE, micro_batch_tokens=cap))
    seen.clear()
    _, policy_c, _, ppo_s_c, _ = run(dataclasses.replace(BASE, micro_batch=2))
    assert len(seen) > passes_uncapped
    assert all(tokens <= cap for rows, tokens in seen if rows > 1)
    assert max(_max_diff(policy_a.model, ckpt.model), _max_diff(prm_a.model, ckpt.model)) > 1e-3
    # the PRM's loss is a mean over sequences: any split gives the same update
    assert _max_diff(prm_b.model, prm_a.model) < 1e-6
    np.testing.assert_allclose(prm_s_b["loss"], prm_s_a["loss"], atol=1e-6)
    # PPO's is a token mean per micro-batch (the reference's): another split reweighs tokens a
    # little, as another micro_batch would; it still trains, on the same mini-batches
    assert _max_diff(policy_b.model, ckpt.model) > 1e-3
    assert list(ppo_s_b["responses"]) == list(ppo_s_a["responses"])
    # "as another micro_batch would", exactly: this cap (two of the widest rows) packs the shuffled
    # mini-batches two rows at a time, the passes of micro_batch=2, so the same losses and weights.
    assert ppo_packs[1] == ppo_packs[2] and max(rows for rows, _ in ppo_packs[1]) == 2
    np.testing.assert_allclose(ppo_s_b["pg_loss"], ppo_s_c["pg_loss"], rtol=1e-6, atol=1e-7)
    assert _max_diff(policy_b.model, policy_c.model) < 1e-6
    # "a little": the three mini-batches' pg_loss is -0.114, 0.118, -0.730 uncapped (token
    # advantages ~ N(0, 1)); the cap moves them by 0.008, 0.028, 0.059, and micro_batch 1, 3 or 4
    # by at most 0.10. 0.1 bounds that reweighting and still fails for a loss that loses its
    # advantages (0 moves step 2 by 0.73), flips their sign or mis-weights its micro-batches.
    np.testing.assert_allclose(ppo_s_b["pg_loss"], ppo_s_a["pg_loss"], atol=0.1)
    for a, b in zip(rew_a["token_rewards"], rew_b["token_rewards"]):
        np.testing.assert_allclose(a, b, atol=1e-5)
