"""Per-token estimates of KL(pi_theta || pi_ref) from the log-probs of the sampled tokens.

With r = pi_ref(y_t) / pi_theta(y_t) and the token sampled from pi_theta (J. Schulman, "Approximating
KL divergence", 2020): k1 = -log r is unbiased and noisy, k2 = (log r)^2 / 2 is biased and low-variance,
k3 = (r - 1) - log r is unbiased, low-variance and never negative. verl's ``kl_penalty`` offers the
same three (``kl``/``k1``, ``mse``/``k2``, ``low_var_kl``/``k3``); as there, k3 clamps the log-ratio
to [-20, 20] and the estimate to [-10, 10] so one far-off token cannot overflow the penalty.
"""

from __future__ import annotations

import torch

KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token KL estimate.

    Args:
        logprobs: (batch, response_len) log pi_theta of the sampled tokens (may carry a gradient).
        ref_logprobs: (batch, response_len) log pi_ref of the same tokens.
        estimator: ``k1`` = logp - ref; ``k2`` = 0.5 (logp - ref)^2;
            ``k3`` = exp(ref - logp) - (ref - logp) - 1.
    Returns:
        (batch, response_len) estimates; the caller masks padding.
    """
    if estimator == "k1":
        return logprobs - ref_logprobs
    if estimator == "k2":
        return 0.5 * (logprobs - ref_logprobs).square()
    if estimator == "k3":
        log_r = torch.clamp(ref_logprobs - logprobs, min=-20.0, max=20.0)
        return torch.clamp(torch.exp(log_r) - log_r - 1.0, min=-10.0, max=10.0)
    raise ValueError(f"KL estimator must be one of {list(KL_ESTIMATORS)}, got {estimator!r}")
