"""How good is the PRM? Outcome discrimination and first-error localisation.

- ``roc_auc``: the chance that a random correct response scores above a random wrong one
  (ties count one half), pooled over the batch rather than within groups.
- ``first_error_localisation``: in the style of ProcessBench (Zheng et al. 2024), from per-step
  summed token rewards and the ground-truth first wrong step:
  ``argmin_share``: of the wrong responses, the share whose lowest-reward step is the first
  wrong step; ``error_acc``: the share whose first step scoring below ``threshold`` is the first
  wrong step; ``correct_acc``: of the right responses, the share with no step below
  ``threshold``; ``f1``: the harmonic mean of those two.

  The threshold. An implicit PRM's step rewards have no natural zero: summed over a step's
  tokens, some step of almost every response falls below 0 by noise, so a fixed threshold of 0
  flags nearly every right response and the F1 sits at 0 whatever the PRM. ProcessBench sets a
  PRM's threshold on data; here, by default, it is the one that maximises the F1 on the responses
  being scored (``threshold`` in the result). That F1 is calibrated in-sample, an upper bound on
  what the same threshold would score elsewhere; ``argmin_share`` needs no threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` against binary ``labels`` (> 0.5 is positive);
    NaN when one class is missing."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64) > 0.5
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    # Mann-Whitney U through average ranks (ties share their rank).
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[y].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def first_error_localisation(
    step_rewards: Sequence[Sequence[float] | np.ndarray], first_wrong: Sequence[int], threshold: float | None = None
) -> dict[str, float]:
    """Localisation metrics (module docstring).

    Args:
        step_rewards: per response, the summed token reward of each step it wrote.
        first_wrong: per response, the index of its first wrong step, -1 when every step holds.
            A wrong response whose first wrong step it did not write (a missing step) counts as
            not localised.
        threshold: a step scoring below this is a predicted error; None: the threshold that
            maximises the F1 here (the lowest such, among every step score and +inf).
    Returns:
        ``argmin_share``, ``error_acc``, ``correct_acc``, ``f1`` (NaN where a class is empty),
        ``threshold`` and the counts ``n_wrong``, ``n_right``.
    """
    if threshold is None:
        threshold = _best_threshold(step_rewards, first_wrong)
    argmin_hits, error_hits, correct_hits, n_wrong, n_right = 0, 0, 0, 0, 0
    for row, k in zip(step_rewards, first_wrong):
        steps = np.asarray(row, dtype=np.float64)
        below = np.flatnonzero(steps < threshold)
        predicted = int(below[0]) if len(below) else -1
        if k < 0:
            n_right += 1
            correct_hits += predicted == -1
        else:
            n_wrong += 1
            if len(steps) and k < len(steps):
                argmin_hits += int(np.argmin(steps)) == k
                error_hits += predicted == k
    error_acc = error_hits / n_wrong if n_wrong else float("nan")
    correct_acc = correct_hits / n_right if n_right else float("nan")
    f1 = (
        2 * error_acc * correct_acc / (error_acc + correct_acc)
        if n_wrong and n_right and error_acc + correct_acc > 0
        else (0.0 if n_wrong and n_right else float("nan"))
    )
    return {
        "argmin_share": argmin_hits / n_wrong if n_wrong else float("nan"),
        "error_acc": error_acc,
        "correct_acc": correct_acc,
        "f1": f1,
        "threshold": float(threshold),
        "n_wrong": float(n_wrong),
        "n_right": float(n_right),
    }


#: At most this many candidate thresholds (beyond that, evenly spaced quantiles of the scores).
MAX_CANDIDATES = 1024


def _best_threshold(step_rewards: Sequence[Sequence[float] | np.ndarray], first_wrong: Sequence[int]) -> float:
    """The threshold with the highest localisation F1 (ties: the lowest), among every step score
    (a step flags when it is strictly below, so each score is a distinct cut) and +inf."""
    rows = [np.asarray(r, dtype=np.float64) for r in step_rewards]
    k = np.asarray(list(first_wrong), dtype=np.int64)
    width = max((len(r) for r in rows), default=0)
    if not width or not (k < 0).any() or not (k >= 0).any():
        return 0.0
    # The predicted first error is the first step whose running minimum falls below the threshold.
    run_min = np.full((len(rows), width), np.inf)  # steps a response did not write never flag
    for i, r in enumerate(rows):
        if len(r):
            run_min[i, : len(r)] = np.minimum.accumulate(r)
    scores = np.unique(np.concatenate([r for r in rows if len(r)]))
    if len(scores) > MAX_CANDIDATES:  # bound the (candidates x responses x steps) work: quantiles
        scores = np.unique(np.quantile(scores, np.linspace(0, 1, MAX_CANDIDATES)))
    candidates = np.concatenate([scores, [np.inf]])
    # (candidates, responses): the predicted first wrong step, -1 when no step flags
    flagged = run_min[None, :, :] < candidates[:, None, None]
    first = np.where(flagged.any(-1), flagged.argmax(-1), -1)
    wrong, right = k >= 0, k < 0
    error_acc = (first[:, wrong] == k[wrong]).mean(1)
    correct_acc = (first[:, right] == -1).mean(1)
    denom = error_acc + correct_acc
    f1 = np.where(denom > 0, 2 * error_acc * correct_acc / np.where(denom > 0, denom, 1), 0.0)
    return float(candidates[int(np.argmax(f1))])
