"""PPO's critic over tables (``prime.advantage_estimator: gae``): its values for the selected
rollouts before the update, and its update on the GAE returns.

The critic is a value model (``engines/values.py``) that starts as the SFT model's body with a
zeroed scalar head. Per iteration: ``compute_values`` scores the selected rollouts (the values
GAE uses, and the "old values" the clipped value loss is anchored to), ``estimate_advantages``
turns them into advantages and returns, and ``update_critic`` regresses the critic on those
returns with PPO's clipped value loss, in ``ppo_epochs`` shuffled passes of ``ppo_mini_batch``
responses (verl's critic: the actor's mini-batching, its own learning rate).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch

from eurus_prime.core.ppo import value_loss
from eurus_prime.engines.rollout import ProgressFn
from eurus_prime.engines.train.updates import Updater
from eurus_prime.engines.values import sequence_values
from eurus_prime.prime.batch import Packed, budget_micro_batches, pack, pad_values, unpad
from eurus_prime.prime.config import PrimeConfig
from eurus_prime.prime.policy import shuffled_passes
from eurus_prime.prime.rollouts import KEY, check_groups, selected_rollouts

log = logging.getLogger(__name__)

STATS_COLUMNS = ["iteration", "epoch", "step", "responses", "vf_loss", "vf_clipfrac", "grad_norm", "skipped"]


def _forward(
    model: Any, prompt_ids: Any, response_ids: Any, rows: list[int], pad_id: int, grad: bool
) -> tuple[Packed, torch.Tensor]:
    packed = pack([prompt_ids[i] for i in rows], [response_ids[i] for i in rows], pad_id)
    values = sequence_values(model, packed.input_ids, packed.attention_mask, packed.response_width, grad=grad)
    return packed, values


@torch.no_grad()
def compute_values(
    critic: Any,
    rollouts: pd.DataFrame,
    filter_report: pd.DataFrame,
    cfg: PrimeConfig,
    on_progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """The critic's value of every response token's state, for the selected rollouts.

    Returns one row per selected rollout: the key, ``critic_version`` (the checkpoint that scored
    it) and ``values`` (one float per response token).
    """
    rows = selected_rollouts(rollouts, filter_report)
    check_groups(rows, cfg.samples_per_prompt, "compute_values")
    p_ids, r_ids = list(rows["prompt_ids"]), list(rows["response_ids"])
    pad = critic.tokenizer.pad_token_id
    model = critic.model
    was_training = model.training
    model.eval()
    out: list[np.ndarray | None] = [None] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(p_ids[i]) + len(r_ids[i]))
    micros = budget_micro_batches(order, p_ids, r_ids, cfg.micro_batch, cfg.micro_batch_tokens)
    for done, micro in enumerate(micros, 1):
        _, values = _forward(model, p_ids, r_ids, micro, pad, grad=False)
        for row, v in zip(micro, unpad(values, [len(r_ids[i]) for i in micro])):
            out[row] = v
        if on_progress is not None:
            on_progress(done, len(micros), "critic micro-batches")
    model.train(was_training)
    return pd.DataFrame(
        {
            "prompt_id": rows["prompt_id"].to_numpy(),
            "sample_idx": rows["sample_idx"].to_numpy(),
            "critic_version": getattr(critic, "version", ""),
            "values": out,
        }
    )


def update_critic(
    critic: Any,
    rollouts: pd.DataFrame,
    values: pd.DataFrame,
    advantages: pd.DataFrame,
    cfg: PrimeConfig,
    iteration: int,
    on_progress: ProgressFn | None = None,
) -> tuple[object, pd.DataFrame]:
    """PPO's clipped value loss (``core.ppo.value_loss``, ``prime.value_clip``) against the GAE
    returns, from the values ``compute_values`` gave this critic. Returns ``(critic,
    critic_stats)``, one stats row per mini-batch: ``vf_loss``, ``vf_clipfrac``, ``grad_norm``,
    ``skipped``."""
    data = advantages[KEY + ["returns"]].merge(
        values[KEY + ["critic_version", "values"]], on=KEY, validate="one_to_one"
    )
    data = data.merge(rollouts[KEY + ["prompt_ids", "response_ids"]], on=KEY, validate="one_to_one")
    if len(data) != len(advantages):
        raise ValueError(
            f"update_critic: {len(advantages) - len(data)} advantage rows have no values row; "
            "rerun compute_values for this iteration"
        )
    stale = sorted(set(data["critic_version"]) - {getattr(critic, "version", "")})
    if stale:
        raise ValueError(
            f"update_critic: the values came from critic {stale[0]}, but the critic being updated is "
            f"{getattr(critic, 'version', '')}; rerun compute_values for this iteration"
        )
    pad = critic.tokenizer.pad_token_id
    updater = Updater(
        critic,
        backend=cfg.trainer_backend,
        lr=cfg.critic_lr,
        weight_decay=cfg.policy_weight_decay,
        grad_clip=cfg.policy_grad_clip,
        micro_batch=cfg.micro_batch,
        deepspeed=cfg.deepspeed,
        gradient_checkpointing=cfg.gradient_checkpointing,
        nonfinite=cfg.nonfinite,
        label=f"update_critic: iteration {iteration}",
    )

    def loss_of(micro: list[int], live: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        packed, v = _forward(updater.model, data.prompt_ids, data.response_ids, micro, pad, grad=True)
        width = packed.response_width
        mask = packed.response_mask.float()
        old = pad_values([data["values"][i] for i in micro], width)
        ret = pad_values([data.returns[i] for i in micro], width)
        loss, diag = value_loss(v, old, ret, mask, clip_range=cfg.value_clip)
        return loss, diag

    stats = shuffled_passes(
        updater,
        data,
        cfg,
        iteration,
        "critic",
        loss_of,
        lambda done: {"vf_loss": done.loss, "vf_clipfrac": done.sums["vf_clipfrac"]},
        on_progress,
        "critic optimizer steps",
    )
    critic.model, critic.optimizer_state = updater.finish()
    return critic, pd.DataFrame(stats, columns=STATS_COLUMNS).astype({"skipped": bool})


def critic_metrics(values: pd.DataFrame, advantages: pd.DataFrame, stats: pd.DataFrame) -> dict[str, float]:
    """``critic/...``: the value loss and clip share (means over the steps taken), the mean value,
    and the share of the returns' variance the values explain (verl's ``critic/vf_explained_var``)."""
    metrics: dict[str, float] = {}
    if len(stats):
        taken = stats[~stats["skipped"].to_numpy(dtype=bool)]
        metrics["critic/skipped_steps"] = float(len(stats) - len(taken))
        if len(taken):
            metrics["critic/vf_loss"] = float(taken["vf_loss"].mean())
            metrics["critic/vf_clipfrac"] = float(taken["vf_clipfrac"].mean())
            metrics["critic/grad_norm"] = float(taken["grad_norm"].mean())
    joined = advantages[KEY + ["returns"]].merge(values[KEY + ["values"]], on=KEY)
    if len(joined):
        v = torch.tensor(np.concatenate(list(joined["values"])), dtype=torch.float64)
        r = torch.tensor(np.concatenate(list(joined["returns"])), dtype=torch.float64)
        metrics["critic/values_mean"] = float(v.mean())
        var = float(r.var()) if r.numel() > 1 else 0.0
        if var > 0:
            metrics["critic/vf_explained_var"] = 1.0 - float((r - v).var()) / var
    return metrics
