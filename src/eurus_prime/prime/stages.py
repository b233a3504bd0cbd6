"""The stages of one PRIME iteration as plain functions over tables and checkpoints.

Every function takes and returns pandas tables (one row per rollout or per prompt; per-token
values as list columns) so that every stage boundary can be stored, opened and replayed. The
maths lives in ``eurus_prime.core``; this module only moves rows in and out of tensors. The
Kedro nodes in ``pipelines/prime_iteration`` are one-line wrappers around these functions.

Row order is part of the contract: the n samples of a prompt are contiguous and in
``sample_idx`` order, and groups follow the prompts' draw order.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import torch

from eurus_prime import monitor
from eurus_prime.chainworld.steps import span_tokens, token_steps
from eurus_prime.core.advantages import advantage_estimator
from eurus_prime.core.filtering import accuracy_band_keep
from eurus_prime.core.kl import kl_penalty
from eurus_prime.core.masked import masked_mean
from eurus_prime.core.ppo import ppo_policy_loss
from eurus_prime.core.prm_eval import first_error_localisation, roc_auc
from eurus_prime.core.rewards import (
    implicit_process_rewards,
    oracle_process_rewards,
    prm_dpo_baseline,
    prm_dpo_loss,
    prm_loss,
    prm_pairwise_accuracy,
    progress_process_rewards,
)
from eurus_prime.engines.generation import generate
from eurus_prime.engines.launch import run_distributed
from eurus_prime.engines.trainer import DeepSpeedOptions, Trainer, make_trainer, world
from eurus_prime.inspection import token_pieces
from eurus_prime.prime.batch import (
    budget_micro_batches,
    forward_rows,
    micro_batches,
    pad_ragged,
    pad_values,
    score_responses,
    unpad,
)
from eurus_prime.prime.config import PrimeConfig, stage_seed
from eurus_prime.prompting import render_prompt
from eurus_prime.verifiers import verify_all
from eurus_prime.verifiers.process import process_columns

log = logging.getLogger(__name__)

KEY = ["prompt_id", "sample_idx"]
#: The verdict columns of the outcomes table (``verifiers.Verdict``'s fields, in order).
VERDICT_COLUMNS = ["score", "correct", "reason", "extracted", "error", "isolation", "verifier", "rule", "detail"]


def prompt_id(extra_info: Any) -> str:
    """A prompt's stable id: ``<split>/<index>`` from its ``extra_info``."""
    return f"{extra_info['split']}/{extra_info['index']}"


# --------------------------------------------------------------------------- sample prompts
#: Resample attempt k draws from positions this many iterations further along the epoch sequence:
#: epochs no real iteration reaches, so an attempt's prompts are a fresh, reproducible draw.
RESAMPLE_STRIDE = 1_000_000


class NothingSelected(ValueError):
    """Every prompt group of a draw fell outside the accuracy band (``regenerate`` mode)."""


