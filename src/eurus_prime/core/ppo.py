"""PPO's clipped surrogate policy loss with its diagnostics (PRIME_REFERENCE.md, "Policy update")."""

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
