"""PRIME core: hand-computed values, and equivalence with plain loops written here."""

import math

import pytest
import torch

from eurus_prime.core.advantages import prime_advantages, rloo_rescale
from eurus_prime.core.filtering import accuracy_band_keep
from eurus_prime.core.masked import masked_whiten, reverse_cumsum
from eurus_prime.core.ppo import ppo_policy_loss
from eurus_prime.core.rewards import implicit_process_rewards, last_token_mask, prm_loss


def _batch(seed: int, groups: int, n: int, length: int):
    g = torch.Generator().manual_seed(seed)
    b = groups * n
    lengths = torch.randint(1, length + 1, (b,), generator=g)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).float()
    prm = torch.randn(b, length, generator=g) * mask
    ref = torch.randn(b, length, generator=g) * mask
    acc = torch.randint(0, 2, (b,), generator=g).float()
    return prm, ref, mask, acc, lengths


def test_rloo_outcome_is_leave_one_out_by_hand():
    acc = torch.tensor([1.0, 0.0, 0.0, 1.0])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 1]]).float()
    last = last_token_mask(mask)
    out = rloo_rescale(last * acc[:, None], last, n=4)
    # acc_i - mean of the other three: 1 - 1/3, 0 - 2/3, 0 - 2/3, 1 - 1/3
    expected = torch.tensor([2 / 3, -2 / 3, -2 / 3, 2 / 3])
    torch.testing.assert_close(out.sum(-1), expected)
    assert out[0, 1] == pytest.approx(2 / 3) and out[0, 0] == 0