def sample_prompts(prompts: pd.DataFrame, cfg: PrimeConfig, iteration: int, resample: int = 0) -> pd.DataFrame:
    """Draw this iteration's prompts: ``cfg.prompts_drawn`` rows of an endless sequence of seeded
    epochs (a fresh permutation of the training prompts per epoch). Iteration i takes positions
    [i*M, (i+1)*M), so the draw depends only on (seed, iteration), never on earlier runs; where
    that window crosses into the next epoch, a prompt already drawn is skipped and the window
    extends by one, so an iteration never holds one prompt twice.
    ``resample`` k > 0 (the training loop's retry when every group was filtered out) draws from
    positions ``k * RESAMPLE_STRIDE`` iterations further along instead.

    Returns one row per drawn prompt: ``iteration``, ``resample``, ``draw``, ``epoch``,
    ``prompt_id``, ``data_source``, ``ability``, ``prompt`` (chat messages), ``ground_truth``.
    """
    if len(prompts) == 0:
        raise ValueError("prompts_train is empty: nothing to sample")
    if resample < 0:
        raise ValueError(f"resample = {resample} is invalid: must be >= 0")
    m, n = cfg.prompts_drawn, len(prompts)
    if m > n:
        raise ValueError(
            f"prime draws {m} prompts per iteration (prompts_per_step x oversample_factor) but "
            f"prompts_train has only {n}: lower prime.prompts_per_step or prime.oversample_factor"
        )
    perms: dict[int, list[int]] = {}
    picks: list[tuple[int, int]] = []
    taken: set[int] = set()
    pos = (iteration + resample * RESAMPLE_STRIDE) * m
    while len(picks) < m:
        epoch = pos // n
        if epoch not in perms:
            perm = list(range(n))
            random.Random(cfg.seed * 1_000_003 + epoch).shuffle(perm)
            perms[epoch] = perm
        index = perms[epoch][pos % n]
        pos += 1
        # A draw that crosses into the next epoch may meet a prompt it already holds: skip it, so
        # that every prompt group of an iteration is a distinct prompt.
        if index not in taken:
            taken.add(index)
            picks.append((epoch, index))
    rows = prompts.iloc[[i for _, i in picks]]
    ids = [prompt_id(e) for e in rows["extra_info"]]
    return pd.DataFrame(
        {
            "iteration": iteration,
            "resample": resample,
            "draw": np.arange(m),
            "epoch": [e for e, _ in picks],
            "prompt_id": ids,
            "data_source": rows["data_source"].to_numpy(),
            "ability": rows["ability"].to_numpy(),
            "prompt": [list(p) for p in rows["prompt"]],
            "ground_truth": [rm["ground_truth"] for rm in rows["reward_model"]],
        }
    )


# --------------------------------------------------------------------------- rollouts
def generate_rollouts(
    checkpoint: Any, drawn: pd.DataFrame, cfg: PrimeConfig, iteration: int, policy_version: str
) -> pd.DataFrame:
    """Sample n responses per drawn prompt from the policy.

    Returns one row per rollout (the n samples of a prompt contiguous): ``iteration``,
    ``policy_version``, ``prompt_id``, ``sample_idx``, ``draw``, ``data_source``, ``ability``,
    ``ground_truth``, ``prompt_text``, ``response``, ``prompt_ids``, ``response_ids``,
    ``response_length``, ``finish_reason`` and ``sampling_logprobs``: each response token's log-prob
    under the sampling distribution (None with an engine that does not return them).
    """
    model, tok = checkpoint.model, checkpoint.tokenizer
    texts = [render_prompt(tok, list(p)) for p in drawn["prompt"]]
    prompt_ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    for pid, ids in zip(drawn["prompt_id"], prompt_ids):
        if len(ids) > cfg.max_prompt_length:
            raise ValueError(f"prompt {pid} has {len(ids)} tokens > prime.max_prompt_length={cfg.max_prompt_length}")
    context = getattr(model.config, "max_position_embeddings", None)
    longest = max((len(p) for p in prompt_ids), default=0) + cfg.max_response_length
    if context is not None and longest > context:
        raise ValueError(
            f"prime.max_response_length={cfg.max_response_length} plus the longest prompt "
            f"({longest - cfg.max_response_length} tokens) exceeds the model's context of {context}"
        )
    n = cfg.samples_per_prompt
    rep = np.repeat(np.arange(len(drawn)), n)
    gens = generate(
        model,
        tok,
        [texts[i] for i in rep],
        max_new_tokens=cfg.max_response_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        batch_size=cfg.generation_batch_size,
        seed=stage_seed(cfg, iteration, "rollout"),
        engine=cfg.rollout_engine,
        engine_options=cfg.vllm,
    )
    sampling_logprobs = (
        [np.asarray(g.logprobs, dtype=np.float32) for g in gens]
        if gens and all(g.logprobs is not None for g in gens)
        else None
    )
    return pd.DataFrame(
        {
            "iteration": iteration,
            "policy_version": policy_version,
            "prompt_id": drawn["prompt_id"].to_numpy()[rep],
            "sample_idx": np.tile(np.arange(n), len(drawn)),
            "draw": drawn["draw"].to_numpy()[rep],
            "data_source": drawn["data_source"].to_numpy()[rep],
            "ability": drawn["ability"].to_numpy()[rep],
            "ground_truth": drawn["ground_truth"].to_numpy()[rep],
            "prompt_text": [texts[i] for i in rep],
            "response": [g.text for g in gens],
            "prompt_ids": [np.asarray(prompt_ids[i], dtype=np.int32) for i in rep],
            "response_ids": [np.asarray(g.token_ids, dtype=np.int32) for g in gens],
            "response_length": [len(g.token_ids) for g in gens],
            "finish_reason": [g.finish_reason for g in gens],
            "sampling_logprobs": sampling_logprobs,
        }
    )


