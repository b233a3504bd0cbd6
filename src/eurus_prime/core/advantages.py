"""Advantage estimators: per-token returns and advantages from process and outcome rewards.

Every estimator takes the same arguments and returns ``(returns, advantages)``, both
(batch, response_len) and 0 on padding; ``ADVANTAGE_ESTIMATORS`` maps the names
``prime.advantage_estimator`` accepts to them (verl's ``core_algos`` registry, by name).

- ``rloo`` (PRIME, PRIME_REFERENCE.md "Advantages"): each prompt has n samples on contiguous rows.
  For each reward source separately, every reward of sample i is rescaled so that its per-sample
  mean becomes a leave-one-out advantage (``mean_i - mean of the other n-1 samples``); then the
  returns (reverse cumulative sums, gamma 1) of both sources are added with their coefficients and
  whitened over the batch.
- ``reinforce``, ``reinforce_pp``, ``grpo``: the paper's section on other RL algorithms (Table 4);
  the process rewards always enter as their returns, as in PRIME.
- ``prm_value``: the implicit PRM as a value model instead of a reward.
- ``gae``: PPO with a learned value model (a critic, ``prime/critic.py``), rewards as in
  ``reinforce_pp``.
- ``rft``: rejection-sampling fine-tuning weights.

``token_penalty`` (optional, (batch, response_len)) is a per-token cost subtracted from the
rewards before the returns: ``kl_coef * KL`` under ``prime.kl_in: reward``. It takes no baseline.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from eurus_prime.core.masked import discounted_reverse_cumsum, masked_whiten, reverse_cumsum
from eurus_prime.core.rewards import last_token_mask


def rloo_rescale(rewards: torch.Tensor, mask: torch.Tensor, n: int) -> torch.Tensor:
    """Leave-one-out baseline within groups of ``n`` rows.

    ``R[i, t] <- R[i, t] * n/(n-1) - S/(n-1)`` on valid tokens, where ``S`` is the sum over the
    group of each row's masked mean. For one reward on the last token this is exactly
    ``acc_i - mean_{j != i} acc_j``.

    Args:
        rewards: (batch, response_len), batch = groups * n.
        mask: (batch, response_len) positions that carry this source's rewards.
    """
    if n < 2:
        raise ValueError(f"RLOO needs n >= 2 samples per prompt, got n={n}")
    batch, length = rewards.shape
    _check_groups(batch, n)
    mask = mask.to(rewards.dtype)
    row_mean = (rewards * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # (batch,)
    group_sum = row_mean.view(-1, n).sum(-1, keepdim=True).expand(-1, n).reshape(batch, 1)
    return (rewards * n / (n - 1) - group_sum / (n - 1)) * mask


def _check_groups(batch: int, n: int) -> None:
    if batch % n:
        raise ValueError(f"batch of {batch} rows is not a whole number of groups of n={n}")


def _token_rewards(
    process_rewards: torch.Tensor, outcome: torch.Tensor, mask: torch.Tensor, process_coef: float, outcome_coef: float
) -> torch.Tensor:
    """``process_coef * r`` on every token plus ``outcome_coef * acc`` on each row's last one."""
    return process_coef * process_rewards + outcome_coef * last_token_mask(mask) * outcome.to(mask.dtype)[:, None]


