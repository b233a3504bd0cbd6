"""PPO's clipped surrogate policy loss (PRIME_REFERENCE.md, "Policy update") and the critic's clipped
value loss, with their diagnostics."""

from __future__ import annotations

import torch

from eurus_prime.core.masked import masked_mean


def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_ratio: float = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Token-mean clipped surrogate.

    Args:
        logprobs: (batch, response_len) log pi_theta of the sampled tokens (with grad).
        old_logprobs: (batch, response_len) log pi_theta_old, recomputed after rollout.
        advantages: (batch, response_len).
        mask: (batch, response_len) response tokens.
    Returns:
        ``pg_loss`` (scalar) and ``{"pg_clipfrac", "ppo_kl"}``: the share of tokens where the
        clipped term is the active one, and the approximate KL mean(old - new).
    """
    mask = mask.to(logprobs.dtype)
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio)
    pg_loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "pg_clipfrac": masked_mean((clipped > unclipped).to(mask.dtype), mask),
            "ppo_kl": masked_mean(-log_ratio, mask),
        }
    return pg_loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float = 0.5,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped value loss (verl ``compute_value_loss``; cliprange_value 0.5 by default).

    ``0.5 * token-mean of max((V - R)^2, (clip(V, V_old - c, V_old + c) - R)^2)``.

    Args:
        values: (batch, response_len) the critic's values now (with grad).
        old_values: (batch, response_len) its values when the returns were computed.
        returns: (batch, response_len) the targets (GAE's ``A + V_old``).
        mask: (batch, response_len) response tokens.
        clip_range: c, how far a value may move from its old value before the clipped term holds.
    Returns:
        ``vf_loss`` (scalar) and ``{"vf_clipfrac"}``: the share of tokens where the clipped term is
        the larger.
    """
    mask = mask.to(values.dtype)
    clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    unclipped_loss = (values - returns) ** 2
    clipped_loss = (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_loss, clipped_loss), mask)
    with torch.no_grad():
        stats = {"vf_clipfrac": masked_mean((clipped_loss > unclipped_loss).to(mask.dtype), mask)}
    return loss, stats