def rollout_metrics(rollouts: pd.DataFrame, cfg: PrimeConfig | None = None) -> dict[str, float]:
    """``rollout/...`` metrics; warns when every response hit the length budget (the verifier
    then grades cut-off answers and the PRM learns from them)."""
    lengths = rollouts["response_length"]
    truncated = rollouts["finish_reason"] == "length"
    if len(rollouts) and truncated.all():
        iteration = int(rollouts["iteration"].iloc[0]) if "iteration" in rollouts else -1
        budget = f"={cfg.max_response_length}" if cfg is not None else ""
        log.warning(
            "generate_rollouts: iteration %d: truncated share %.0f%%: all %d responses hit "
            "prime.max_response_length%s tokens; raise prime.max_response_length",
            iteration,
            100 * float(truncated.mean()),
            len(rollouts),
            budget,
        )
    return {
        "rollout/responses": float(len(rollouts)),
        "rollout/response_length_mean": float(lengths.mean()),
        "rollout/response_length_max": float(lengths.max()),
        "rollout/truncated_share": float(truncated.mean()),
    }


# --------------------------------------------------------------------------- verify
def verify_rollouts(rollouts: pd.DataFrame) -> pd.DataFrame:
    """Grade every rollout with the outcome verifier.

    Returns one row per rollout: the key (``prompt_id``, ``sample_idx``), ``data_source``,
    ``ability``, the verdict (``score``, ``correct``, ``reason``, ``extracted``, ``error``,
    ``isolation``, ...) and the ground-truth process label where the world has a step checker
    (``verifiers.process.process_columns``: ``first_wrong_step``, ``n_steps``, ``step_spans``,
    ``wrong_span``; null elsewhere).
    """
    # A low-entropy policy often samples the same response several times: grade each distinct
    # (ability, response, ground truth) once. Verifiers are pure functions of these three.
    triples = list(zip(rollouts["ability"], rollouts["response"], rollouts["ground_truth"]))
    distinct = list(dict.fromkeys(triples))
    abilities, responses, truths = (list(column) for column in zip(*distinct)) if distinct else ([], [], [])
    verdicts = verify_all(abilities, responses, truths) if distinct else []
    by_triple = dict(zip(distinct, verdicts))
    out = rollouts[KEY + ["data_source", "ability"]].reset_index(drop=True)
    # The step checkers read the question from the prompt (worlds without one never look).
    prompts = rollouts["prompt_text"] if "prompt_text" in rollouts else [""] * len(rollouts)
    labels = pd.DataFrame(process_columns(rollouts["data_source"], prompts, rollouts["response"]))
    labels["first_wrong_step"] = labels["first_wrong_step"].astype("Int64")
    labels["n_steps"] = labels["n_steps"].astype("Int64")
    return pd.concat(
        [out, pd.DataFrame([by_triple[t].as_row() for t in triples], columns=VERDICT_COLUMNS), labels], axis=1
    )


def outcome_metrics(outcomes: pd.DataFrame) -> dict[str, float]:
    """``train_verify_score/{all,<ability>}``: mean score before filtering, as the reference logs."""
    metrics = {"train_verify_score/all": float(outcomes["score"].mean())}
    for ability, g in outcomes.groupby("ability"):
        metrics[f"train_verify_score/{ability}"] = float(g["score"].mean())
    return metrics


