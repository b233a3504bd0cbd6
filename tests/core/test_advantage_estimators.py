"""Advantage estimators (core/advantages.py): hand-computed values, and equivalence with plain
loops written here."""

import math
import statistics

import pytest
import torch

from eurus_prime.core.advantages import (
    ADVANTAGE_ESTIMATORS,
    advantage_estimator,
    gae_advantages,
    grpo_advantages,
    prime_advantages,
    prm_value_advantages,
    reinforce_advantages,
    reinforce_pp_advantages,
)
from eurus_prime.core.masked import reverse_cumsum

# Two groups of n=2 on rows 0-1 and 2-3.
MASK = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.float32)
ACC = torch.tensor([1.0, 0.0, 1.0, 1.0])
R = torch.tensor([[0.1, 0.2, 0.3], [0.4, -0.2, 0.0], [-0.5, 0.0, 0.0], [0.0, 0.1, -0.1]])


def _whiten(rows: list[list[float]]) -> list[list[float]]:
    flat = [v for row in rows for v in row]
    mean, std = statistics.fmean(flat), math.sqrt(statistics.variance(flat) + 1e-8)
    return [[(v - mean) / std for v in row] for row in rows]


def _padded(rows: list[list[float]], width: int = 3) -> torch.Tensor:
    return torch.tensor([row + [0.0] * (width - len(row)) for row in rows])


def test_reinforce_by_hand():
    returns, adv = reinforce_advantages(R, ACC, MASK, n=2)
    # outcome baseline = batch mean 0.75; process returns-to-go added
    expected = _padded([[0.85, 0.75, 0.55], [-0.55, -0.95], [-0.25], [0.25, 0.25, 0.15]])
    torch.testing.assert_close(returns, expected)
    torch.testing.assert_close(adv, expected)


def test_grpo_by_hand():
    returns, adv = grpo_advantages(R, ACC, MASK, n=2)
    z = 0.5 / (math.sqrt(0.5) + 1e-6)  # group (1, 0): mean 0.5, unbiased std sqrt(0.5); group (1, 1): 0
    expected = _padded([[0.6 + z, 0.5 + z, 0.3 + z], [0.2 - z, -0.2 - z], [-0.5], [0.0, 0.0, -0.1]])
    torch.testing.assert_close(returns, expected)
    torch.testing.assert_close(adv, expected)
    only_outcome, _ = grpo_advantages(R, ACC, MASK, n=2, process_coef=0.0, outcome_coef=2.0)
    torch.testing.assert_close(only_outcome, _padded([[2 * z] * 3, [-2 * z] * 2, [0.0], [0.0] * 3]))


def test_reinforce_pp_by_hand_with_a_kl_penalty():
    hand = [[1.6, 1.5, 1.3], [0.2, -0.2], [0.5], [1.0, 1.0, 0.9]]  # rewards r + acc on the last token
    returns, adv = reinforce_pp_advantages(R, ACC, MASK, n=2)
    torch.testing.assert_close(returns, _padded(hand))
    torch.testing.assert_close(adv, _padded(_whiten(hand)), atol=1e-5, rtol=1e-5)
    penalty = torch.zeros(4, 3)
    penalty[0, 1] = 0.1  # a KL cost on row 0's second token: its return-to-go and everything before it
    penalty[1, 2] = 5.0  # on padding: ignored
    returns, adv = reinforce_pp_advantages(R, ACC, MASK, n=2, token_penalty=penalty)
    hand[0] = [1.5, 1.4, 1.3]
    torch.testing.assert_close(returns, _padded(hand))
    torch.testing.assert_close(adv, _padded(_whiten(hand)), atol=1e-5, rtol=1e-5)


def test_prm_value_by_hand():
    returns, adv = prm_value_advantages(R, ACC, MASK, n=2)
    # returns = the outcome; V_t = sum of the rewards before t: row 0 (0, 0.1, 0.3), row 1 (0, 0.4), ...
    torch.testing.assert_close(returns, _padded([[1.0] * 3, [0.0] * 2, [1.0], [1.0] * 3]))
    hand = [[1.0, 0.9, 0.7], [0.0, -0.4], [1.0], [1.0, 1.0, 0.9]]
    torch.testing.assert_close(adv, _padded(_whiten(hand)), atol=1e-5, rtol=1e-5)


def test_rloo_kl_penalty_is_its_negated_return_to_go():
    penalty = torch.rand(4, 3, generator=torch.Generator().manual_seed(0))
    plain, _ = prime_advantages(R, ACC, MASK, n=2)
    returns, _ = prime_advantages(R, ACC, MASK, n=2, token_penalty=penalty)
    torch.testing.assert_close(returns, plain - reverse_cumsum(penalty * MASK) * MASK)


