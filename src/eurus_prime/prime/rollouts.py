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
from eurus_prime.engines import spmd
from eurus_prime.engines.rollout import ProgressFn, generate
from eurus_prime.prime.config import PrimeConfig, stage_seed
from eurus_prime.tasks.prompting import render_prompt
from eurus_prime.verifiers import verify_triples
from eurus_prime.verifiers.process import process_columns

log = logging.getLogger(__name__)

KEY = ["prompt_id", "sample_idx"]
#: The verdict columns of the outcomes table (``verifiers.Verdict``'s fields, in order).
VERDICT_COLUMNS = ["score", "correct", "reason", "extracted", "error", "isolation", "verifier", "rule", "detail"]


def prompt_id(extra_info: Any) -> str:
    """A prompt's stable id: ``<split>/<index>`` from its ``extra_info``."""
    return f"{extra_info['split']}/{extra_info['index']}"


#: Draw k > 0 of an iteration takes positions this many iterations further along the epoch sequence:
#: epochs no real iteration reaches, so a later draw's prompts are a fresh, reproducible sample.
DRAW_STRIDE = 1_000_000

#: The columns of the ``group_buffer`` table (surplus in-band groups carried to later iterations).
BUFFER_COLUMNS = ["prompt_id", "data_source", "ability", "accuracy", "made_at", "draw"]


class NothingSelected(ValueError):
    """Every prompt group drawn so far fell outside the accuracy band (``regenerate`` and
    ``single_draw`` modes)."""


def _empty(frame: pd.DataFrame | None) -> bool:
    return frame is None or len(frame) == 0 or "draw" not in frame.columns


def earlier_draws(frame: pd.DataFrame | None, draw: int, what: str) -> pd.DataFrame:
    """The rows of draws 0..draw-1 of a cumulative table (``drawn_prompts``, ``rollouts``,
    ``outcomes``): what draw ``draw`` keeps and extends. Empty at draw 0. Raises ValueError
    naming the table when a draw before ``draw`` is missing from it."""
    if draw == 0:
        return pd.DataFrame()
    if _empty(frame):
        raise ValueError(
            f"{what}: draw {draw} extends draws 0..{draw - 1} of this iteration, but no stored {what} "
            "has them; run the iteration from draw 0 (eurus-prime train does)"
        )
    assert frame is not None
    keep = frame[frame["draw"] < draw].reset_index(drop=True)
    missing = sorted(set(range(draw)) - set(keep["draw"].astype(int)))
    if missing:
        raise ValueError(
            f"{what}: draw {draw} extends draws 0..{draw - 1}, but the stored {what} lacks draw(s) "
            f"{missing}; run the iteration from draw 0 (eurus-prime train does)"
        )
    return keep


def usable_buffer(buffer: pd.DataFrame | None, cfg: PrimeConfig, iteration: int) -> pd.DataFrame:
    """The buffered groups iteration ``iteration`` may draw first: made at most
    ``cfg.buffer_max_staleness`` iterations ago, oldest first (FIFO), at most B of them."""
    if buffer is None or len(buffer) == 0 or cfg.buffer_max_staleness == 0:
        return pd.DataFrame(columns=BUFFER_COLUMNS)
    missing = sorted(set(BUFFER_COLUMNS) - set(buffer.columns))
    if missing:
        raise ValueError(f"group_buffer lacks column(s) {missing}; expected {BUFFER_COLUMNS}")
    age = iteration - buffer["made_at"].astype(int)
    fresh = buffer[(age >= 1) & (age <= cfg.buffer_max_staleness)]
    return fresh.sort_values("made_at", kind="stable").head(cfg.prompts_per_step).reset_index(drop=True)


