"""PRIME's policy side over tables: returns and advantages from the process and outcome rewards,
and the PPO update of the policy."""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import pandas as pd
import torch

from eurus_prime.core.advantages import advantage_estimator
from eurus_prime.core.kl import kl_penalty
from eurus_prime.core.masked import masked_mean
from eurus_prime.core.ppo import ppo_policy_loss
from eurus_prime.engines.rollout import ProgressFn
from eurus_prime.engines.train.updates import Updater
from eurus_prime.prime.batch import budget_micro_batches, forward_rows, micro_batches, pad_ragged, pad_values, unpad
from eurus_prime.prime.config import PrimeConfig, stage_seed
from eurus_prime.prime.rollouts import KEY, check_groups

log = logging.getLogger(__name__)


def _kl_in_reward(cfg: PrimeConfig) -> bool:
    return cfg.kl_coef > 0 and cfg.kl_in == "reward"


def estimate_advantages(
    prm_rewards: pd.DataFrame,
    outcomes: pd.DataFrame,
    cfg: PrimeConfig,
    process_rewards: pd.DataFrame | None = None,
    values: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Returns and advantages by ``prime.advantage_estimator`` (``core.advantages``; ``rloo``, the
    default, is PRIME's). With ``kl_coef > 0`` and ``kl_in: reward`` the per-token penalty
    ``kl_coef * KL(old policy, reference)`` comes from ``process_rewards``' log-probs. ``gae``
    takes the critic's ``values`` table (``critic.compute_values``).

    Returns one row per selected rollout: the key, ``outcome`` (verifier score), ``process_return``
    (the sum of the token rewards), ``returns`` and ``advantages`` (per token), and with the KL in
    the reward ``kl`` (the row's token-mean KL estimate).
    """
    data = prm_rewards.merge(outcomes[KEY + ["score"]], on=KEY, how="left", validate="one_to_one")
    check_groups(data, cfg.samples_per_prompt, "estimate_advantages")
    kl_columns: dict[str, list[float]] = {"kl": []} if _kl_in_reward(cfg) else {}
    cols = {
        "prompt_id": data["prompt_id"].to_numpy(),
        "sample_idx": data["sample_idx"].to_numpy(),
        "outcome": data["score"].to_numpy(dtype=np.float64),
    }
    if len(data) == 0:
        return pd.DataFrame({**cols, "process_return": [], "returns": [], "advantages": [], **kl_columns})
    rewards, mask, lengths = pad_ragged(list(data["token_rewards"]))
    outcome = torch.tensor(cols["outcome"], dtype=torch.float32)
    penalty = None
    if kl_columns:
        if process_rewards is None:
            raise ValueError(
                "estimate_advantages: prime.kl_in = 'reward' needs the process_rewards table "
                "(old-policy and reference log-probs)"
            )
        logp = data[KEY].merge(
            process_rewards[KEY + ["old_logprobs", "ref_logprobs"]], on=KEY, how="left", validate="one_to_one"
        )
        if logp["old_logprobs"].isna().any():
            r = logp[logp["old_logprobs"].isna()].iloc[0]
            raise ValueError(
                f"estimate_advantages: rollout ({r.prompt_id}, {r.sample_idx}) has no row in "
                "process_rewards; rerun compute_process_rewards for this iteration"
            )
        kl = (
            kl_penalty(
                pad_values(list(logp["old_logprobs"]), mask.shape[1]),
                pad_values(list(logp["ref_logprobs"]), mask.shape[1]),
                cfg.kl_estimator,
            )
            * mask
        )
        penalty = cfg.kl_coef * kl
        kl_columns["kl"] = (kl.sum(-1) / mask.sum(-1).clamp(min=1)).tolist()
    estimate = advantage_estimator(cfg.advantage_estimator)
    gamma: dict[str, Any] = {"process_gamma": cfg.process_gamma} if cfg.advantage_estimator == "rloo" else {}
    if cfg.needs_critic:
        if values is None:
            raise ValueError(
                f"estimate_advantages: prime.advantage_estimator = {cfg.advantage_estimator!r} needs the "
                "critic's values: run the prime_iteration_ppo pipeline (eurus-prime train picks it)"
            )
        v = data[KEY].merge(values[KEY + ["values"]], on=KEY, how="left", validate="one_to_one")
        if v["values"].isna().any():
            r = v[v["values"].isna()].iloc[0]
            raise ValueError(
                f"estimate_advantages: rollout ({r.prompt_id}, {r.sample_idx}) has no critic value; "
                "rerun compute_values for this iteration"
            )
        gamma = {"values": pad_values(list(v["values"]), mask.shape[1]), "gamma": cfg.gae_gamma, "lam": cfg.gae_lambda}
    returns, adv = estimate(
        rewards,
        outcome,
        mask,
        cfg.samples_per_prompt,
        process_coef=cfg.process_coef,
        outcome_coef=cfg.outcome_coef,
        token_penalty=penalty,
        **gamma,
    )
    return pd.DataFrame(
        {
            **cols,
            "process_return": [float(np.sum(x)) for x in data["token_rewards"]],
            "returns": unpad(returns, lengths),
            "advantages": unpad(adv, lengths),
            **kl_columns,
        }
    )


def advantage_metrics(adv: pd.DataFrame) -> dict[str, float]:
    if len(adv) == 0:
        return {"adv/skipped": 1.0}
    a = np.concatenate(list(adv["advantages"]))
    r = np.concatenate(list(adv["returns"]))
    metrics = {
        "adv/advantages_mean": float(a.mean()),
        "adv/advantages_max": float(a.max()),
        "adv/advantages_min": float(a.min()),
        "adv/returns_mean": float(r.mean()),
        "adv/returns_max": float(r.max()),
        "adv/returns_min": float(r.min()),
    }
    if "kl" in adv:
        metrics["adv/kl"] = float(adv["kl"].mean())  # KL(old policy, reference) in the reward: mean over rows
    return metrics


def check_policy_versions(rollouts: pd.DataFrame, n: int, policy_version: str) -> None:
    """Refuse to train on groups whose samples came from different policies, or from a policy
    other than the one being updated (PPO's ratio would be against the wrong old policy)."""
    versions = rollouts["policy_version"].to_numpy()
    if len(versions) % n == 0 and len(versions):
        grouped = versions.reshape(-1, n)
        mixed = (grouped != grouped[:, :1]).any(1)
        if mixed.any():
            pid = rollouts["prompt_id"].to_numpy().reshape(-1, n)[mixed][0, 0]
            raise ValueError(
                f"prompt {pid}: its samples came from different policy versions "
                f"{sorted(set(grouped[mixed][0]))}; an RLOO group must share one policy"
            )
    stale = sorted(set(versions) - {policy_version})
    if stale:
        raise ValueError(
            f"rollouts came from policy {stale[0]} but the policy being updated is "
            f"{policy_version}; rerun generate_rollouts for this iteration first"
        )


def shuffled_passes(
    updater: Updater,
    data: pd.DataFrame,
    cfg: PrimeConfig,
    iteration: int,
    stage: str,
    loss_of: Any,
    diagnostics: Any,
    on_progress: ProgressFn | None,
    what: str,
) -> list[dict[str, Any]]:
    """PPO's passes over ``data``'s rows (the policy's and the critic's): ``ppo_epochs`` passes in
    an order shuffled by the (iteration, ``stage``) seed, one optimizer step per mini-batch of
    ``ppo_mini_batch`` rows. Returns one stats row per step: ``iteration``, ``epoch``, ``step``,
    ``responses``, ``diagnostics(step result)``, ``grad_norm``, ``skipped``."""
    rng = random.Random(stage_seed(cfg, iteration, stage))
    stats: list[dict[str, Any]] = []
    steps = cfg.ppo_epochs * -(-len(data) // cfg.ppo_mini_batch)
    for epoch in range(cfg.ppo_epochs if len(data) else 0):
        order = list(range(len(data)))
        rng.shuffle(order)
        for mb in micro_batches(order, cfg.ppo_mini_batch):
            # Not sorted by length: pg_loss is a token mean per micro-batch (as in the reference),
            # so length-sorted micro-batches would weigh a long response's tokens less than random
            # ones do. A token cap cuts the shuffled order where the next row would pass it.
            micros = budget_micro_batches(
                mb, data.prompt_ids, data.response_ids, cfg.micro_batch, cfg.micro_batch_tokens
            )
            done = updater.step(mb, micros, loss_of, step=len(stats), epoch=epoch)
            stats.append(
                {
                    "iteration": iteration,
                    "epoch": epoch,
                    "step": len(stats),
                    "responses": len(mb),
                    **diagnostics(done),
                    "grad_norm": done.grad_norm,
                    "skipped": done.skipped,
                }
            )
            if on_progress is not None:
                on_progress(len(stats), steps, what)
    return stats


def update_policy(
    policy: Any,
    rollouts: pd.DataFrame,
    process_rewards: pd.DataFrame,
    advantages: pd.DataFrame,
    cfg: PrimeConfig,
    iteration: int,
    on_progress: ProgressFn | None = None,
) -> tuple[object, pd.DataFrame]:
    """PPO's clipped objective over the selected batch: ``ppo_epochs`` shuffled passes in
    mini-batches of ``ppo_mini_batch`` responses.

    The objective is ``pg_loss - entropy_coef * entropy``, plus ``kl_coef * kl`` with
    ``prime.kl_in: loss``. Returns ``(policy, ppo_stats)``, one stats row per mini-batch:
    ``pg_loss``, ``pg_clipfrac``, ``ppo_kl``, ``entropy``, ``kl`` (token-mean
    ``prime.kl_estimator`` KL of the policy to the reference, measured whatever ``kl_coef``),
    ``grad_norm``, ``skipped`` (a non-finite loss or gradient norm: no optimizer step, see
    ``prime.nonfinite``).
    """
    data = advantages.merge(process_rewards[KEY + ["old_logprobs", "ref_logprobs"]], on=KEY, validate="one_to_one")
    data = data.merge(rollouts[KEY + ["prompt_ids", "response_ids", "policy_version"]], on=KEY, validate="one_to_one")
    check_groups(data, cfg.samples_per_prompt, "update_policy")
    check_policy_versions(data, cfg.samples_per_prompt, getattr(policy, "version", ""))
    pad = policy.tokenizer.pad_token_id
    updater = Updater(
        policy,
        backend=cfg.trainer_backend,
        lr=cfg.policy_lr,
        weight_decay=cfg.policy_weight_decay,
        grad_clip=cfg.policy_grad_clip,
        micro_batch=cfg.micro_batch,
        deepspeed=cfg.deepspeed,
        gradient_checkpointing=cfg.gradient_checkpointing,
        nonfinite=cfg.nonfinite,
        label=f"update_policy: iteration {iteration}",
    )
    kl_in_loss = cfg.kl_coef > 0 and cfg.kl_in == "loss"

    def loss_of(micro: list[int], live: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``pg_loss - entropy_coef * entropy (+ kl_coef * kl)`` of the micro-batch's rows."""
        packed, logp, entropy = forward_rows(
            updater.model, data.prompt_ids, data.response_ids, micro, pad, grad=True, return_entropy=True
        )
        width = packed.response_width
        mask = packed.response_mask.float()
        old = pad_values([data.old_logprobs[i] for i in micro], width)
        adv = pad_values([data.advantages[i] for i in micro], width)
        pg_loss, diag = ppo_policy_loss(logp, old, adv, mask, clip_ratio=cfg.clip_ratio)
        ent = masked_mean(entropy, mask)
        ref = pad_values([data.ref_logprobs[i] for i in micro], width)
        with torch.set_grad_enabled(kl_in_loss):  # measured either way: ppo_stats' kl
            kl = masked_mean(kl_penalty(logp, ref, cfg.kl_estimator), mask)
        objective = pg_loss - cfg.entropy_coef * ent
        if kl_in_loss:
            objective = objective + cfg.kl_coef * kl
        return objective, {"pg_loss": pg_loss, "entropy": ent, "kl": kl, **diag}

    stats = shuffled_passes(
        updater,
        data,
        cfg,
        iteration,
        "ppo",
        loss_of,
        lambda done: {k: done.sums[k] for k in ("pg_loss", "pg_clipfrac", "ppo_kl", "entropy", "kl")},
        on_progress,
        "PPO optimizer steps",
    )
    if not len(data):
        log.warning(
            "update_policy: iteration %d has no selected prompt groups; the policy is "
            "passed on unchanged (the step is skipped)",
            iteration,
        )
    policy.model, policy.optimizer_state = updater.finish()
    cols = [
        "iteration",
        "epoch",
        "step",
        "responses",
        "pg_loss",
        "pg_clipfrac",
        "ppo_kl",
        "entropy",
        "kl",
        "grad_norm",
        "skipped",
    ]
    return policy, pd.DataFrame(stats, columns=cols).astype({"skipped": bool})


def ppo_metrics(stats: pd.DataFrame) -> dict[str, float]:
    """Means over the optimizer steps taken, and ``ppo/skipped_steps`` (non-finite mini-batches);
    ``ppo/skipped`` = 1 when there was nothing to train on."""
    if len(stats) == 0:
        return {"ppo/skipped": 1.0}
    skipped = stats["skipped"].to_numpy(dtype=bool) if "skipped" in stats else np.zeros(len(stats), bool)
    taken = stats[~skipped]
    metrics = {"ppo/skipped_steps": float(skipped.sum())}
    if len(taken):
        metrics.update(
            {
                f"ppo/{k}": float(taken[k].mean())
                for k in ("pg_loss", "pg_clipfrac", "ppo_kl", "entropy", "kl", "grad_norm")
                if k in taken
            }
        )
    return metrics
