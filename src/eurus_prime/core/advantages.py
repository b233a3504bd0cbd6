"""RLOO advantages on outcome and process rewards (PRIME_REFERENCE.md, "Advantages").

Each prompt has n samples on contiguous rows. For each reward source separately, every reward of
sample i is rescaled so that its per-sample mean becomes a leave-one-out advantage
(``mean_i - mean of the other n-1 samples``); then the returns (reverse cumulative sums, gamma 1)
of both sources are added with their coefficients and whitened over the batch.
"""

from __future__ import annotations

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
    if batch % n:
        raise ValueError(f"batch of {batch} rows is not a whole number of groups of n={n}")
    mask = mask.to(rewards.dtype)
    row_mean = (rewards * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # (batch,)
    group_sum = row_mean.view(-1, n).sum(-1, keepdim=True).expand(-1, n).reshape(batch, 1)
    return (rewards * n / (n - 1) - group_sum / (n - 1)) * mask


def prime_advantages(
    process_rewards: torch.Tensor,
    outcome: torch.Tensor,
    mask: torch.Tensor,
    n: int,
    process_coef: float = 1.0,
    outcome_coef: float = 1.0,
    process_gamma: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns and whitened advantages.

    Args:
        process_rewards: (batch, response_len) from ``implicit_process_rewards``.
        outcome: (batch,) outcome scores; placed on each row's last valid token.
        mask: (batch, response_len) response tokens.
        n: samples per prompt (contiguous rows).
        process_coef, outcome_coef: weights of the two sources; ``process_coef=0`` is the
            paper's outcome-only RLOO baseline.
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
    returns = returns * mask
    return returns, masked_whiten(returns, mask)


def rft_advantages(outcome: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rejection-sampling fine-tuning (STaR, ReST, expert iteration) as a policy-gradient weight:
    1 on every token of a response the verifier accepts, 0 on every other token; no baseline, no
    whitening. Under PPO's surrogate (one epoch, ratio 1 at the first step) the gradient is that of
    the log-likelihood of the accepted responses: SFT on the policy's own verified samples.

    Args:
        outcome: (batch,) verifier scores; a response counts as accepted when its score is 1.
        mask: (batch, response_len) response tokens.
    Returns:
        ``returns`` and ``advantages``, both (batch, response_len) and equal.
    """
    accepted = (outcome >= 1.0).to(torch.float32)[:, None] * mask.to(torch.float32)
    return accepted, accepted.clone()