def sample_prompts(
    prompts: pd.DataFrame,
    cfg: PrimeConfig,
    iteration: int,
    draw: int = 0,
    buffer: pd.DataFrame | None = None,
    earlier: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Draw ``draw`` of this iteration's prompts, appended to the iteration's earlier draws.

    Fresh prompts come from an endless sequence of seeded epochs (a fresh permutation of the
    training prompts per epoch). Draw 0 of iteration i takes ``cfg.prompts_drawn`` (M) prompts
    from positions [i*M, (i+1)*M), so it depends only on (seed, iteration), never on earlier runs;
    draw k > 0 takes M from positions ``k * DRAW_STRIDE`` iterations further along. A prompt the
    iteration already holds (from an earlier draw or the buffer) is skipped and the window extends
    by one, so an iteration never holds one prompt twice.

    Draw 0 first takes the buffered groups (``group_buffer`` of the previous iteration, in band
    under an earlier policy; ``usable_buffer``) and regenerates them with the current policy: only
    the current policy's samples are ever trained on.

    Args:
        buffer: the ``group_buffer`` table the previous iteration left (None or empty: none).
        earlier: the stored ``drawn_prompts`` of this iteration (draw k keeps its draws 0..k-1).
    Returns:
        One row per drawn prompt, earlier draws first: ``iteration``, ``draw``, ``position``
        (0, 1, ... over the whole iteration), ``source`` (``buffer`` or ``fresh``), ``epoch`` (-1
        for a buffered prompt), ``prompt_id``, ``data_source``, ``ability``, ``prompt`` (chat
        messages), ``ground_truth``.
    """
    if len(prompts) == 0:
        raise ValueError("prompts_train is empty: nothing to sample")
    if draw < 0:
        raise ValueError(f"draw = {draw} is invalid: must be >= 0")
    m, n = cfg.prompts_drawn, len(prompts)
    if m > n:
        raise ValueError(
            f"prime draws {m} prompts per iteration (prompts_per_step x oversample_factor) but "
            f"prompts_train has only {n}: lower prime.prompts_per_step or prime.oversample_factor"
        )
    before = earlier_draws(earlier, draw, "drawn_prompts")
    ids = [prompt_id(e) for e in prompts["extra_info"]]
    index_of = {pid: i for i, pid in enumerate(ids)}
    taken: set[int] = {index_of[p] for p in before.get("prompt_id", []) if p in index_of}
    picks: list[tuple[int, int, str]] = []  # (epoch, row index, source)
    if draw == 0:
        for pid in usable_buffer(buffer, cfg, iteration)["prompt_id"]:
            if pid not in index_of:
                log.warning("sample_prompts: buffered prompt %s is not in prompts_train; dropped", pid)
            elif index_of[pid] not in taken:
                taken.add(index_of[pid])
                picks.append((-1, index_of[pid], "buffer"))
    perms: dict[int, list[int]] = {}
    pos = (iteration + draw * DRAW_STRIDE) * m
    fresh = 0
    while fresh < m and len(taken) < n:
        epoch = pos // n
        if epoch not in perms:
            perm = list(range(n))
            random.Random(cfg.seed * 1_000_003 + epoch).shuffle(perm)
            perms[epoch] = perm
        index = perms[epoch][pos % n]
        pos += 1
        if index not in taken:
            taken.add(index)
            picks.append((epoch, index, "fresh"))
            fresh += 1
    rows = prompts.iloc[[i for _, i, _ in picks]]
    new = pd.DataFrame(
        {
            "iteration": iteration,
            "draw": draw,
            "position": np.arange(len(before), len(before) + len(picks)),
            "source": [s for _, _, s in picks],
            "epoch": [e for e, _, _ in picks],
            "prompt_id": [ids[i] for _, i, _ in picks],
            "data_source": rows["data_source"].to_numpy(),
            "ability": rows["ability"].to_numpy(),
            "prompt": [list(p) for p in rows["prompt"]],
            "ground_truth": [rm["ground_truth"] for rm in rows["reward_model"]],
        }
    )
    return pd.concat([before, new], ignore_index=True) if len(before) else new


def last_draw(drawn: pd.DataFrame) -> int:
    """The draw a cumulative table ends with (0 for a table without a ``draw`` column)."""
    return int(drawn["draw"].max()) if "draw" in drawn.columns and len(drawn) else 0


def generate_rollouts(
    checkpoint: Any,
    drawn: pd.DataFrame,
    cfg: PrimeConfig,
    iteration: int,
    policy_version: str,
    on_progress: ProgressFn | None = None,
    earlier: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Sample n responses per prompt of the last draw in ``drawn`` from the policy, appended to
    the rollouts of the iteration's earlier draws (``earlier``: the stored ``rollouts``; they must
    be the same policy's, so every group of an iteration comes from one policy version).

    Returns one row per rollout (the n samples of a prompt contiguous, in ``drawn``'s order):
    ``iteration``, ``policy_version``, ``prompt_id``, ``sample_idx``, ``draw``, ``position``,
    ``data_source``, ``ability``, ``ground_truth``, ``prompt_text``, ``response``, ``prompt_ids``,
    ``response_ids``, ``response_length``, ``finish_reason`` and ``sampling_logprobs``: each
    response token's log-prob under the sampling distribution (None with an engine that does not
    return them).
    """
    draw = last_draw(drawn)
    before = earlier_draws(earlier, draw, "rollouts")
    if draw:
        expected = np.repeat(drawn.loc[drawn["draw"] < draw, "prompt_id"].to_numpy(), cfg.samples_per_prompt)
        if len(before) != len(expected) or (before["prompt_id"].to_numpy() != expected).any():
            raise ValueError(
                f"rollouts: the stored rollouts of draws 0..{draw - 1} do not match drawn_prompts' "
                "prompts of those draws; rerun the iteration from draw 0"
            )
        stale = sorted(set(before["policy_version"]) - {policy_version})
        if stale:
            raise ValueError(
                f"rollouts: draws 0..{draw - 1} were sampled from policy {stale[0]}, not the current "
                f"policy {policy_version}; rerun the iteration from draw 0"
            )
        drawn = drawn[drawn["draw"] == draw].reset_index(drop=True)
    new = _sample(checkpoint, drawn, cfg, iteration, policy_version, draw, on_progress)
    if not len(before):
        return new
    if new["sampling_logprobs"].isna().all() != before["sampling_logprobs"].isna().all():
        raise ValueError("rollouts: earlier draws and this one came from engines that differ in sampling log-probs")
    return pd.concat([before, new], ignore_index=True)


def _sample(
    checkpoint: Any,
    drawn: pd.DataFrame,
    cfg: PrimeConfig,
    iteration: int,
    policy_version: str,
    draw: int,
    on_progress: ProgressFn | None,
) -> pd.DataFrame:
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
    stage = "rollout" if draw == 0 else f"rollout/draw{draw}"

    def sample(rows: list[int], seed: int) -> list[Any]:
        return generate(
            model,
            tok,
            [texts[rep[i]] for i in rows],
            max_new_tokens=cfg.max_response_length,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            batch_size=cfg.generation_batch_size,
            seed=seed,
            engine=cfg.rollout_engine,
            engine_options=cfg.engine_options,
            on_progress=on_progress,
        )

    rows = list(range(len(rep)))
    if cfg.rollout_chunk is None:
        gens = sample(rows, stage_seed(cfg, iteration, stage))
    else:  # chunks with their own seeds, spread over an SPMD campaign's ranks (engines/spmd.py)
        size = int(cfg.rollout_chunk)
        chunks = [rows[i : i + size] for i in range(0, len(rows), size)]
        done = spmd.map_shards(
            list(range(len(chunks))),
            lambda ks: [sample(chunks[k], stage_seed(cfg, iteration, f"{stage}/chunk{k}")) for k in ks],
        )
        gens = [g for chunk in done for g in chunk]
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
            "draw": draw,
            "position": drawn["position"].to_numpy()[rep],
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


def verify_rollouts(
    rollouts: pd.DataFrame, on_progress: ProgressFn | None = None, earlier: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Grade every rollout with the outcome verifier.

    ``earlier`` (the stored ``outcomes`` of this iteration): the verdicts of the earlier draws'
    rollouts are kept when they cover exactly those rollouts, and only the last draw is graded;
    otherwise (a manual rerun, a changed table) every rollout is graded again.

    Returns one row per rollout: the key (``prompt_id``, ``sample_idx``), ``draw``,
    ``data_source``, ``ability``, the verdict (``score``, ``correct``, ``reason``, ``extracted``,
    ``error``, ``isolation``, ...) and the ground-truth process label where the world has a step
    checker (``verifiers.process.process_columns``: ``first_wrong_step``, ``n_steps``,
    ``step_spans``, ``wrong_span``; null elsewhere).
    """
    draw = last_draw(rollouts)
    if draw and not _empty(earlier):
        assert earlier is not None
        kept = earlier[earlier["draw"] < draw].reset_index(drop=True)
        mine = rollouts[rollouts["draw"] < draw]
        if kept[KEY].equals(mine[KEY].reset_index(drop=True)):
            new = _verify(rollouts[rollouts["draw"] == draw].reset_index(drop=True), on_progress)
            return pd.concat([kept[new.columns], new], ignore_index=True)
        log.warning("verify_outcomes: the stored outcomes do not cover draws 0..%d; grading every rollout", draw - 1)
    return _verify(rollouts, on_progress)


def _verify(rollouts: pd.DataFrame, on_progress: ProgressFn | None) -> pd.DataFrame:
    # A low-entropy policy often samples the same response several times: grade each distinct
    # (ability, response, ground truth) once. Verifiers are pure functions of these three.
    triples = list(zip(rollouts["ability"], rollouts["response"], rollouts["ground_truth"]))
    distinct = list(dict.fromkeys(triples))
    # In an SPMD campaign each rank grades its block of the distinct triples and every rank gets
    # all the verdicts (engines/spmd.py); in one process this is one verify_all call.
    verdicts = spmd.map_shards(distinct, lambda part: verify_triples(part, on_progress))
    by_triple = dict(zip(distinct, verdicts))
    out = rollouts[KEY + ["data_source", "ability"]].reset_index(drop=True)
    out.insert(2, "draw", rollouts["draw"].to_numpy() if "draw" in rollouts else 0)
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
    """Accuracy-band filter over every group drawn so far, one row per prompt in draw order
    (buffered groups first, then each draw's in turn).

    Columns: ``prompt_id``, ``draw``, ``data_source``, ``ability``, ``n``, ``accuracy`` (mean score
    over the n samples), ``in_band``, ``selected`` (trains this step) and ``status``:
    ``selected`` (the first B in-band groups), ``surplus`` (in band, beyond B: carried to the next
    iteration's draw in ``group_buffer``), ``too_easy``, ``too_hard``, or ``filled`` (out of band
    but selected to fill the batch in ``fixed_batch`` mode).

    Raises NothingSelected when no group is in band (``regenerate``, ``single_draw``): the
    training loop then draws again, up to ``max_draws_per_iteration`` draws.
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
    if cfg.filter_mode != "fixed_batch" and len(passing) == 0:
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
    draws = first["draw"].to_numpy() if "draw" in first else np.zeros(len(first), dtype=np.int64)
    if selected.sum() < cfg.prompts_per_step and not more_draws_allowed(cfg, int(draws.max(initial=0))):
        log.warning(
            "filter: only %d of %d prompt groups selected (%d drawn in %d draw(s)); raise prime.oversample_factor "
            "or prime.max_draws_per_iteration to fill the batch",
            selected.sum(),
            cfg.prompts_per_step,
            len(acc),
            int(draws.max(initial=0)) + 1,
        )
    return pd.DataFrame(
        {
            "prompt_id": first["prompt_id"].to_numpy(),
            "draw": draws,
            "data_source": first["data_source"].to_numpy(),
            "ability": first["ability"].to_numpy(),
            "n": n,
            "accuracy": acc,
            "in_band": in_band,
            "selected": selected,
            "status": status,
        }
    )


def more_draws_allowed(cfg: PrimeConfig, draw: int) -> bool:
    """Whether the training loop may draw again after draw ``draw`` (``regenerate`` mode: the
    reference's loop, up to ``max_draws_per_iteration`` draws)."""
    return cfg.filter_mode == "regenerate" and draw + 1 < cfg.max_draws_per_iteration


def needs_another_draw(report: pd.DataFrame, cfg: PrimeConfig) -> bool:
    """After a filter: draw again (fewer than B groups selected, and draws left)."""
    draw = int(report["draw"].max()) if len(report) and "draw" in report else 0
    return int(report["selected"].sum()) < cfg.prompts_per_step and more_draws_allowed(cfg, draw)


def group_buffer(report: pd.DataFrame, iteration: int) -> pd.DataFrame:
    """The ``group_buffer`` an iteration leaves: its surplus in-band groups (``BUFFER_COLUMNS``;
    ``made_at`` = ``iteration``), which the next iterations' first draw takes first."""
    surplus = report[report["status"] == "surplus"]
    return pd.DataFrame(
        {
            "prompt_id": surplus["prompt_id"].to_numpy(),
            "data_source": surplus["data_source"].to_numpy(),
            "ability": surplus["ability"].to_numpy(),
            "accuracy": surplus["accuracy"].to_numpy(dtype=np.float64),
            "made_at": np.full(len(surplus), iteration, dtype=np.int64),
            "draw": surplus["draw"].to_numpy(dtype=np.int64),
        },
        columns=BUFFER_COLUMNS,
    )


def accuracy_histogram(acc: np.ndarray) -> str:
    """``{0.00: 12, 0.50: 3, 1.00: 49}``: prompt groups per accuracy value."""
    values, counts = np.unique(np.round(np.asarray(acc, dtype=np.float64), 4), return_counts=True)
    return "{" + ", ".join(f"{v:.2f}: {c}" for v, c in zip(values, counts)) + "}"


def filter_metrics(report: pd.DataFrame, drawn: pd.DataFrame | None = None) -> dict[str, float]:
    """``filter/...`` of a filter report (logged by the node, recomputed by ``curves``); with the
    ``drawn_prompts`` table also how the buffered groups fared."""
    metrics = {
        "filter/drawn": float(len(report)),
        "filter/draws": float(report["draw"].max() + 1) if "draw" in report and len(report) else 1.0,
        "filter/in_band_share": float(report["in_band"].mean()),
        "filter/selected": float(report["selected"].sum()),
        "filter/surplus": float((report["status"] == "surplus").sum()),
        "filter/too_easy_share": float((report["status"] == "too_easy").mean()),
        "filter/too_hard_share": float((report["status"] == "too_hard").mean()),
    }
    if drawn is not None and "source" in drawn:
        buffered = set(drawn.loc[drawn["source"] == "buffer", "prompt_id"])
        metrics["filter/buffered"] = float(len(buffered))
        if buffered:
            metrics["filter/buffered_in_band_share"] = float(
                report.loc[report["prompt_id"].isin(buffered), "in_band"].mean()
            )
    return metrics


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
