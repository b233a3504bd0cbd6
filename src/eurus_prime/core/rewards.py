"""Implicit process rewards and the PRM's losses (Cui et al. 2025, sections 3.1-3.2).

The implicit PRM is a causal LM pi_phi. For response token t, its reward is the log-likelihood
ratio against the frozen reference: ``q[b, t] = log pi_phi(y_t | x, y_<t) - log pi_ref(...)``.
The sequence score ``beta * sum_t q`` is trained as a classifier of the outcome label (``prm_loss``,
``ce``) or, pairwise, to rank a group's samples by outcome (``prm_dpo_loss``, ``dpo``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from eurus_prime.core.masked import reverse_cumsum

GRANULARITIES = ("token", "whole")
NORMALISATIONS = ("batch_norm", "none")
PRM_LOSSES = ("ce", "dpo")


def implicit_reward(prm_logprobs, ref_logprobs, beta: float):  # type: ignore[no-untyped-def]
    """Per-token implicit process reward ``beta * (log pi_prm - log pi_ref)`` (PRIME eq. 3), not
    normalised: the one formula every caller uses. Works on a torch tensor or numpy array of any
    shape (one response's tokens, or a padded batch)."""
    return beta * (prm_logprobs - ref_logprobs)


def implicit_sequence_score(prm_logprobs, ref_logprobs, beta: float) -> float:  # type: ignore[no-untyped-def]
    """A response's sequence score ``beta * sum_t (log pi_prm - log pi_ref)``: the PRM's logit of
    the outcome (numpy arrays or lists of one response's token log-probs)."""
    import numpy as np

    return float(beta * (np.asarray(prm_logprobs) - np.asarray(ref_logprobs)).sum())


def implicit_process_rewards(
    prm_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 0.05,
    granularity: str = "token",
    normalisation: str = "batch_norm",
) -> torch.Tensor:
    """Per-token process rewards.

    Args:
        prm_logprobs: (batch, response_len) log pi_phi of the sampled tokens.
        ref_logprobs: (batch, response_len) log pi_ref of the same tokens.
        mask: (batch, response_len) 1 on response tokens, 0 on padding.
        beta: PRM temperature; the reward is beta * q. Under ``batch_norm`` the scale cancels,
            so this equals the reference implementation's unscaled q.
        granularity: ``token`` (a reward on every valid token, the last one included) or
            ``whole`` (the sum on the last valid token).
        normalisation: ``batch_norm`` divides by the largest |reverse cumulative sum| in the
            batch (+1e-6), so the largest process return is 1; ``none`` leaves beta * q.
    Returns:
        (batch, response_len) rewards, 0 on padding.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    mask = mask.to(prm_logprobs.dtype)
    q = beta * (prm_logprobs - ref_logprobs) * mask
    if granularity == "whole":
        last = last_token_mask(mask)
        q = last * q.sum(-1, keepdim=True)
    if normalisation == "batch_norm" and q.numel():  # no tokens at all (every response empty): nothing to scale
        q = q / (reverse_cumsum(q).abs().max() + 1e-6)
    return q


def oracle_process_rewards(blame: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The best process reward any PRM could give: -1 spread evenly over the tokens of each
    response's first wrong step (known from re-executing its steps), 0 elsewhere and on responses
    with no wrong step. Fed through the same RLOO and returns as the implicit rewards, it bounds
    what dense credit assignment can add over the outcome reward.

    Args:
        blame: (batch, response_len) 1 on the tokens of the first wrong step.
        mask: (batch, response_len) 1 on response tokens.
    Returns:
        (batch, response_len) rewards; each row sums to -1 or 0.
    """
    blame = blame.to(torch.float32) * mask.to(torch.float32)
    return -blame / blame.sum(-1, keepdim=True).clamp(min=1)


def progress_process_rewards(step: torch.Tensor, mask: torch.Tensor, n_steps: torch.Tensor) -> torch.Tensor:
    """A ground-truth progress reward: each step a response got right before its first wrong step
    is worth 1/n_steps, spread evenly over that step's tokens, so a response earns the share of
    its steps it got right before erring (1 when every step holds).

    Args:
        step: (batch, response_len) j + 1 on the tokens of step j when that step precedes the
            first wrong one, 0 elsewhere.
        mask: (batch, response_len) 1 on response tokens.
        n_steps: (batch,) steps each response is graded on.
    Returns:
        (batch, response_len) rewards; row b sums to (steps right before the first error) / n_steps[b].
    """
    step = step * mask.to(step.dtype)
    width = int(step.max()) if step.numel() else 0
    out = torch.zeros(step.shape, dtype=torch.float32)
    for j in range(1, width + 1):
        on = (step == j).to(torch.float32)
        out += on / on.sum(-1, keepdim=True).clamp(min=1)
    return out / n_steps.to(torch.float32).clamp(min=1)[:, None]


def last_token_mask(mask: torch.Tensor) -> torch.Tensor:
    """(batch, response_len) one-hot of each row's last valid token (all 0 for an empty row)."""
    mask = mask.to(torch.float32) if not mask.is_floating_point() else mask
    lengths = mask.sum(-1).long()
    out = torch.zeros_like(mask)
    rows = torch.nonzero(lengths > 0).squeeze(-1)
    out[rows, lengths[rows] - 1] = 1
    return out


def prm_loss(
    prm_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    outcome: torch.Tensor,
    beta: float = 0.05,
) -> torch.Tensor:
    """Binary cross-entropy of sigmoid(beta * sum_t q) against the outcome label.

    Args:
        prm_logprobs, ref_logprobs, mask: (batch, response_len) as in
            ``implicit_process_rewards``; gradients flow through ``prm_logprobs``.
        outcome: (batch,) outcome score in [0, 1].
    Returns:
        scalar: -mean_b [acc_b log s_b + (1 - acc_b) log(1 - s_b)].
    """
    z = beta * ((prm_logprobs - ref_logprobs) * mask).sum(-1)
    return -(outcome * F.logsigmoid(z) + (1 - outcome) * F.logsigmoid(-z)).mean()


def prm_dpo_baseline(scores: torch.Tensor, outcome: torch.Tensor, n: int) -> torch.Tensor:
    """The detached opponent score of each sample for ``prm_dpo_loss`` (verl's recipe/prime
    ``Q_bc``/``acc_bc`` with ``other_Q``): the mean score of the other samples of its prompt that
    score lower (for a sample with outcome > 0) or higher (outcome 0) than it, 0 when it has none.

    Args:
        scores: (groups * n,) sequence scores ``beta * sum_t q`` of the PRM before its update.
        outcome: (groups * n,) outcome scores, n samples per prompt on contiguous rows.
    Returns:
        (groups * n,) baselines, no gradient.
    """
    if len(scores) % n:
        raise ValueError(f"batch of {len(scores)} rows is not a whole number of groups of n={n}")
    s = scores.detach().double().view(-1, n)
    a = outcome.double().view(-1, n)
    ai, aj = a[:, :, None], a[:, None, :]  # (groups, n, n): row i, opponent j
    opponent = torch.where(ai > 0, aj < ai, aj > ai).double()
    count = opponent.sum(-1)
    mean = (opponent * s[:, None, :]).sum(-1) / count.clamp(min=1)
    return torch.where(count > 0, mean, 0.0).reshape(-1).to(scores.dtype)


def prm_dpo_loss(
    prm_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    outcome: torch.Tensor,
    baseline: torch.Tensor,
    beta: float = 0.05,
) -> torch.Tensor:
    """verl recipe/prime's ``dpo`` PRM loss (``compute_detach_dpo_loss_rm``, ``bon_mode: none``): a
    pairwise (Bradley-Terry) loss of each sample's score against the mean score of its opponents
    in the group, those taken from the PRM before the update (``prm_dpo_baseline``), so only the
    sample's own score is differentiated.

    ``z_b = beta * sum_t q[b, t]``, ``sign_b = +1 if acc_b > 0 else -1``,
    ``L = -mean_b log sigmoid(sign_b * (z_b - baseline_b))``. A sample with no opponent has
    baseline 0, so its term is the CE loss's with a hard label.

    Args:
        prm_logprobs, ref_logprobs, mask: (batch, response_len) as in ``prm_loss``.
        outcome: (batch,) outcome scores.
        baseline: (batch,) from ``prm_dpo_baseline`` over the whole batch.
    Returns:
        scalar loss.
    """
    z = beta * ((prm_logprobs - ref_logprobs) * mask).sum(-1)
    sign = (outcome > 0).to(z.dtype) * 2 - 1
    return -F.logsigmoid(sign * (z - baseline.to(z.dtype))).mean()


def prm_pairwise_accuracy(scores: torch.Tensor, outcome: torch.Tensor, n: int) -> float:
    """How well sequence scores order the samples of each prompt by outcome.

    Over every pair (i, j) of samples of one prompt with ``acc_i != acc_j``, weighted by
    ``|acc_i - acc_j|``: the share where ``sign(S_i - S_j)`` matches ``sign(acc_i - acc_j)``
    (a tie counts one half). 0.5 when no pair differs.

    Args:
        scores: (groups * n,) sequence scores S (sum of the token rewards).
        outcome: (groups * n,) outcome scores, n samples per prompt on contiguous rows.
    """
    s = scores.double().view(-1, n)
    a = outcome.double().view(-1, n)
    da = a[:, :, None] - a[:, None, :]  # (groups, n, n)
    ds = s[:, :, None] - s[:, None, :]
    weight = da.abs()
    agree = torch.where(ds == 0, 0.5, (torch.sign(ds) == torch.sign(da)).double())
    total = weight.sum()
    return 0.5 if total == 0 else float((agree * weight).sum() / total)
