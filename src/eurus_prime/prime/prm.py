"""PRIME's implicit process reward model over tables: score the selected rollouts, update the PRM
with its outcome loss, and turn its log-probs into the token rewards the advantages use.

The implicit process reward of a token is ``beta * (log pi_prm - log pi_ref)``
(``core.rewards.implicit_reward``); the PRM is trained as an outcome reward model on the sum of
these (``core.rewards.prm_loss``, or ``prm_dpo_loss``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import torch

from eurus_prime.core.prm_eval import first_error_localisation, roc_auc
from eurus_prime.core.rewards import (
    implicit_process_rewards,
    implicit_reward,
    implicit_sequence_score,
    oracle_process_rewards,
    prm_dpo_baseline,
    prm_dpo_loss,
    prm_loss,
    prm_pairwise_accuracy,
    progress_process_rewards,
)
from eurus_prime.engines import spmd
from eurus_prime.engines.rollout import ProgressFn
from eurus_prime.engines.train.updates import Updater
from eurus_prime.prime.batch import (
    budget_micro_batches,
    forward_rows,
    micro_batches,
    pad_ragged,
    pad_values,
    score_responses,
    scoring_micro_batches,
    unpad,
)
from eurus_prime.prime.config import PrimeConfig, stage_seed
from eurus_prime.prime.rollouts import KEY, check_groups, selected_rollouts
from eurus_prime.tasks.steps import span_tokens, token_steps
from eurus_prime.tasks.tokens import token_pieces

log = logging.getLogger(__name__)


def compute_process_rewards(
    policy: Any,
    prm: Any,
    reference: Any,
    rollouts: pd.DataFrame,
    report: pd.DataFrame,
    cfg: PrimeConfig,
    on_progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """Token log-probs of the selected rollouts under the old policy, the PRM and the reference,
    each computed once, and the implicit process reward under the PRM as it was loaded.

    Returns one row per selected rollout: the key, ``old_logprobs``, ``ref_logprobs``,
    ``prm_logprobs``, ``implicit_reward`` (beta * (prm - ref) per token, not normalised) and
    ``sequence_score`` (its sum).
    """
    rows = selected_rollouts(rollouts, report)
    pad = policy.tokenizer.pad_token_id
    p_ids, r_ids = list(rows["prompt_ids"]), list(rows["response_ids"])
    cache: dict[str, list[np.ndarray]] = {}

    def score(ckpt: Any) -> list[np.ndarray]:
        # Iteration 0 starts policy, PRM and reference from the same checkpoint: score it once.
        key = getattr(ckpt, "version", None) or str(id(ckpt))
        if key not in cache:
            cache[key] = score_rows(ckpt.model, p_ids, r_ids, pad, cfg, on_progress)
        return cache[key]

    old = _sampling_logprobs(policy, rows, cfg)
    if old is None:
        old = score(policy)
    ref = old if cfg.ref_type == "policy" else score(reference)
    prm_lp = score(prm)
    q = [implicit_reward(a, b, cfg.beta) for a, b in zip(prm_lp, ref)]
    return pd.DataFrame(
        {
            "prompt_id": rows["prompt_id"].to_numpy(),
            "sample_idx": rows["sample_idx"].to_numpy(),
            "old_logprobs": old,
            "ref_logprobs": ref,
            "prm_logprobs": prm_lp,
            "implicit_reward": q,
            "sequence_score": [float(x.sum()) for x in q],
        }
    )


def score_rows(
    model: Any,
    prompt_ids: list[Any],
    response_ids: list[Any],
    pad_id: int,
    cfg: PrimeConfig,
    on_progress: ProgressFn | None = None,
) -> list[np.ndarray]:
    """A scoring pass (``score_responses``) on ``prime.score_device`` with the config's
    micro-batching. In an SPMD campaign the ranks share the micro-batches, each scoring a block of
    them exactly as one process would (same rows, same padding), and every rank gets every row
    (``engines.spmd.map_shards``): the log-probs do not depend on the number of ranks."""

    def score(rows: Sequence[int]) -> list[np.ndarray]:
        return score_responses(
            model,
            [prompt_ids[i] for i in rows],
            [response_ids[i] for i in rows],
            pad_id,
            cfg.micro_batch,
            cfg.micro_batch_tokens,
            on_progress,
        )

    if spmd.group()[1] == 1:
        with _on_device(model, cfg.score_device):
            return score(range(len(prompt_ids)))
    micros = scoring_micro_batches(prompt_ids, response_ids, cfg.micro_batch, cfg.micro_batch_tokens)

    def block(ks: list[int]) -> list[list[np.ndarray]]:
        with _on_device(model, cfg.score_device):
            return [score(micros[k]) for k in ks]

    out: list[np.ndarray | None] = [None] * len(prompt_ids)
    for k, values in enumerate(spmd.map_shards(list(range(len(micros))), block)):
        for row, v in zip(micros[k], values):
            out[row] = v
    return out  # type: ignore[return-value]


@contextmanager
def _on_device(model: Any, device: str | None) -> Iterator[None]:
    """Run the block with ``model`` on ``device`` (``prime.score_device``), then put it back: the
    checkpoints stay in host memory and the GPU holds one model at a time."""
    if device is None:
        yield
        return
    home = next(model.parameters()).device
    model.to(device)
    try:
        yield
    finally:
        model.to(home)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


#: Rows of the teacher-forced check before the sampling log-probs are reused.
REUSE_CHECK_ROWS = 16


def _sampling_logprobs(policy: Any, rows: pd.DataFrame, cfg: PrimeConfig) -> list[np.ndarray] | None:
    """The rollouts' sampling log-probs as the old policy's, when they are its own: temperature 1,
    top-p 1, present for every row, and within ``cfg.logprob_reuse_tol`` of a teacher-forced pass
    over the ``REUSE_CHECK_ROWS`` longest rows (where cache drift would show first). None
    otherwise: the caller scores the policy."""
    if not cfg.reuse_sampling_logprobs or len(rows) == 0:
        return None
    if cfg.temperature != 1.0 or cfg.top_p != 1.0:
        return None  # sampled from a tempered / truncated distribution, not the policy's
    if "sampling_logprobs" not in rows or rows["sampling_logprobs"].isna().any():
        return None
    sampled = [np.asarray(x, dtype=np.float32) for x in rows["sampling_logprobs"]]
    r_ids = list(rows["response_ids"])
    if any(len(a) != len(r) for a, r in zip(sampled, r_ids)):
        log.warning(
            "compute_process_rewards: sampling_logprobs and response_ids differ in length; "
            "scoring the old policy instead"
        )
        return None
    longest = sorted(range(len(rows)), key=lambda i: -len(r_ids[i]))[: min(cfg.micro_batch, REUSE_CHECK_ROWS)]
    p_ids = list(rows["prompt_ids"])
    check = score_rows(
        policy.model, [p_ids[i] for i in longest], [r_ids[i] for i in longest], policy.tokenizer.pad_token_id, cfg
    )
    drift = max((float(np.abs(c - sampled[i]).max()) for c, i in zip(check, longest) if len(c)), default=0.0)
    if drift > cfg.logprob_reuse_tol:
        log.warning(
            "compute_process_rewards: sampling log-probs differ from the policy's teacher-forced "
            "log-probs by up to %.3g > prime.logprob_reuse_tol=%.3g: scoring the old policy instead",
            drift,
            cfg.logprob_reuse_tol,
        )
        return None
    log.info(
        "compute_process_rewards: old-policy log-probs from the sampler (max |diff| %.2g on %d rows)",
        drift,
        len(longest),
    )
    return sampled


def _joined(rollouts: pd.DataFrame, process_rewards: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    joined = process_rewards.merge(
        rollouts[KEY + ["prompt_ids", "response_ids", "policy_version"]], on=KEY, how="left", validate="one_to_one"
    )
    joined = joined.merge(outcomes[KEY + ["score"]], on=KEY, how="left", validate="one_to_one")
    missing = joined["response_ids"].isna() | joined["score"].isna()
    if missing.any():
        r = joined[missing].iloc[0]
        raise ValueError(
            f"process_rewards row ({r.prompt_id}, {r.sample_idx}) has no rollout or outcome; "
            "rerun the earlier stages of this iteration"
        )
    return joined


def update_prm(
    prm: Any,
    rollouts: pd.DataFrame,
    process_rewards: pd.DataFrame,
    outcomes: pd.DataFrame,
    cfg: PrimeConfig,
    iteration: int,
    on_progress: ProgressFn | None = None,
) -> tuple[object, pd.DataFrame, pd.DataFrame]:
    """One pass of the PRM's loss (``prime.prm_loss``) over the selected batch, and the process rewards the
    advantage step uses (``cfg.prm_update`` says from which forward pass, see PrimeConfig).

    Returns ``(prm, prm_rewards, prm_stats)``: the updated checkpoint; one row per selected rollout
    with ``prm_logprobs`` (as used), ``token_rewards`` (normalised process rewards) and
    ``sequence_score``; one row per mini-batch with ``loss``, ``grad_norm`` and ``skipped`` (a
    non-finite loss or gradient norm: no optimizer step, see ``prime.nonfinite``).
    """
    stats_columns = ["iteration", "step", "responses", "loss", "grad_norm", "skipped"]
    if cfg.prm_frozen(iteration):
        log.info(
            "update_prm: iteration %d: the PRM is frozen (prime.prm_freeze_after=%s); its rewards are "
            "those compute_process_rewards scored",
            iteration,
            cfg.prm_freeze_after,
        )
        data = _joined(rollouts, process_rewards, outcomes)
        return (
            prm,
            _prm_table(data, [np.asarray(x, dtype=np.float32) for x in data.prm_logprobs], cfg),
            pd.DataFrame(columns=stats_columns).astype({"skipped": bool}),
        )
    data = _joined(rollouts, process_rewards, outcomes)
    check_groups(data, cfg.samples_per_prompt, "update_prm")
    pad = prm.tokenizer.pad_token_id
    updater = _updater(prm, cfg, f"update_prm: iteration {iteration}")
    n_rows = len(data)
    order = list(range(n_rows))
    random.Random(stage_seed(cfg, iteration, "prm")).shuffle(order)
    used: list[np.ndarray | None] = [None] * n_rows
    # prm_loss dpo: each sample's opponents' mean score, from the PRM as loaded (before the update)
    dpo_baseline = (
        prm_dpo_baseline(
            torch.tensor(data.sequence_score.to_numpy(), dtype=torch.float32),
            torch.tensor(data.score.to_numpy()),
            cfg.samples_per_prompt,
        )
        if cfg.prm_loss == "dpo" and n_rows
        else None
    )

    def loss_of(micro: list[int], live: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        packed, logp = forward_rows(updater.model, data.prompt_ids, data.response_ids, micro, pad, grad=True)
        ref = pad_values([data.ref_logprobs[i] for i in micro], packed.response_width)
        acc = torch.tensor(data.score.to_numpy()[micro], dtype=torch.float32)
        mask = packed.response_mask.float()
        if dpo_baseline is None:
            loss = prm_loss(logp, ref, mask, acc, beta=cfg.beta)
        else:
            loss = prm_dpo_loss(logp, ref, mask, acc, dpo_baseline[micro], beta=cfg.beta)
        if cfg.prm_update == "after" and live:
            # Before the first optimizer step the PRM is the one compute_process_rewards scored:
            # reuse those values (at iteration 0 they equal the reference's exactly, so the
            # rewards are exactly 0 as in the reference, not float noise that batch_norm would
            # blow up to O(1)).
            fresh = unpad(logp, [len(data.response_ids[i]) for i in micro])
            for i, v in zip(micro, fresh):
                used[i] = np.asarray(data.prm_logprobs[i], dtype=np.float32) if updater.taken == 0 else v
        return loss, {}

    stats = []
    steps = -(-n_rows // cfg.prm_mini_batch)
    for step, mb in enumerate(micro_batches(order, cfg.prm_mini_batch)):
        # The loss is a mean over sequences, so how the mini-batch splits into micro-batches (and
        # ranks) does not change it: split by length, so that each micro-batch pads to rows like its own.
        by_length = sorted(mb, key=lambda i: len(data.prompt_ids[i]) + len(data.response_ids[i]))
        micros = budget_micro_batches(
            by_length, data.prompt_ids, data.response_ids, cfg.micro_batch, cfg.micro_batch_tokens
        )
        done = updater.step(mb, micros, loss_of, step=step)
        stats.append(
            {
                "iteration": iteration,
                "step": step,
                "responses": len(mb),
                "loss": done.loss,
                "grad_norm": done.grad_norm,
                "skipped": done.skipped,
            }
        )
        if on_progress is not None:
            on_progress(step + 1, steps, "PRM optimizer steps")
    if cfg.prm_update == "after" and updater.world_size > 1:
        for part in updater.gather({i: v for i, v in enumerate(used) if v is not None}):
            for i, v in part.items():
                used[i] = v
    prm.model, prm.optimizer_state = updater.finish()
    if cfg.prm_update == "before" and n_rows:
        scored = score_responses(
            prm.model,
            list(data.prompt_ids),
            list(data.response_ids),
            pad,
            cfg.micro_batch,
            cfg.micro_batch_tokens,
            on_progress=on_progress,
        )
    else:
        scored = [u for u in used if u is not None]
        if len(scored) != n_rows:
            raise RuntimeError(f"update_prm: {n_rows - len(scored)} of {n_rows} rows got no PRM log-probs")
    return prm, _prm_table(data, scored, cfg), pd.DataFrame(stats, columns=stats_columns).astype({"skipped": bool})


def _updater(checkpoint: Any, cfg: PrimeConfig, label: str) -> Updater:
    """The optimizer steps of the PRM update (``engines/train/updates.py``)."""
    return Updater(
        checkpoint,
        backend=cfg.trainer_backend,
        lr=cfg.prm_lr,
        weight_decay=cfg.prm_weight_decay,
        grad_clip=cfg.prm_grad_clip,
        micro_batch=cfg.micro_batch,
        deepspeed=cfg.deepspeed,
        gradient_checkpointing=cfg.gradient_checkpointing,
        nonfinite=cfg.nonfinite,
        label=label,
    )


def _prm_table(data: pd.DataFrame, used: Sequence[np.ndarray], cfg: PrimeConfig) -> pd.DataFrame:
    """The ``prm_rewards`` table from the PRM log-probs the rewards use."""
    return pd.DataFrame(
        {
            "prompt_id": data["prompt_id"].to_numpy(),
            "sample_idx": data["sample_idx"].to_numpy(),
            "prm_update": cfg.prm_update,
            "prm_logprobs": used,
            "token_rewards": _normalised_rewards(used, list(data.ref_logprobs), cfg) if len(data) else [],
            "sequence_score": [implicit_sequence_score(u, r, cfg.beta) for u, r in zip(used, data.ref_logprobs)],
            "process_reward": "implicit",  # stages.oracle_rewards replaces the rewards and says so here
        }
    )


def _normalised_rewards(
    prm_lp: Sequence[np.ndarray], ref_lp: Sequence[np.ndarray], cfg: PrimeConfig
) -> list[np.ndarray]:
    prm, mask, lengths = pad_ragged(prm_lp)
    r = implicit_process_rewards(
        prm,
        pad_values(ref_lp, mask.shape[1]),
        mask,
        beta=cfg.beta,
        granularity=cfg.granularity,
        normalisation=cfg.normalisation,
    )
    return unpad(r, lengths)


def prm_metrics(
    process_rewards: pd.DataFrame,
    prm_rewards: pd.DataFrame,
    outcomes: pd.DataFrame,
    stats: pd.DataFrame,
    cfg: PrimeConfig,
) -> dict[str, float]:
    """``prm/loss``, ``prm/grad_norm`` (means over the steps taken), ``prm/skipped_steps``
    (non-finite mini-batches), ``prm/acc_before`` (pairwise accuracy of the PRM as loaded, on this
    batch it has not trained on) and, for ``prm_update: before``, ``prm/acc_after``."""
    if len(process_rewards) == 0:
        return {"prm/skipped": 1.0}
    acc = process_rewards[KEY].merge(outcomes[KEY + ["score"]], on=KEY)["score"].to_numpy()
    n = cfg.samples_per_prompt
    skipped = stats["skipped"].to_numpy(dtype=bool) if "skipped" in stats else np.zeros(len(stats), bool)
    metrics = {"prm/skipped_steps": float(skipped.sum())}
    if (~skipped).any():
        metrics["prm/loss"] = float(stats["loss"][~skipped].mean())
        metrics["prm/grad_norm"] = float(stats["grad_norm"][~skipped].mean())
    metrics["prm/acc_before"] = prm_pairwise_accuracy(
        torch.tensor(process_rewards["sequence_score"].to_numpy()), torch.tensor(acc), n
    )
    if cfg.prm_update == "before":
        metrics["prm/acc_after"] = prm_pairwise_accuracy(
            torch.tensor(prm_rewards["sequence_score"].to_numpy()), torch.tensor(acc), n
        )
    return metrics


def _labelled(table: pd.DataFrame, rollouts: pd.DataFrame, outcomes: pd.DataFrame, what: str) -> pd.DataFrame:
    """``table`` joined with each rollout's response tokens and ground-truth process label."""
    data = table.merge(rollouts[KEY + ["response_ids", "data_source"]], on=KEY, how="left", validate="one_to_one")
    cols = [c for c in ("score", "first_wrong_step", "n_steps", "step_spans", "wrong_span") if c in outcomes]
    data = data.merge(outcomes[KEY + cols], on=KEY, how="left", validate="one_to_one")
    if "first_wrong_step" not in data or data["first_wrong_step"].isna().any():
        bad = data[data["first_wrong_step"].isna()].iloc[0] if "first_wrong_step" in data else data.iloc[0]
        raise ValueError(
            f"{what} needs ground-truth step labels, but rollout ({bad.prompt_id}, {bad.sample_idx}) of "
            f"data_source {bad.data_source!r} has none: only worlds with a step checker have them "
            "(verifiers/process.py: the chains world, conf/chains)"
        )
    return data


