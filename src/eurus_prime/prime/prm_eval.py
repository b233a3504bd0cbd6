"""The PRM evaluated on its own, on a fixed set and on each iteration's fresh rollouts.

The *fixed set* is built once, at the bootstrap: ``prm_eval.prompts`` validation prompts,
``prm_eval.samples`` samples each from the SFT model at temperature 1, graded by the outcome
verifier, with ground-truth step labels where the world has a step checker, and the reference
(SFT) log-probs. It is a versioned table, so every iteration's PRM is measured on the same
responses. The *fresh set* is the iteration's own selected rollouts, scored by the PRM as loaded,
before it trains on them: the current policy's errors, the ones that matter.

On both, ``prm_lib.prm_quality`` gives cross-entropy, ROC AUC and first-error localisation;
``prm_pairwise_accuracy`` the within-group pairwise accuracy. Results: the ``prm_eval`` table (one
row per set) and MLflow metrics ``prm_eval/<set>_<metric>``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from eurus_prime.core.rewards import implicit_reward, prm_pairwise_accuracy
from eurus_prime.prime import prm as prm_lib
from eurus_prime.prime import rollouts as rollouts_lib
from eurus_prime.prime.config import PrimeConfig

#: The metrics that need ground-truth step labels (``prm_lib.prm_quality``'s ``prm/<name>``).
LOCALISATION = ("localisation", "error_acc", "correct_acc", "localisation_f1", "localisation_threshold")
#: The prm_eval table's metric columns, in order.
METRICS = ("ce", "pairwise_acc", "auc", *LOCALISATION)


@dataclass(frozen=True)
class PrmEvalConfig:
    """The fixed PRM evaluation set (``params:prm_eval``)."""

    prompts: int = 200
    """Validation prompts sampled (the first ones of the split)."""
    samples: int = 4
    """Samples per prompt (groups of this size give the pairwise accuracy)."""
    seed: int = 0
    """Sampling seed."""
    every: int = 5
    """Score the fixed set after iteration 0 and every this many iterations (k-1, 2k-1, ...; 0:
    never); the fresh rollouts are measured every iteration."""

    def should_score(self, iteration: int) -> bool:
        return self.every > 0 and (iteration == 0 or (iteration + 1) % self.every == 0)

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ValueError(f"prm_eval.every must be >= 0 (0: never), got {self.every}")
        if self.prompts < 1:
            raise ValueError(f"prm_eval.prompts must be >= 1, got {self.prompts}")
        if self.samples < 2:
            raise ValueError(f"prm_eval.samples must be >= 2 (pairs within a prompt), got {self.samples}")


def build_eval_set(reference: Any, prompts: pd.DataFrame, cfg: PrmEvalConfig, prime: PrimeConfig) -> pd.DataFrame:
    """Sample, grade and label the fixed set from the reference (SFT) model.

    Returns one row per sample: the rollout columns of ``rollouts_lib.generate_rollouts``, the outcome
    columns of ``rollouts_lib.verify_rollouts`` and ``ref_logprobs``."""
    rows = prompts.head(cfg.prompts)
    drawn = pd.DataFrame(
        {
            "prompt_id": [rollouts_lib.prompt_id(e) for e in rows["extra_info"]],
            "position": np.arange(len(rows)),
            "data_source": rows["data_source"].to_numpy(),
            "ability": rows["ability"].to_numpy(),
            "prompt": [list(p) for p in rows["prompt"]],
            "ground_truth": [rm["ground_truth"] for rm in rows["reward_model"]],
        }
    )
    sampling = dataclasses.replace(prime, samples_per_prompt=cfg.samples, temperature=1.0, top_p=1.0, seed=cfg.seed)
    rollouts = rollouts_lib.generate_rollouts(reference, drawn, sampling, -1, getattr(reference, "version", "") or "")
    outcomes = rollouts_lib.verify_rollouts(rollouts)
    ref = prm_lib.score_rows(
        reference.model,
        list(rollouts["prompt_ids"]),
        list(rollouts["response_ids"]),
        reference.tokenizer.pad_token_id,
        prime,
    )
    extra = outcomes.drop(columns=[c for c in outcomes.columns if c in rollouts.columns and c not in rollouts_lib.KEY])
    return rollouts.merge(extra, on=rollouts_lib.KEY, validate="one_to_one").assign(ref_logprobs=ref)


def quality(
    process_rewards: pd.DataFrame,
    rollouts: pd.DataFrame,
    outcomes: pd.DataFrame,
    tokenizer: Any,
    prime: PrimeConfig,
    n: int,
) -> dict[str, float]:
    """The metrics of ``METRICS`` for scored responses (groups of ``n`` contiguous rows)."""
    if len(process_rewards) == 0:
        return {}
    found = prm_lib.prm_quality(process_rewards, rollouts, outcomes, tokenizer, prime)
    scores = process_rewards.merge(outcomes[rollouts_lib.KEY + ["score"]], on=rollouts_lib.KEY, validate="one_to_one")
    out = {
        "ce": found["prm/ce_before"],
        "auc": found["prm/auc_before"],
        "pairwise_acc": prm_pairwise_accuracy(
            torch.tensor(scores["sequence_score"].to_numpy()), torch.tensor(scores["score"].to_numpy()), n
        ),
    }
    for key in LOCALISATION:
        if f"prm/{key}" in found:
            out[key] = found[f"prm/{key}"]
    return out


def score_eval_set(prm: Any, eval_set: pd.DataFrame, prime: PrimeConfig) -> pd.DataFrame:
    """The PRM's implicit rewards on ``eval_set`` (rows with ``prompt_ids``, ``response_ids`` and
    ``ref_logprobs``), as a ``process_rewards``-shaped table: the key, ``prm_logprobs``,
    ``implicit_reward`` and ``sequence_score``."""
    lp = prm_lib.score_rows(
        prm.model, list(eval_set["prompt_ids"]), list(eval_set["response_ids"]), prm.tokenizer.pad_token_id, prime
    )
    q = [
        implicit_reward(np.asarray(p, np.float32), np.asarray(r, np.float32), prime.beta)
        for p, r in zip(lp, eval_set["ref_logprobs"])
    ]
    return pd.DataFrame(
        {
            "prompt_id": eval_set["prompt_id"].to_numpy(),
            "sample_idx": eval_set["sample_idx"].to_numpy(),
            "prm_logprobs": lp,
            "implicit_reward": q,
            "sequence_score": [float(x.sum()) for x in q],
        }
    )


def evaluate(
    prm: Any,
    eval_set: pd.DataFrame,
    process_rewards: pd.DataFrame,
    rollouts: pd.DataFrame,
    outcomes: pd.DataFrame,
    prime: PrimeConfig,
    n_fixed: int,
    with_fixed: bool,
) -> pd.DataFrame:
    """One row per set (``fresh``, and ``fixed`` when ``with_fixed``): ``set``, ``responses`` and
    the ``METRICS`` (NaN where not defined)."""
    rows = [
        {
            "set": "fresh",
            "responses": len(process_rewards),
            **quality(process_rewards, rollouts, outcomes, prm.tokenizer, prime, prime.samples_per_prompt),
        }
    ]
    if with_fixed:
        scored = score_eval_set(prm, eval_set, prime)
        rows.append(
            {
                "set": "fixed",
                "responses": len(eval_set),
                **quality(scored, eval_set, eval_set, prm.tokenizer, prime, n_fixed),
            }
        )
    table = pd.DataFrame(rows)
    for key in METRICS:
        if key not in table:
            table[key] = np.nan
    return table[["set", "responses", *METRICS]]


def table_metrics(table: pd.DataFrame) -> dict[str, float]:
    """The ``prm_eval`` table as MLflow metrics, ``prm_eval/<set>_<metric>`` (NaN left out)."""
    return {
        f"prm_eval/{row['set']}_{k}": float(row[k])
        for row in table.to_dict("records")
        for k in METRICS
        if row[k] == row[k]
    }
