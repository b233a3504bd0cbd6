"""Accuracy-band prompt filtering (PRIME_REFERENCE.md: keep 0.2 <= acc <= 0.8, inclusive)."""

from __future__ import annotations

import torch


def accuracy_band_keep(scores: torch.Tensor, n: int, low: float = 0.2, high: float = 0.8) -> torch.Tensor:
    """Which prompt groups to keep.

    Args:
        scores: (groups * n,) outcome scores, the n samples of a prompt on contiguous rows.
    Returns:
        (groups,) bool: ``low <= mean score of the group <= high``.
    """
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"filter bounds must satisfy 0 <= low <= high <= 1, got low={low}, high={high}")
    if scores.numel() % n:
        raise ValueError(f"{scores.numel()} scores are not a whole number of groups of n={n}")
    acc = scores.view(-1, n).float().mean(-1)
    eps = 1e-6  # 0.2 and 0.8 are not exact in binary; n=5 with 1 of 5 correct must pass
    return (acc >= low - eps) & (acc <= high + eps)