def oracle_rewards(
    prm_rewards: pd.DataFrame, rollouts: pd.DataFrame, outcomes: pd.DataFrame, tokenizer: Any, kind: str = "oracle"
) -> pd.DataFrame:
    """``prm_rewards`` with ``token_rewards`` replaced by a ground-truth process reward
    (``prime.process_reward``), from each rollout's first wrong step:

    - ``oracle``: -1 spread over the tokens blamed for the first wrong step (its first wrong
      field, ``core.rewards.oracle_process_rewards``);
    - ``oracle_progress``: +1/n_steps spread over the tokens of every step before the first wrong
      one (all steps of a right rollout), so a rollout earns the share of its steps it got right
      before erring (``core.rewards.progress_process_rewards``).

    Their returns are at most 1 in size already, so no batch normalisation follows.
    ``sequence_score`` stays the PRM's."""
    if len(prm_rewards) == 0:
        return prm_rewards.assign(process_reward=kind)
    data = _labelled(prm_rewards, rollouts, outcomes, f"prime.process_reward: {kind}")
    marks = []
    for ids, k, span, spans in zip(
        data["response_ids"], data["first_wrong_step"], data["wrong_span"], data["step_spans"]
    ):
        pieces = token_pieces(tokenizer, ids)
        row = np.zeros(len(ids), dtype=np.float32)
        if kind == "oracle":
            if k >= 0 and span is not None:
                row[span_tokens(pieces, tuple(span))] = 1.0
        else:
            right = len(spans) if k < 0 else min(int(k), len(spans))
            owner = np.asarray(token_steps(pieces, tuple(tuple(x) for x in spans[:right])))
            row[owner >= 0] = owner[owner >= 0] + 1  # step j's tokens carry j + 1
        marks.append(row)
    padded, mask, lengths = pad_ragged(marks)
    if kind == "oracle":
        rewards = oracle_process_rewards(padded, mask)
    else:
        rewards = progress_process_rewards(padded.long(), mask, torch.tensor(data["n_steps"].to_numpy(np.int64)))
    return prm_rewards.assign(token_rewards=unpad(rewards, lengths), process_reward=kind)