# --------------------------------------------------------------------------- filter
def filter_prompts(outcomes: pd.DataFrame, cfg: PrimeConfig) -> pd.DataFrame:
    """Accuracy-band filter, one row per prompt in draw order.

    Columns: ``prompt_id``, ``data_source``, ``ability``, ``n``, ``accuracy`` (mean score over
    the n samples), ``in_band``, ``selected`` (trains this step) and ``status``: ``selected``,
    ``surplus`` (in band, beyond B), ``too_easy``, ``too_hard``, or ``filled`` (out of band but
    selected to fill the batch in ``fixed_batch`` mode).
    """
    n = cfg.samples_per_prompt
    groups = outcomes.groupby("prompt_id", sort=False)
    sizes = groups.size()
    if (sizes != n).any():
        bad = sizes[sizes != n]
        raise ValueError(f"prompt {bad.index[0]} has {bad.iloc[0]} outcomes, expected n={n}")
    scores = torch.tensor(outcomes["score"].to_numpy(dtype=np.float64))
    in_band = accuracy_band_keep(scores, n, cfg.filter_low, cfg.filter_high).numpy()
    first = outcomes.iloc[::n]
    acc = scores.view(-1, n).mean(-1).numpy()
    status = np.where(in_band, "selected", np.where(acc > cfg.filter_high, "too_easy", "too_hard")).astype(object)
    passing = np.flatnonzero(in_band)
    if cfg.filter_mode == "regenerate" and len(passing) == 0:
        raise NothingSelected(
            f"every one of the {len(acc)} drawn prompt groups is outside the accuracy band "
            f"[{cfg.filter_low}, {cfg.filter_high}]: accuracy distribution {accuracy_histogram(acc)} "
            f"({int((acc > cfg.filter_high).sum())} too easy, {int((acc < cfg.filter_low).sum())} too hard)"
        )
    status[passing[cfg.prompts_per_step :]] = "surplus"
    if cfg.filter_mode == "fixed_batch" and len(passing) < cfg.prompts_per_step:
        failing = np.flatnonzero(~in_band)[: cfg.prompts_per_step - len(passing)]
        status[failing] = "filled"
    selected = np.isin(status, ["selected", "filled"])
    if selected.sum() < cfg.prompts_per_step:
        log.warning(
            "filter: only %d of %d prompt groups selected (%d drawn); raise prime.oversample_factor to fill the batch",
            selected.sum(),
            cfg.prompts_per_step,
            len(acc),
        )
    return pd.DataFrame(
        {
            "prompt_id": first["prompt_id"].to_numpy(),
            "data_source": first["data_source"].to_numpy(),
            "ability": first["ability"].to_numpy(),
            "n": n,
            "accuracy": acc,
            "in_band": in_band,
            "selected": selected,
            "status": status,
        }
    )


def accuracy_histogram(acc: np.ndarray) -> str:
    """``{0.00: 12, 0.50: 3, 1.00: 49}``: prompt groups per accuracy value."""
    values, counts = np.unique(np.round(np.asarray(acc, dtype=np.float64), 4), return_counts=True)
    return "{" + ", ".join(f"{v:.2f}: {c}" for v, c in zip(values, counts)) + "}"


def filter_metrics(report: pd.DataFrame) -> dict[str, float]:
    """``filter/...`` of a filter report (logged by the node, recomputed by ``curves``)."""
    return {
        "filter/drawn": float(len(report)),
        "filter/in_band_share": float(report["in_band"].mean()),
        "filter/selected": float(report["selected"].sum()),
        "filter/too_easy_share": float((report["status"] == "too_easy").mean()),
        "filter/too_hard_share": float((report["status"] == "too_hard").mean()),
    }


def selected_rollouts(rollouts: pd.DataFrame, report: pd.DataFrame) -> pd.DataFrame:
    """The rollouts of the selected groups, in draw order (groups contiguous)."""
    keep = set(report.loc[report["selected"], "prompt_id"])
    return rollouts[rollouts["prompt_id"].isin(keep)].reset_index(drop=True)