def _penalty_returns(token_penalty: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor | float:
    """Return-to-go of the per-token penalty, negated (0 without one)."""
    if token_penalty is None:
        return 0.0
    return -reverse_cumsum(token_penalty.to(mask.dtype) * mask)


def prime_advantages(
    process_rewards: torch.Tensor,
    outcome: torch.Tensor,
    mask: torch.Tensor,
    n: int,
    process_coef: float = 1.0,
    outcome_coef: float = 1.0,
    token_penalty: torch.Tensor | None = None,
    process_gamma: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``rloo``: PRIME's returns and whitened advantages.

    Args:
        process_rewards: (batch, response_len) from ``implicit_process_rewards``.
        outcome: (batch,) outcome scores; placed on each row's last valid token.
        mask: (batch, response_len) response tokens.
        n: samples per prompt (contiguous rows).
        process_coef, outcome_coef: weights of the two sources; ``process_coef=0`` is the
            paper's outcome-only RLOO baseline.
        token_penalty: (batch, response_len) or None; subtracted per token, no baseline.
        process_gamma: discount of the process returns only (the reference: 1, so a process reward
            at token k reaches every earlier token; 0 keeps each token's process reward on that
            token: an ablation that localises credit).
    Returns:
        ``returns`` and ``advantages``, both (batch, response_len), 0 on padding.
    """
    mask = mask.to(process_rewards.dtype)
    last = last_token_mask(mask)
    outcome_rewards = last * outcome.to(process_rewards.dtype)[:, None]
    returns = process_coef * discounted_reverse_cumsum(rloo_rescale(process_rewards, mask, n), process_gamma)
    returns = returns + outcome_coef * reverse_cumsum(rloo_rescale(outcome_rewards, last, n))
    if token_penalty is not None:
        returns = returns + _penalty_returns(token_penalty, mask)
    returns = returns * mask
    return returns, masked_whiten(returns, mask)


def _sequence_outcome_plus_process(
    outcome_adv: torch.Tensor,
    process_rewards: torch.Tensor,
    mask: torch.Tensor,
    process_coef: float,
    outcome_coef: float,
    token_penalty: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shared tail of ``reinforce`` and ``grpo``: a per-sequence outcome advantage on every token,
    plus the process returns (gamma 1), minus the penalty's returns; not whitened. ``mask`` is
    already in the rewards' dtype."""
    returns = outcome_coef * outcome_adv[:, None] * mask
    returns = returns + process_coef * reverse_cumsum(process_rewards * mask) + _penalty_returns(token_penalty, mask)
    returns = returns * mask
    return returns, returns.clone()


def reinforce_advantages(
    process_rewards: torch.Tensor,
    outcome: torch.Tensor,
    mask: torch.Tensor,
    n: int,
    process_coef: float = 1.0,
    outcome_coef: float = 1.0,
    token_penalty: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``reinforce``: REINFORCE (Williams 1992) with a batch-mean baseline on the outcome.

    ``returns[b, t] = outcome_coef * (acc_b - mean_b' acc_b') + process_coef * sum_{s >= t} r[b, s]
    - sum_{s >= t} penalty[b, s]``; ``advantages = returns`` (no whitening). The process rewards
    take no baseline of their own: they enter through their returns, as in PRIME.

    Args:
        process_rewards: (batch, response_len) process rewards r.
        outcome: (batch,) outcome scores acc.
        mask: (batch, response_len) response tokens.
        n: samples per prompt (only checked: the baseline is over the whole batch).
        process_coef, outcome_coef: weights of the two sources.
        token_penalty: (batch, response_len) or None.
    Returns:
        ``returns`` and ``advantages``, both (batch, response_len) and equal.
    """
    _check_groups(process_rewards.shape[0], n)
    mask = mask.to(process_rewards.dtype)
    acc = outcome.to(process_rewards.dtype)
    return _sequence_outcome_plus_process(
        acc - acc.mean(), process_rewards, mask, process_coef, outcome_coef, token_penalty
    )


def reinforce_pp_advantages(
    process_rewards: torch.Tensor,
    outcome: torch.Tensor,
    mask: torch.Tensor,
    n: int,
    process_coef: float = 1.0,
    outcome_coef: float = 1.0,
    token_penalty: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``reinforce_pp``: REINFORCE++ (Hu 2025, arXiv 2501.03262; verl ``reinforce_plus_plus``).

    Token rewards ``process_coef * r + outcome_coef * acc`` (on the last token) ``- penalty``
    (REINFORCE++'s per-token KL term, ``kl_coef * KL`` under ``prime.kl_in: reward``); returns are
    their reverse cumulative sums (gamma 1); advantages are the returns whitened over every valid
    token of the batch (the global batch mean is the only baseline).

    Args:
        process_rewards: (batch, response_len) process rewards r.
        outcome: (batch,) outcome scores acc.
        mask: (batch, response_len) response tokens.
        n: samples per prompt (only checked).
        process_coef, outcome_coef: weights of the two sources.
        token_penalty: (batch, response_len) or None.
    Returns:
        ``returns`` and ``advantages``, both (batch, response_len), 0 on padding.
    """
    _check_groups(process_rewards.shape[0], n)
    mask = mask.to(process_rewards.dtype)
    rewards = _token_rewards(process_rewards, outcome, mask, process_coef, outcome_coef)
    returns = (reverse_cumsum(rewards * mask) + _penalty_returns(token_penalty, mask)) * mask
    return returns, masked_whiten(returns, mask)


def grpo_advantages(
    process_rewards: torch.Tensor,
    outcome: torch.Tensor,
    mask: torch.Tensor,
    n: int,
    process_coef: float = 1.0,
    outcome_coef: float = 1.0,
    token_penalty: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``grpo``: GRPO's group normalisation of the outcome (Shao et al. 2024; verl ``grpo``), with the
    process returns added (PRIME, Table 4).

    ``returns[b, t] = outcome_coef * (acc_b - mean_g) / (std_g + eps) + process_coef *
    sum_{s >= t} r[b, s] - sum_{s >= t} penalty[b, s]``, where mean_g and std_g (unbiased, as
    ``torch.std``) are over the n samples of b's prompt; ``advantages = returns`` (no batch
    whitening). A group whose samples all score the same gets outcome advantage 0.

    Args:
        process_rewards: (batch, response_len) process rewards r.
        outcome: (batch,) outcome scores acc, n samples per prompt on contiguous rows.
        mask: (batch, response_len) response tokens.
        n: samples per prompt (>= 2: a group std needs two samples).
        process_coef, outcome_coef: weights of the two sources.
        token_penalty: (batch, response_len) or None.
        eps: added to the group std.
    Returns:
        ``returns`` and ``advantages``, both (batch, response_len) and equal.
    """
    if n < 2:
        raise ValueError(f"GRPO needs n >= 2 samples per prompt, got n={n}")
    _check_groups(process_rewards.shape[0], n)
    mask = mask.to(process_rewards.dtype)
    acc = outcome.to(mask.dtype).view(-1, n)  # (groups, n)
    normalised = ((acc - acc.mean(-1, keepdim=True)) / (acc.std(-1, keepdim=True) + eps)).reshape(-1)
    return _sequence_outcome_plus_process(normalised, process_rewards, mask, process_coef, outcome_coef, token_penalty)


def prm_value_advantages(
    process_rewards: torch.Tensor,
    outcome: torch.Tensor,
    mask: torch.Tensor,
    n: int,
    process_coef: float = 1.0,
    outcome_coef: float = 1.0,
    token_penalty: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``prm_value``: the implicit PRM as a value model, not a reward (the PRIME paper's "PRM as
    value" comparison).

    An implicit PRM's cumulative reward ``sum_{s <= t} beta log(pi_phi / pi_ref)`` is a Q-value
    of the prefix y_<=t, so the value of the state in which y_t is chosen is
    ``V[b, t] = process_coef * sum_{s < t} r[b, s]`` (0 at t = 0). It depends on the prefix only,
    never on y_t itself, so it is a baseline and leaves the policy gradient unbiased. The reward is
    the outcome alone: ``returns[b, t] = outcome_coef * acc_b - sum_{s >= t} penalty[b, s]``, and
    ``advantages = whiten(returns - V)`` over the batch, i.e. GAE with gamma = lambda = 1 against
    this value, whitened as verl whitens GAE. ``r`` is what the stage hands over (the
    ``prime.normalisation``-ed rewards; ``normalisation: none`` gives beta * log-ratio, the value
    on the outcome's logit scale).

    Args:
        process_rewards: (batch, response_len) implicit rewards r.
        outcome: (batch,) outcome scores acc.
        mask: (batch, response_len) response tokens.
        n: samples per prompt (only checked).
        process_coef: scale of the value; 0 makes this REINFORCE without a baseline, whitened.
        outcome_coef: weight of the outcome.
        token_penalty: (batch, response_len) or None.
    Returns:
        ``returns`` and ``advantages``, both (batch, response_len), 0 on padding.
    """
    _check_groups(process_rewards.shape[0], n)
    mask = mask.to(process_rewards.dtype)
    r = process_rewards * mask
    values = process_coef * (r.cumsum(-1) - r)  # (batch, response_len): sum over s < t
    returns = (outcome_coef * outcome.to(mask.dtype)[:, None] + _penalty_returns(token_penalty, mask)) * mask
    return returns, masked_whiten(returns - values, mask)


def rft_advantages(
    process_rewards: torch.Tensor,
    outcome: torch.Tensor,
    mask: torch.Tensor,
    n: int,
    process_coef: float = 1.0,
    outcome_coef: float = 1.0,
    token_penalty: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``rft``: rejection-sampling fine-tuning (STaR, ReST, expert iteration) as a policy-gradient
    weight: 1 on every token of a response the verifier accepts, 0 on every other token; no
    baseline, no whitening, and the process rewards and coefficients are not used. Under PPO's
    surrogate (one epoch, ratio 1 at the first step) the gradient is that of the log-likelihood of
    the accepted responses: SFT on the policy's own verified samples.

    Args:
        process_rewards: (batch, response_len), unused (the registry's common signature).
        outcome: (batch,) verifier scores; a response counts as accepted when its score is 1.
        mask: (batch, response_len) response tokens.
        token_penalty: must be None: there is no reward to subtract it from.
    Returns:
        ``returns`` and ``advantages``, both (batch, response_len) and equal.
    """
    if token_penalty is not None:
        raise ValueError("rft has no rewards to subtract a per-token penalty from (put the KL in the loss)")
    accepted = (outcome >= 1.0).to(torch.float32)[:, None] * mask.to(torch.float32)
    return accepted, accepted.clone()


def gae_advantages(
    process_rewards: torch.Tensor,
    outcome: torch.Tensor,
    mask: torch.Tensor,
    n: int,
    process_coef: float = 1.0,
    outcome_coef: float = 1.0,
    token_penalty: torch.Tensor | None = None,
    values: torch.Tensor | None = None,
    gamma: float = 1.0,
    lam: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``gae``: PPO's generalised advantage estimation against a learned value model (Schulman et
    al. 2016; verl ``compute_gae_advantage_return``), with the process rewards added to the token
    rewards (the PRIME paper's Table 4, "PPO + PRIME").

    Token rewards ``rew[b, t] = process_coef * r[b, t] + outcome_coef * acc_b * [t = last_b] -
    penalty[b, t]``; ``delta[b, t] = rew[b, t] + gamma * V[b, t + 1] - V[b, t]`` (V = 0 after the
    last token); ``A[b, t] = sum_{k >= 0} (gamma * lam)^k * delta[b, t + k]``; ``returns = A + V``
    (the critic's targets); ``advantages = whiten(A)`` over the batch, as verl does.

    Args:
        process_rewards: (batch, response_len) process rewards r.
        outcome: (batch,) outcome scores acc.
        mask: (batch, response_len) response tokens.
        n: samples per prompt (only checked: GAE needs no groups).
        process_coef, outcome_coef: weights of the two sources.
        token_penalty: (batch, response_len) or None.
        values: (batch, response_len) the critic's V of the state before each response token
            (``critic.compute_values``); required.
        gamma, lam: discount and GAE's lambda (verl's defaults: 1 and 1).
    Returns:
        ``returns`` and ``advantages``, both (batch, response_len), 0 on padding.
    """
    if values is None:
        raise ValueError("gae needs the critic's values (prime.advantage_estimator: gae runs compute_values)")
    _check_groups(process_rewards.shape[0], n)
    mask = mask.to(process_rewards.dtype)
    rewards = _token_rewards(process_rewards, outcome, mask, process_coef, outcome_coef)
    if token_penalty is not None:
        rewards = rewards - token_penalty.to(mask.dtype)
    rewards, v = rewards * mask, values.to(mask.dtype) * mask
    next_v = torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], dim=-1)  # 0 past each row's last token
    deltas = (rewards + gamma * next_v - v) * mask
    # Responses are right-padded and deltas are 0 on padding, so the discounted sum of a row's
    # deltas from t on is GAE's advantage at t.
    adv = discounted_reverse_cumsum(deltas, gamma * lam) * mask
    return (adv + v) * mask, masked_whiten(adv, mask)


AdvantageEstimator = Callable[..., tuple[torch.Tensor, torch.Tensor]]

#: ``prime.advantage_estimator`` -> the estimator; each is called as
#: ``fn(process_rewards, outcome, mask, n, process_coef=, outcome_coef=, token_penalty=)``.
ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {
    "rloo": prime_advantages,
    "rft": rft_advantages,
    "reinforce": reinforce_advantages,
    "reinforce_pp": reinforce_pp_advantages,
    "grpo": grpo_advantages,
    "prm_value": prm_value_advantages,
    "gae": gae_advantages,
}

#: The estimators that need the critic's values (``values=``) and the critic stages.
NEEDS_CRITIC = frozenset({"gae"})


def advantage_estimator(name: str) -> AdvantageEstimator:
    """The registered estimator called ``name``; a ValueError lists the valid names."""
    try:
        return ADVANTAGE_ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown advantage estimator {name!r}: valid ones are {list(ADVANTAGE_ESTIMATORS)}") from None
