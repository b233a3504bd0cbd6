"""Masked reductions over (batch, response_len) tensors."""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (all dims)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / sqrt(unbiased var + eps) over the valid tokens of the whole batch; 0 elsewhere.

    Args:
        x: (batch, response_len) values.
        mask: (batch, response_len) 1 for response tokens.
    """
    mask = mask.to(x.dtype)
    n = mask.sum()
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask) * n / (n - 1).clamp(min=1)  # unbiased, as the reference
    return (x - mean) * torch.rsqrt(var + eps) * mask


def reverse_cumsum(x: torch.Tensor) -> torch.Tensor:
    """``out[b, t] = sum_{s >= t} x[b, s]`` (returns with gamma = 1)."""
    return x.flip(-1).cumsum(-1).flip(-1)


def discounted_reverse_cumsum(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """``out[b, t] = sum_{s >= t} gamma^(s - t) x[b, s]``: returns with discount ``gamma``
    (``gamma = 1``: :func:`reverse_cumsum`; ``gamma = 0``: ``x`` itself)."""
    if gamma == 1.0:
        return reverse_cumsum(x)
    if gamma == 0.0:
        return x.clone()
    out = torch.zeros_like(x)
    running = torch.zeros_like(x[..., 0])
    for t in range(x.shape[-1] - 1, -1, -1):
        running = x[..., t] + gamma * running
        out[..., t] = running
    return out