# --------------------------------------------------------------------------- process rewards
def compute_process_rewards(
    policy: Any, prm: Any, reference: Any, rollouts: pd.DataFrame, report: pd.DataFrame, cfg: PrimeConfig
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
            cache[key] = _score(ckpt.model, p_ids, r_ids, pad, cfg)
        return cache[key]

    old = _sampling_logprobs(policy, rows, cfg)
    if old is None:
        old = score(policy)
    ref = old if cfg.ref_type == "policy" else score(reference)
    prm_lp = score(prm)
    q = [cfg.beta * (a - b) for a, b in zip(prm_lp, ref)]
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


def _score(
    model: Any, prompt_ids: list[Any], response_ids: list[Any], pad_id: int, cfg: PrimeConfig
) -> list[np.ndarray]:
    """A scoring pass (``score_responses``) on ``prime.score_device`` with the config's micro-batching."""
    with _on_device(model, cfg.score_device):
        return score_responses(model, prompt_ids, response_ids, pad_id, cfg.micro_batch, cfg.micro_batch_tokens)


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
    check = _score(
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


# --------------------------------------------------------------------------- PRM update
def _check_groups(frame: pd.DataFrame, n: int, what: str) -> None:
    if len(frame) % n:
        raise ValueError(f"{what}: {len(frame)} rows are not a whole number of groups of n={n}")
    pids = frame["prompt_id"].to_numpy().reshape(-1, n)
    if (pids != pids[:, :1]).any():
        bad = pids[(pids != pids[:, :1]).any(1)][0, 0]
        raise ValueError(f"{what}: the samples of prompt {bad} are not contiguous groups of n={n}")


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


class NonFiniteError(FloatingPointError):
    """A NaN or inf loss or gradient norm (``prime.nonfinite: stop``), or a non-finite parameter
    or optimizer moment after an update (always: a poisoned checkpoint is never returned)."""


def _nonfinite_step(
    stage: str, cfg: PrimeConfig, iteration: int, step: int, loss: float, grad_norm: float, epoch: int | None = None
) -> bool:
    """False for a finite mini-batch. Otherwise: ``stop`` raises NonFiniteError, ``skip`` logs a
    warning and returns True (the caller zeroes the gradients and takes no optimizer step)."""
    if math.isfinite(loss) and math.isfinite(grad_norm):
        return False
    what = f"the loss is {loss}" if not math.isfinite(loss) else f"the grad norm is {grad_norm}"
    where = f"{stage}: iteration {iteration}{'' if epoch is None else f' epoch {epoch}'} step {step}"
    if cfg.nonfinite == "stop":
        raise NonFiniteError(
            f"{where}: {what}; stopping because prime.nonfinite=stop "
            "(prime.nonfinite=skip skips such mini-batches instead)"
        )
    log.warning("%s: %s; the mini-batch is skipped, no optimizer step (prime.nonfinite=skip)", where, what)
    return True


def _poisoned(stage: str, iteration: int, what: str) -> None:
    """Refuse to hand on a checkpoint with a NaN/inf weight or AdamW moment."""
    raise NonFiniteError(f"{stage}: iteration {iteration}: {what}; refusing to return a poisoned checkpoint")


def _trainer(checkpoint: Any, cfg: PrimeConfig, lr: float, weight_decay: float, grad_clip: float) -> Trainer:
    """The ``prime.trainer_backend`` trainer of ``checkpoint``, continuing the AdamW moments stored
    with it when there are any (the state belongs to the run, not to one iteration: resetting it
    every step would change the method); the config, not the stored state, sets lr and decay."""
    if cfg.gradient_checkpointing and hasattr(checkpoint.model, "gradient_checkpointing_enable"):
        checkpoint.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return make_trainer(
        cfg.trainer_backend,
        checkpoint.model,
        getattr(checkpoint, "optimizer_state", None),
        lr=lr,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        micro_batch=cfg.micro_batch,
        deepspeed=cfg.deepspeed,
    )


def _on_ranks(cfg: PrimeConfig) -> bool:
    """True where this call should start ``prime.deepspeed.num_procs`` ranks (not inside one)."""
    return (
        cfg.trainer_backend == "deepspeed"
        and int(DeepSpeedOptions.coerce(cfg.deepspeed).num_procs) > 1
        and world()[1] == 1
    )


def _plain(model: Any, cfg: PrimeConfig) -> Any:
    """The updated model as the next stage expects it: no layer recomputation switched on."""
    if cfg.gradient_checkpointing and getattr(model, "is_gradient_checkpointing", False):
        model.gradient_checkpointing_disable()
    return model


def _rank_micro_batches(trainer: Trainer, micros: list[list[int]]) -> list[tuple[list[int], float]]:
    """This rank's share of a mini-batch's micro-batches, each with a weight for its loss. The
    micro-batches are those of one process, dealt out whole (k-th to rank k mod world), so the
    objective, a token mean per micro-batch weighted by rows, is the same on any number of ranks.
    Every rank runs the same number of micro-batches (each backward is a collective): a rank
    short of one repeats the first, weighted 0."""
    mine = trainer.shard(micros)
    rounds = -(-len(micros) // trainer.world_size)
    return [(m, 1.0) for m in mine] + [(micros[0], 0.0)] * (rounds - len(mine))


def update_prm(
    prm: Any,
    rollouts: pd.DataFrame,
    process_rewards: pd.DataFrame,
    outcomes: pd.DataFrame,
    cfg: PrimeConfig,
    iteration: int,
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
    if _on_ranks(cfg):
        out: tuple[object, pd.DataFrame, pd.DataFrame] = run_distributed(
            "update_prm", prm, (rollouts, process_rewards, outcomes), cfg, iteration
        )
        return out
    data = _joined(rollouts, process_rewards, outcomes)
    _check_groups(data, cfg.samples_per_prompt, "update_prm")
    pad = prm.tokenizer.pad_token_id
    trainer = _trainer(prm, cfg, cfg.prm_lr, cfg.prm_weight_decay, cfg.prm_grad_clip)
    model = trainer.model
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
    stats = []
    taken = 0  # optimizer steps actually taken (a skipped mini-batch leaves the PRM as it was)
    model.train()
    for step, mb in enumerate(micro_batches(order, cfg.prm_mini_batch)):
        trainer.zero_grad()
        total = 0.0
        # The loss is a mean over sequences, so how the mini-batch splits into micro-batches (and
        # ranks) does not change it: split by length, so that each micro-batch pads to rows like its own.
        by_length = sorted(mb, key=lambda i: len(data.prompt_ids[i]) + len(data.response_ids[i]))
        micros = _rank_micro_batches(
            trainer,
            budget_micro_batches(
                by_length, data.prompt_ids, data.response_ids, cfg.micro_batch, cfg.micro_batch_tokens
            ),
        )
        for k, (micro, weight) in enumerate(micros):
            packed, logp = forward_rows(model, data.prompt_ids, data.response_ids, micro, pad, grad=True)
            ref = pad_values([data.ref_logprobs[i] for i in micro], packed.response_width)
            acc = torch.tensor(data.score.to_numpy()[micro], dtype=torch.float32)
            mask = packed.response_mask.float()
            if dpo_baseline is None:
                loss = prm_loss(logp, ref, mask, acc, beta=cfg.beta)
            else:
                loss = prm_dpo_loss(logp, ref, mask, acc, dpo_baseline[micro], beta=cfg.beta)
            loss = loss * (len(micro) / len(mb)) * weight
            trainer.backward(loss * trainer.loss_scale, last=k == len(micros) - 1)
            total += float(loss.detach())
            if cfg.prm_update == "after" and weight:
                # Before the first optimizer step the PRM is the one compute_process_rewards
                # scored: reuse those values (at iteration 0 they equal the reference's exactly,
                # so the rewards are exactly 0 as in the reference, not float noise that
                # batch_norm would blow up to O(1)).
                fresh = unpad(logp, [len(data.response_ids[i]) for i in micro])
                for i, v in zip(micro, fresh):
                    used[i] = np.asarray(data.prm_logprobs[i], dtype=np.float32) if taken == 0 else v
        total = trainer.all_sum([total])[0]
        grad_norm, skipped = trainer.step(
            total,
            lambda loss, norm: _nonfinite_step("update_prm", cfg, iteration, step, loss, norm),  # noqa: B023 (called now)
        )
        if not skipped:
            taken += 1
        stats.append(
            {
                "iteration": iteration,
                "step": step,
                "responses": len(mb),
                "loss": total,
                "grad_norm": grad_norm,
                "skipped": skipped,
            }
        )
        monitor.step(step + 1, -(-n_rows // cfg.prm_mini_batch), "PRM optimizer steps")
    trainer.assert_finite(lambda what: _poisoned("update_prm", iteration, what))
    if cfg.prm_update == "after" and trainer.world_size > 1:
        for part in trainer.all_gather({i: v for i, v in enumerate(used) if v is not None}):
            for i, v in part.items():
                used[i] = v
    model, prm.optimizer_state = trainer.finish()
    prm.model = _plain(model, cfg)
    if cfg.prm_update == "before" and n_rows:
        scored = score_responses(
            model, list(data.prompt_ids), list(data.response_ids), pad, cfg.micro_batch, cfg.micro_batch_tokens
        )
    else:
        scored = [u for u in used if u is not None]
        if len(scored) != n_rows:
            raise RuntimeError(f"update_prm: {n_rows - len(scored)} of {n_rows} rows got no PRM log-probs")
    return prm, _prm_table(data, scored, cfg), pd.DataFrame(stats, columns=stats_columns).astype({"skipped": bool})


def _prm_table(data: pd.DataFrame, used: Sequence[np.ndarray], cfg: PrimeConfig) -> pd.DataFrame:
    """The ``prm_rewards`` table from the PRM log-probs the rewards use."""
    return pd.DataFrame(
        {
            "prompt_id": data["prompt_id"].to_numpy(),
            "sample_idx": data["sample_idx"].to_numpy(),
            "prm_update": cfg.prm_update,
            "prm_logprobs": used,
            "token_rewards": _normalised_rewards(used, list(data.ref_logprobs), cfg) if len(data) else [],
            "sequence_score": [
                float(cfg.beta * (np.asarray(u) - np.asarray(r)).sum()) for u, r in zip(used, data.ref_logprobs)
            ],
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
    of wrong rollouts), ``prm/error_acc``, ``prm/correct_acc`` and ``prm/localisation_f1``."""
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
        }
    )
    return metrics


# --------------------------------------------------------------------------- advantages
def _kl_in_reward(cfg: PrimeConfig) -> bool:
    return cfg.kl_coef > 0 and cfg.kl_in == "reward"


def estimate_advantages(
    prm_rewards: pd.DataFrame, outcomes: pd.DataFrame, cfg: PrimeConfig, process_rewards: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Returns and advantages by ``prime.advantage_estimator`` (``core.advantages``; ``rloo``, the
    default, is PRIME's). With ``kl_coef > 0`` and ``kl_in: reward`` the per-token penalty
    ``kl_coef * KL(old policy, reference)`` comes from ``process_rewards``' log-probs.

    Returns one row per selected rollout: the key, ``outcome`` (verifier score), ``process_return``
    (the sum of the token rewards), ``returns`` and ``advantages`` (per token), and with the KL in
    the reward ``kl`` (the row's token-mean KL estimate).
    """
    data = prm_rewards.merge(outcomes[KEY + ["score"]], on=KEY, how="left", validate="one_to_one")
    _check_groups(data, cfg.samples_per_prompt, "estimate_advantages")
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
    gamma = {"process_gamma": cfg.process_gamma} if cfg.advantage_estimator == "rloo" else {}
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


# --------------------------------------------------------------------------- policy update
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


def update_policy(
    policy: Any,
    rollouts: pd.DataFrame,
    process_rewards: pd.DataFrame,
    advantages: pd.DataFrame,
    cfg: PrimeConfig,
    iteration: int,
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
    if _on_ranks(cfg):
        result: tuple[object, pd.DataFrame] = run_distributed(
            "update_policy", policy, (rollouts, process_rewards, advantages), cfg, iteration
        )
        return result
    data = advantages.merge(process_rewards[KEY + ["old_logprobs", "ref_logprobs"]], on=KEY, validate="one_to_one")
    data = data.merge(rollouts[KEY + ["prompt_ids", "response_ids", "policy_version"]], on=KEY, validate="one_to_one")
    _check_groups(data, cfg.samples_per_prompt, "update_policy")
    check_policy_versions(data, cfg.samples_per_prompt, getattr(policy, "version", ""))
    pad = policy.tokenizer.pad_token_id
    trainer = _trainer(policy, cfg, cfg.policy_lr, cfg.policy_weight_decay, cfg.policy_grad_clip)
    model = trainer.model
    rng = random.Random(stage_seed(cfg, iteration, "ppo"))
    stats: list[dict[str, Any]] = []
    model.train()
    for epoch in range(cfg.ppo_epochs if len(data) else 0):
        order = list(range(len(data)))
        rng.shuffle(order)
        for mb in micro_batches(order, cfg.ppo_mini_batch):
            trainer.zero_grad()
            sums = {"pg_loss": 0.0, "pg_clipfrac": 0.0, "ppo_kl": 0.0, "entropy": 0.0, "kl": 0.0}
            total = 0.0  # the objective backpropagated: pg_loss - entropy_coef * entropy (+ kl_coef * kl)
            # Not sorted by length: pg_loss is a token mean per micro-batch (as in the reference),
            # so length-sorted micro-batches would weigh a long response's tokens less than random
            # ones do. A token cap cuts the shuffled order where the next row would pass it.
            micros = _rank_micro_batches(
                trainer,
                budget_micro_batches(mb, data.prompt_ids, data.response_ids, cfg.micro_batch, cfg.micro_batch_tokens),
            )
            for k, (micro, scale) in enumerate(micros):
                packed, logp, entropy = forward_rows(
                    model, data.prompt_ids, data.response_ids, micro, pad, grad=True, return_entropy=True
                )
                width = packed.response_width
                mask = packed.response_mask.float()
                old = pad_values([data.old_logprobs[i] for i in micro], width)
                adv = pad_values([data.advantages[i] for i in micro], width)
                pg_loss, diag = ppo_policy_loss(logp, old, adv, mask, clip_ratio=cfg.clip_ratio)
                ent = masked_mean(entropy, mask)
                ref = pad_values([data.ref_logprobs[i] for i in micro], width)
                kl_in_loss = cfg.kl_coef > 0 and cfg.kl_in == "loss"
                with torch.set_grad_enabled(kl_in_loss):  # measured either way: ppo_stats' kl
                    kl = masked_mean(kl_penalty(logp, ref, cfg.kl_estimator), mask)
                weight = len(micro) / len(mb) * scale
                objective = pg_loss - cfg.entropy_coef * ent
                if kl_in_loss:
                    objective = objective + cfg.kl_coef * kl
                objective = objective * weight
                trainer.backward(objective * trainer.loss_scale, last=k == len(micros) - 1)
                total += float(objective.detach())
                for key, v in (("pg_loss", pg_loss), ("entropy", ent), ("kl", kl), *diag.items()):
                    sums[key] += float(v.detach()) * weight
            total, *summed = trainer.all_sum([total, *sums.values()])
            sums = dict(zip(sums, summed))
            grad_norm, skipped = trainer.step(
                total,
                lambda loss, norm: _nonfinite_step("update_policy", cfg, iteration, len(stats), loss, norm, epoch),  # noqa: B023
            )
            stats.append(
                {
                    "iteration": iteration,
                    "epoch": epoch,
                    "step": len(stats),
                    "responses": len(mb),
                    **sums,
                    "grad_norm": grad_norm,
                    "skipped": skipped,
                }
            )
            monitor.step(len(stats), cfg.ppo_epochs * -(-len(data) // cfg.ppo_mini_batch), "PPO optimizer steps")
    if not len(data):
        log.warning(
            "update_policy: iteration %d has no selected prompt groups; the policy is "
            "passed on unchanged (the step is skipped)",
            iteration,
        )
    trainer.assert_finite(lambda what: _poisoned("update_policy", iteration, what))
    policy.model, policy.optimizer_state = trainer.finish()
    policy.model = _plain(policy.model, cfg)
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


def should_evaluate(cfg: PrimeConfig, iteration: int) -> bool:
    """Evaluate at iteration 0 and after every ``eval_every``-th iteration (iterations
    eval_every-1, 2*eval_every-1, ...), so a run of a multiple of eval_every iterations ends
    evaluated; never when ``eval_every`` is 0."""
    return cfg.eval_every > 0 and (iteration == 0 or (iteration + 1) % cfg.eval_every == 0)