def test_implicit_rewards_by_hand():
    prm = torch.tensor([[0.0, -1.0, -2.0]])
    ref = torch.tensor([[-1.0, -1.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    raw = implicit_process_rewards(prm, ref, mask, beta=0.5, normalisation="none")
    torch.testing.assert_close(raw, torch.tensor([[0.5, 0.0, 0.0]]))
    whole = implicit_process_rewards(prm, ref, mask, beta=0.5, granularity="whole", normalisation="none")
    torch.testing.assert_close(whole, torch.tensor([[0.0, 0.5, 0.0]]))  # on the last valid token
    normed = implicit_process_rewards(prm, ref, mask, beta=0.5)
    torch.testing.assert_close(normed, torch.tensor([[1.0, 0.0, 0.0]]), atol=1e-5, rtol=0)


def test_batch_norm_makes_beta_cancel_and_largest_return_one():
    prm, ref, mask, _, _ = _batch(0, 3, 4, 7)
    a = implicit_process_rewards(prm, ref, mask, beta=0.05)
    b = implicit_process_rewards(prm, ref, mask, beta=1.0)
    torch.testing.assert_close(a, b)
    assert reverse_cumsum(a).abs().max().item() == pytest.approx(1.0, abs=1e-4)


def test_prm_loss_by_hand():
    prm = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    ref = torch.zeros(2, 2)
    mask = torch.ones(2, 2)
    loss = prm_loss(prm, ref, mask, torch.tensor([1.0, 0.0]), beta=0.5)
    s = 1 / (1 + math.exp(-1.0))  # sigmoid(0.5 * 2)
    expected = -(math.log(s) + math.log(1 - 0.5)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_masked_whiten_by_hand():
    x = torch.tensor([[1.0, 2.0, 99.0], [3.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    out = masked_whiten(x, mask)
    # valid values 1, 2, 3: mean 2, unbiased var 1
    torch.testing.assert_close(out, torch.tensor([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), atol=1e-6, rtol=0)


def _loop_advantages(process, outcome, mask, n, pc, oc):
    """The reference's algorithm, written as plain Python loops."""
    b, length = process.shape
    lengths = [int(mask[i].sum()) for i in range(b)]
    returns = [[0.0] * length for _ in range(b)]
    for source in ("process", "outcome"):
        r = [[0.0] * length for _ in range(b)]
        for i in range(b):
            if source == "process":
                for t in range(lengths[i]):
                    r[i][t] = float(process[i, t])
            elif lengths[i]:
                r[i][lengths[i] - 1] = float(outcome[i])
        valid = (lambda i, t: t < lengths[i]) if source == "process" else (lambda i, t: t == lengths[i] - 1)
        for g in range(0, b, n):
            means = []
            for i in range(g, g + n):
                vals = [r[i][t] for t in range(length) if valid(i, t)]
                means.append(sum(vals) / max(len(vals), 1))
            total = sum(means)
            for i in range(g, g + n):
                for t in range(length):
                    if valid(i, t):
                        r[i][t] = r[i][t] * n / (n - 1) - total / (n - 1)
        coef = pc if source == "process" else oc
        for i in range(b):
            acc = 0.0
            for t in reversed(range(length)):
                acc += r[i][t]
                returns[i][t] += coef * acc * (t < lengths[i])
    flat = [returns[i][t] for i in range(b) for t in range(lengths[i])]
    mean = sum(flat) / len(flat)
    var = sum((v - mean) ** 2 for v in flat) / (len(flat) - 1)
    adv = [
        [(returns[i][t] - mean) / math.sqrt(var + 1e-8) if t < lengths[i] else 0.0 for t in range(length)]
        for i in range(b)
    ]
    return torch.tensor(returns), torch.tensor(adv)


@pytest.mark.parametrize("seed,groups,n,length", [(0, 2, 4, 5), (1, 3, 2, 9), (2, 1, 8, 3), (3, 4, 4, 16)])
@pytest.mark.parametrize("coefs", [(1.0, 1.0), (0.0, 1.0), (5.0, 5.0)])
def test_advantages_equal_a_plain_loop(seed, groups, n, length, coefs):
    prm, ref, mask, acc, _ = _batch(seed, groups, n, length)
    process = implicit_process_rewards(prm, ref, mask)
    returns, adv = prime_advantages(process, acc, mask, n, *coefs)
    loop_returns, loop_adv = _loop_advantages(process, acc, mask, n, *coefs)
    torch.testing.assert_close(returns, loop_returns, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(adv, loop_adv, atol=1e-4, rtol=1e-4)


def test_ppo_loss_by_hand_and_clipping():
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.5, 0.5]]))
    adv = torch.tensor([[1.0, -1.0]])
    mask = torch.ones(1, 2)
    loss, stats = ppo_policy_loss(new, old, adv, mask, clip_ratio=0.2)
    # token 0: max(-1.5, -1.2) = -1.2 (clipped); token 1: max(0.5, 0.8) = 0.8 (clipped)
    assert loss.item() == pytest.approx((-1.2 + 0.8) / 2)
    assert stats["pg_clipfrac"].item() == 1.0
    assert stats["ppo_kl"].item() == pytest.approx(-(math.log(1.5) + math.log(0.5)) / 2)


def test_ppo_loss_has_the_policy_gradient_at_ratio_one():
    logp = torch.zeros(2, 3, requires_grad=True)
    adv = torch.tensor([[1.0, 2.0, 0.0], [-1.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    loss, _ = ppo_policy_loss(logp, logp.detach(), adv, mask)
    loss.backward()
    torch.testing.assert_close(logp.grad, -adv * mask / 3)


def test_filter_keeps_the_inclusive_band():
    scores = torch.tensor([0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1], dtype=torch.float)
    assert accuracy_band_keep(scores, n=4).tolist() == [False, True, True, False]
    five = torch.tensor([1, 0, 0, 0, 0, 1, 1, 1, 1, 0], dtype=torch.float)  # 0.2 and 0.8 exactly
    assert accuracy_band_keep(five, n=5).tolist() == [True, True]
    with pytest.raises(ValueError, match="low=0.9, high=0.1"):
        accuracy_band_keep(scores, n=4, low=0.9, high=0.1)


@pytest.mark.parametrize("bad,match", [({"n": 1}, "n >= 2"), ({"n": 3}, "whole number of groups")])
def test_rloo_rejects_bad_group_sizes(bad, match):
    with pytest.raises(ValueError, match=match):
        rloo_rescale(torch.zeros(4, 2), torch.ones(4, 2), **bad)


def test_reward_options_are_validated():
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="granularity must be one of"):
        implicit_process_rewards(x, x, x, granularity="step")
    with pytest.raises(ValueError, match="normalisation must be one of"):
        implicit_process_rewards(x, x, x, normalisation="z")


def test_prm_pairwise_accuracy_by_hand():
    from eurus_prime.core.rewards import prm_pairwise_accuracy

    # group 1: correct sample scored highest -> both pairs agree; group 2: one pair of two disagrees
    scores = torch.tensor([3.0, 1.0, 0.0, 0.5, 2.0, 1.0])
    outcome = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    assert prm_pairwise_accuracy(scores, outcome, n=3) == pytest.approx(2 / 4)
    assert prm_pairwise_accuracy(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0]), n=2) == 0.5  # a tie
    assert prm_pairwise_accuracy(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0]), n=2) == 0.5  # no pair


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prm_pairwise_accuracy_matches_a_loop(seed):
    from eurus_prime.core.rewards import prm_pairwise_accuracy

    g = torch.Generator().manual_seed(seed)
    n, groups = 4, 6
    scores = torch.randn(groups * n, generator=g).round(decimals=1)
    outcome = torch.randint(0, 3, (groups * n,), generator=g).float() / 2
    agree = total = 0.0
    for k in range(groups):
        for i in range(n):
            for j in range(n):
                a, b = k * n + i, k * n + j
                w = abs(float(outcome[a] - outcome[b]))
                if w == 0:
                    continue
                ds, da = float(scores[a] - scores[b]), float(outcome[a] - outcome[b])
                agree += w * (0.5 if ds == 0 else float((ds > 0) == (da > 0)))
                total += w
    expected = 0.5 if total == 0 else agree / total
    assert prm_pairwise_accuracy(scores, outcome, n) == pytest.approx(expected)


def test_rft_advantages_weight_accepted_responses_only():
    from eurus_prime.core.advantages import rft_advantages

    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]])
    returns, adv = rft_advantages(torch.zeros(3, 3), torch.tensor([1.0, 0.0, 0.5]), mask, n=3)
    assert torch.equal(adv, torch.tensor([[1.0, 1, 0], [0, 0, 0], [0, 0, 0]]))  # partial credit is not accepted
    assert torch.equal(returns, adv)