def prm_quality(
    process_rewards: pd.DataFrame, rollouts: pd.DataFrame, outcomes: pd.DataFrame, tokenizer: Any, cfg: PrimeConfig
) -> dict[str, float]:
    """The PRM as loaded, on this iteration's fresh rollouts (before it trains on them):
    ``prm/ce_before`` (its cross-entropy against the outcome), ``prm/auc_before`` (ROC AUC of the
    sequence score) and, where the rollouts have ground-truth step labels, first-error
    localisation (``core.prm_eval``): ``prm/localisation`` (argmin step = first wrong step, share
    of wrong rollouts), ``prm/error_acc``, ``prm/correct_acc`` and ``prm/localisation_f1`` at the
    threshold that maximises it (``prm/localisation_threshold``; see ``core.prm_eval``)."""
    if len(process_rewards) == 0:
        return {}
    data = process_rewards.merge(outcomes[KEY + ["score"]], on=KEY, validate="one_to_one")
    z = torch.tensor(data["sequence_score"].to_numpy(dtype=np.float64))
    y = torch.tensor(data["score"].to_numpy(dtype=np.float64))
    ce = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
    metrics = {"prm/ce_before": float(ce), "prm/auc_before": roc_auc(z.numpy(), y.numpy())}
    if "first_wrong_step" not in outcomes:
        return metrics
    labelled = outcomes.loc[outcomes["first_wrong_step"].notna(), KEY]
    if labelled.empty:
        return metrics
    # Only the rows whose world has a step checker (all or none, in the worlds so far).
    data = _labelled(
        process_rewards[KEY + ["implicit_reward"]].merge(labelled, on=KEY), rollouts, outcomes, "localisation"
    )
    if data.empty:
        return metrics
    step_rewards = []
    for ids, reward, spans in zip(data["response_ids"], data["implicit_reward"], data["step_spans"]):
        spans = tuple(tuple(s) for s in spans)
        owner = np.asarray(token_steps(token_pieces(tokenizer, ids), spans))
        reward = np.asarray(reward, dtype=np.float64)
        step_rewards.append([float(reward[owner == k].sum()) for k in range(len(spans))])
    loc = first_error_localisation(step_rewards, data["first_wrong_step"].astype(int).tolist())
    metrics.update(
        {
            "prm/localisation": loc["argmin_share"],
            "prm/error_acc": loc["error_acc"],
            "prm/correct_acc": loc["correct_acc"],
            "prm/localisation_f1": loc["f1"],
            "prm/localisation_threshold": loc["threshold"],
        }
    )
    return metrics
