"""PRIME's rollout stages over tables: draw prompts, sample n responses per prompt, verify them,
keep the groups inside the accuracy band.

Every function takes and returns pandas tables (one row per prompt or per rollout; per-token values
as list columns), so every stage boundary can be stored, opened and replayed. Row order is part of
the contract: the n samples of a prompt are contiguous and in ``sample_idx`` order, and groups
follow the prompts' draw order.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import pandas as pd
import torch

from eurus_prime.core.filtering import accuracy_band_keep
from eurus_prime.engines.rollout import ProgressFn, generate
from eurus_prime.prime.config import PrimeConfig, stage_seed
from eurus_prime.tasks.prompting import render_prompt
from eurus_prime.verifiers import verify_all
from eurus_prime.verifiers.process import process_columns

log = logging.getLogger(__name__)

KEY = ["prompt_id", "sample_idx"]
#: The verdict columns of the outcomes table (``verifiers.Verdict``'s fields, in order).
VERDICT_COLUMNS = ["score", "correct", "reason", "extracted", "error", "isolation", "verifier", "rule", "detail"]


def prompt_id(extra_info: Any) -> str:
    """A prompt's stable id: ``<split>/<index>`` from its ``extra_info``."""
    return f"{extra_info['split']}/{extra_info['index']}"


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


def generate_rollouts(
    checkpoint: Any,
    drawn: pd.DataFrame,
    cfg: PrimeConfig,
    iteration: int,
    policy_version: str,
    on_progress: ProgressFn | None = None,
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
        engine_options=cfg.engine_options,
        on_progress=on_progress,
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


def verify_rollouts(rollouts: pd.DataFrame, on_progress: ProgressFn | None = None) -> pd.DataFrame:
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
    verdicts = verify_all(abilities, responses, truths, on_progress=on_progress) if distinct else []
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


def check_groups(frame: pd.DataFrame, n: int, what: str) -> None:
    """Refuse a table whose rows are not contiguous groups of ``n`` samples per prompt."""
    if len(frame) % n:
        raise ValueError(f"{what}: {len(frame)} rows are not a whole number of groups of n={n}")
    pids = frame["prompt_id"].to_numpy().reshape(-1, n)
    if (pids != pids[:, :1]).any():
        bad = pids[(pids != pids[:, :1]).any(1)][0, 0]
        raise ValueError(f"{what}: the samples of prompt {bad} are not contiguous groups of n={n}")