def test_discounted_returns_by_hand_and_gamma_zero_localises_the_oracle():
    from eurus_prime.core.masked import discounted_reverse_cumsum

    x = torch.tensor([[1.0, 0.0, 2.0, -1.0]])
    assert discounted_reverse_cumsum(x, 1.0).tolist() == [[2.0, 1.0, 1.0, -1.0]]
    assert discounted_reverse_cumsum(x, 0.0).tolist() == [[1.0, 0.0, 2.0, -1.0]]
    torch.testing.assert_close(discounted_reverse_cumsum(x, 0.5), torch.tensor([[1.375, 0.75, 1.5, -1.0]]))
    # Two samples of one prompt, 4 tokens each; the second has an oracle -1 on token 2. With
    # gamma 1 the penalty reaches tokens 0-1 (the prefix both share) through the returns; with
    # gamma 0 only token 2 carries it (and RLOO's per-token baseline, the same on every token).
    rewards = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0]])
    mask = torch.ones(2, 4)
    outcome = torch.tensor([1.0, 0.0])
    one, _ = prime_advantages(rewards, outcome, mask, 2, outcome_coef=0.0, process_gamma=1.0)
    zero, _ = prime_advantages(rewards, outcome, mask, 2, outcome_coef=0.0, process_gamma=0.0)
    # rloo_rescale: row means 0 and -1/4, group sum -1/4: R*2 + 1/4
    assert one[1].tolist() == [-1.0, -1.25, -1.5, 0.25] and one[0].tolist() == [1.0, 0.75, 0.5, 0.25]
    assert zero[1].tolist() == [0.25, 0.25, -1.75, 0.25] and zero[0].tolist() == [0.25] * 4
    with pytest.raises(ValueError, match="process_gamma"):
        from eurus_prime.prime.config import PrimeConfig

        PrimeConfig(process_gamma=1.5)