def test_registry_names_every_estimator_and_rejects_others():
    assert list(ADVANTAGE_ESTIMATORS) == ["rloo", "rft", "reinforce", "reinforce_pp", "grpo", "prm_value", "gae"]
    assert advantage_estimator("grpo") is grpo_advantages
    with pytest.raises(
        ValueError,
        match=r"unknown advantage estimator 'ppo': valid ones are \['rloo', 'rft', "
        r"'reinforce', 'reinforce_pp', 'grpo', 'prm_value', 'gae'\]",
    ):
        advantage_estimator("ppo")
    with pytest.raises(ValueError, match="gae needs the critic's values"):
        gae_advantages(R, ACC, MASK, n=2)
    with pytest.raises(ValueError, match="not a whole number of groups"):
        grpo_advantages(R[:3], ACC[:3], MASK[:3], n=2)
    with pytest.raises(ValueError, match="no rewards to subtract"):
        advantage_estimator("rft")(R, ACC, MASK, 2, token_penalty=torch.zeros(4, 3))


def test_gae_by_hand():
    values = torch.tensor([[0.5, 0.4, 0.2], [0.1, 0.3, 9.0], [0.2, 9.0, 9.0], [0.0, 0.0, 0.0]])
    # gamma = lam = 1: A_t = (sum of rewards from t) - V_t, whatever the later values
    hand_rewards = [[1.6, 1.5, 1.3], [0.2, -0.2], [0.5], [1.0, 1.0, 0.9]]  # returns-to-go of r + acc
    hand_adv = [[1.6 - 0.5, 1.5 - 0.4, 1.3 - 0.2], [0.2 - 0.1, -0.2 - 0.3], [0.5 - 0.2], [1.0, 1.0, 0.9]]
    returns, adv = gae_advantages(R, ACC, MASK, n=2, values=values)
    torch.testing.assert_close(returns, _padded(hand_rewards))  # A + V: the returns-to-go
    torch.testing.assert_close(adv, _padded(_whiten(hand_adv)), atol=1e-5, rtol=1e-5)
    # gamma = 0.5, lam = 0.5 on row 1 (rewards 0.4, -0.2 + 0 outcome; V 0.1, 0.3):
    # delta_1 = -0.2 - 0.3 = -0.5; delta_0 = 0.4 + 0.5 * 0.3 - 0.1 = 0.45; A_0 = 0.45 + 0.25 * -0.5
    returns, _ = gae_advantages(R, ACC, MASK, n=2, values=values, gamma=0.5, lam=0.5)
    torch.testing.assert_close(returns[1], torch.tensor([0.45 - 0.125 + 0.1, -0.5 + 0.3, 0.0]))


def test_value_loss_by_hand():
    from eurus_prime.core.ppo import value_loss

    mask = torch.tensor([[1.0, 1.0, 0.0]])
    old = torch.tensor([[0.0, 1.0, 0.0]])
    returns = torch.tensor([[2.0, 1.0, 5.0]])
    values = torch.tensor([[1.0, 0.0, 7.0]], requires_grad=True)
    loss, stats = value_loss(values, old, returns, mask, clip_range=0.5)
    # token 0: V 1, clipped 0.5: max((1-2)^2, (0.5-2)^2) = 2.25 (clipped); token 1: V 0, clipped 0.5:
    # max(1, 0.25) = 1 (unclipped). 0.5 * mean(2.25, 1) = 0.8125; padding ignored
    torch.testing.assert_close(loss, torch.tensor(0.8125))
    torch.testing.assert_close(stats["vf_clipfrac"], torch.tensor(0.5))
    loss.backward()
    torch.testing.assert_close(values.grad, torch.tensor([[0.0, -0.5, 0.0]]))  # the clipped term has no gradient


# --------------------------------------------------------------------------- plain loops
def _gae_loop(process, acc, mask, n, pc, oc, penalty, values, gamma, lam):
    """GAE as in the textbook: per row, a backward loop over its own tokens."""
    returns, advs = [], []
    for i in range(len(acc)):
        length = int(sum(mask[i]))
        rew = [
            pc * float(process[i][t])
            - (float(penalty[i][t]) if penalty is not None else 0.0)
            + (oc * float(acc[i]) if t == length - 1 else 0.0)
            for t in range(length)
        ]
        v = [float(values[i][t]) for t in range(length)]
        adv, running = [0.0] * length, 0.0
        for t in reversed(range(length)):
            next_v = v[t + 1] if t + 1 < length else 0.0
            running = rew[t] + gamma * next_v - v[t] + gamma * lam * running
            adv[t] = running
        advs.append(adv)
        returns.append([adv[t] + v[t] for t in range(length)])
    return returns, _whiten(advs)


@pytest.mark.parametrize("seed,groups,n,length", [(0, 2, 4, 5), (1, 3, 2, 9), (3, 4, 4, 16)])
@pytest.mark.parametrize("gamma,lam", [(1.0, 1.0), (0.9, 0.95), (1.0, 0.0)])
@pytest.mark.parametrize("with_penalty", [False, True])
def test_gae_equals_a_plain_loop(seed, groups, n, length, gamma, lam, with_penalty):
    process, acc, mask, penalty = _random_batch(seed, groups, n, length, partial=True)
    penalty = 0.1 * penalty if with_penalty else None
    values = torch.randn(process.shape, generator=torch.Generator().manual_seed(seed + 100))
    returns, adv = gae_advantages(
        process, acc, mask, n, 2.0, 1.0, token_penalty=penalty, values=values, gamma=gamma, lam=lam
    )
    loop_returns, loop_adv = _gae_loop(process, acc, mask, n, 2.0, 1.0, penalty, values, gamma, lam)
    width = mask.shape[1]
    torch.testing.assert_close(returns, _padded(loop_returns, width), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(adv, _padded(loop_adv, width), atol=1e-4, rtol=1e-4)


def _loop(name, process, acc, mask, n, pc, oc, penalty):
    """The estimators of core/advantages.py, written as plain Python loops over rows and tokens."""
    b = len(acc)
    lengths = [int(sum(mask[i])) for i in range(b)]
    r = [[float(process[i][t]) for t in range(lengths[i])] for i in range(b)]
    pen = [[float(penalty[i][t]) if penalty is not None else 0.0 for t in range(lengths[i])] for i in range(b)]
    acc = [float(a) for a in acc]

    def to_go(row):
        out, run = [], 0.0
        for v in reversed(row):
            run += v
            out.append(run)
        return out[::-1]

    if name == "rloo":
        rows = []
        proc_mean = [sum(r[i]) / max(lengths[i], 1) for i in range(b)]
        for i in range(b):
            g = i - i % n
            group_sum = sum(proc_mean[g : g + n])
            o_base = (sum(acc[g : g + n]) - acc[i]) / (n - 1)  # leave-one-out mean of the outcome
            proc = to_go([v * n / (n - 1) - group_sum / (n - 1) for v in r[i]])
            out = [
                pc * proc[t] + (oc * (acc[i] - o_base) if lengths[i] else 0.0) - to_go(pen[i])[t]
                for t in range(lengths[i])
            ]
            rows.append(out)
        return rows, _whiten(rows)
    if name in ("reinforce", "grpo"):
        rows = []
        for i in range(b):
            if name == "reinforce":
                o = acc[i] - sum(acc) / b
            else:
                g = acc[i - i % n : i - i % n + n]
                mean = sum(g) / n
                std = math.sqrt(sum((a - mean) ** 2 for a in g) / (n - 1))
                o = (acc[i] - mean) / (std + 1e-6)
            proc, cost = to_go(r[i]), to_go(pen[i])
            rows.append([oc * o + pc * proc[t] - cost[t] for t in range(lengths[i])])
        return rows, rows
    if name == "reinforce_pp":
        rows = []
        for i in range(b):
            rewards = [
                pc * r[i][t] - pen[i][t] + (oc * acc[i] if t == lengths[i] - 1 else 0.0) for t in range(lengths[i])
            ]
            rows.append(to_go(rewards))
        return rows, _whiten(rows)
    if name == "prm_value":
        returns, deltas = [], []
        for i in range(b):
            cost = to_go(pen[i])
            ret = [oc * acc[i] - cost[t] for t in range(lengths[i])]
            value = [pc * sum(r[i][:t]) for t in range(lengths[i])]
            returns.append(ret)
            deltas.append([ret[t] - value[t] for t in range(lengths[i])])
        return returns, _whiten(deltas)
    raise AssertionError(name)


def _random_batch(seed, groups, n, length, partial=False):
    g = torch.Generator().manual_seed(seed)
    b = groups * n
    lengths = torch.randint(1, length + 1, (b,), generator=g)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).float()
    process = torch.randn(b, length, generator=g) * mask
    acc = torch.randint(0, 3 if partial else 2, (b,), generator=g).float() / (2 if partial else 1)
    penalty = torch.rand(b, length, generator=g)
    return process, acc, mask, penalty


@pytest.mark.parametrize("name", ["rloo", "reinforce", "reinforce_pp", "grpo", "prm_value"])
@pytest.mark.parametrize("seed,groups,n,length", [(0, 2, 4, 5), (1, 3, 2, 9), (2, 1, 8, 3), (3, 4, 4, 16)])
@pytest.mark.parametrize("coefs", [(1.0, 1.0), (0.0, 1.0), (5.0, 2.0)])
@pytest.mark.parametrize("with_penalty", [False, True])
def test_estimators_equal_plain_loops(name, seed, groups, n, length, coefs, with_penalty):
    process, acc, mask, penalty = _random_batch(seed, groups, n, length, partial=seed % 2 == 1)
    penalty = 0.1 * penalty if with_penalty else None
    returns, adv = ADVANTAGE_ESTIMATORS[name](
        process, acc, mask, n, process_coef=coefs[0], outcome_coef=coefs[1], token_penalty=penalty
    )
    loop_returns, loop_adv = _loop(name, process, acc, mask, n, *coefs, penalty)
    width = mask.shape[1]
    torch.testing.assert_close(returns, _padded(loop_returns, width), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(adv, _padded(loop_adv, width), atol=1e-4, rtol=1e-4)
