"""The reference's filtering loop as data: cumulative draws, the group buffer, the redraw rule."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from eurus_prime.prime import rollouts as rollouts_lib
from tests.prime.test_stages import CFG, _ckpt


@pytest.fixture(scope="module")
def train(small_world):
    prompts, _ = small_world
    return prompts[[e["split"] == "train" for e in prompts["extra_info"]]].reset_index(drop=True)


def _outcomes(groups: dict[str, list[int]], draws: list[int]) -> pd.DataFrame:
    n = len(next(iter(groups.values())))
    return pd.DataFrame(
        {
            "prompt_id": np.repeat(list(groups), n),
            "sample_idx": np.tile(range(n), len(groups)),
            "draw": np.repeat(draws, n),
            "data_source": "s",
            "ability": "math",
            "score": np.concatenate([np.asarray(v, float) for v in groups.values()]),
        }
    )


def test_filter_selects_the_first_b_in_band_groups_over_all_draws_and_buffers_the_surplus():
    cfg = dataclasses.replace(CFG, samples_per_prompt=4, prompts_per_step=3, filter_low=0.2, filter_high=0.8)
    outcomes = _outcomes(
        {
            "a": [1, 1, 1, 1],
            "b": [1, 0, 0, 0],
            "c": [0, 0, 0, 0],
            "d": [1, 1, 0, 0],
            "e": [1, 1, 1, 0],
            "f": [0, 1, 0, 0],
        },
        draws=[0, 0, 1, 1, 2, 2],
    )
    report = rollouts_lib.filter_prompts(outcomes, cfg)
    assert report["draw"].tolist() == [0, 0, 1, 1, 2, 2]
    assert report["status"].tolist() == ["too_easy", "selected", "too_hard", "selected", "selected", "surplus"]
    assert not rollouts_lib.needs_another_draw(report, cfg)  # B = 3 passed
    buffer = rollouts_lib.group_buffer(report, iteration=7)
    assert buffer.to_dict("records") == [
        {"prompt_id": "f", "data_source": "s", "ability": "math", "accuracy": 0.25, "made_at": 7, "draw": 2}
    ]
    # Two of B = 3 after draw 1: draw again while draws are left, never beyond the limit or in other modes.
    short = rollouts_lib.filter_prompts(outcomes.iloc[:16], cfg)
    assert short["selected"].sum() == 2
    assert rollouts_lib.needs_another_draw(short, cfg)
    assert not rollouts_lib.needs_another_draw(short, dataclasses.replace(cfg, max_draws_per_iteration=2))
    assert not rollouts_lib.needs_another_draw(short, dataclasses.replace(cfg, filter_mode="single_draw"))
    assert rollouts_lib.group_buffer(short, 7).empty and list(rollouts_lib.group_buffer(short, 7).columns) == (
        rollouts_lib.BUFFER_COLUMNS
    )


def test_usable_buffer_keeps_recent_groups_oldest_first_at_most_b():
    cfg = dataclasses.replace(CFG, prompts_per_step=2, buffer_max_staleness=2)
    buffer = pd.DataFrame(
        {
            "prompt_id": ["old", "new", "mid", "future", "older"],
            "data_source": "s",
            "ability": "math",
            "accuracy": 0.5,
            "made_at": [8, 9, 8, 10, 7],
            "draw": 0,
        }
    )
    assert rollouts_lib.usable_buffer(buffer, cfg, iteration=10)["prompt_id"].tolist() == ["old", "mid"]
    assert rollouts_lib.usable_buffer(buffer, dataclasses.replace(cfg, prompts_per_step=9), 10)[
        "prompt_id"
    ].tolist() == ["old", "mid", "new"]  # "older" is 3 iterations old; "future" is not older than now
    assert rollouts_lib.usable_buffer(buffer, dataclasses.replace(cfg, buffer_max_staleness=0), 10).empty
    with pytest.raises(ValueError, match=r"group_buffer lacks column\(s\) \['made_at'\]"):
        rollouts_lib.usable_buffer(buffer.drop(columns="made_at"), cfg, 10)


def test_draw_zero_takes_the_buffer_first_and_never_a_prompt_twice(train):
    cfg = dataclasses.replace(CFG, buffer_max_staleness=1)
    plain = rollouts_lib.sample_prompts(train, cfg, iteration=3)
    buffered_ids = [plain["prompt_id"].iloc[2], rollouts_lib.prompt_id(train["extra_info"].iloc[-1])]
    buffer = pd.DataFrame(
        {"prompt_id": buffered_ids, "data_source": "s", "ability": "math", "accuracy": 0.5, "made_at": 2, "draw": 0}
    )
    drawn = rollouts_lib.sample_prompts(train, cfg, iteration=3, buffer=buffer)
    assert drawn["prompt_id"].tolist()[:2] == buffered_ids
    assert drawn["source"].tolist() == ["buffer"] * 2 + ["fresh"] * cfg.prompts_drawn
    assert drawn["prompt_id"].is_unique
    # the fresh part is the plain draw, less the buffered prompt it held, extended by one
    fresh = drawn.loc[drawn["source"] == "fresh", "prompt_id"].tolist()
    assert fresh[: len(plain) - 1] == [p for p in plain["prompt_id"] if p != buffered_ids[0]]
    # a buffered prompt gone from prompts_train is dropped, not an error
    gone = buffer.assign(prompt_id=["train/999999", buffered_ids[1]])
    assert rollouts_lib.sample_prompts(train, cfg, iteration=3, buffer=gone)["source"].tolist().count("buffer") == 1
    # a later draw does not take the buffer again
    later = rollouts_lib.sample_prompts(train, cfg, iteration=3, draw=1, buffer=buffer, earlier=drawn)
    assert (later.loc[later["draw"] == 1, "source"] == "fresh").all() and later["prompt_id"].is_unique


def test_a_later_draw_generates_only_its_prompts_and_keeps_the_earlier_rollouts_and_verdicts(train, tiny_tokenizer):
    sft = _ckpt(tiny_tokenizer)
    drawn0 = rollouts_lib.sample_prompts(train, CFG, iteration=0)
    rollouts0 = rollouts_lib.generate_rollouts(sft, drawn0, CFG, 0, sft.version)
    outcomes0 = rollouts_lib.verify_rollouts(rollouts0)
    drawn1 = rollouts_lib.sample_prompts(train, CFG, iteration=0, draw=1, earlier=drawn0)
    rollouts1 = rollouts_lib.generate_rollouts(sft, drawn1, CFG, 0, sft.version, earlier=rollouts0)
    n = CFG.samples_per_prompt
    assert rollouts1.iloc[: len(rollouts0)].equals(rollouts0)
    assert len(rollouts1) == len(drawn1) * n
    assert (rollouts1["prompt_id"].to_numpy() == np.repeat(drawn1["prompt_id"].to_numpy(), n)).all()
    assert rollouts1["draw"].tolist() == [0] * len(rollouts0) + [1] * (len(rollouts1) - len(rollouts0))
    # a rerun of the draw reproduces it
    assert rollouts1.equals(rollouts_lib.generate_rollouts(sft, drawn1, CFG, 0, sft.version, earlier=rollouts1))
    # the earlier verdicts are kept, not graded again (a planted score survives) ...
    planted = outcomes0.assign(score=7.0)
    outcomes1 = rollouts_lib.verify_rollouts(rollouts1, earlier=planted)
    assert (outcomes1["score"].iloc[: len(outcomes0)] == 7.0).all()
    assert outcomes1["score"].iloc[len(outcomes0) :].isin([0.0, 1.0]).all()
    assert outcomes1["draw"].tolist() == rollouts1["draw"].tolist()
    # ... unless they do not cover the earlier draws: then every rollout is graded
    regraded = rollouts_lib.verify_rollouts(rollouts1, earlier=planted.iloc[1:])
    assert regraded.equals(rollouts_lib.verify_rollouts(rollouts1))
    # every group of an iteration comes from one policy version
    with pytest.raises(ValueError, match=r"draws 0..0 were sampled from policy sft@v0, not the current policy p@v1"):
        rollouts_lib.generate_rollouts(sft, drawn1, CFG, 0, "p@v1", earlier=rollouts0)
    with pytest.raises(ValueError, match="do not match drawn_prompts' prompts of those draws"):
        rollouts_lib.generate_rollouts(sft, drawn1, CFG, 0, sft.version, earlier=rollouts0.iloc[n:])


def test_chunked_sampling_is_reproducible_and_each_chunk_is_its_own_seeded_call(train, tiny_tokenizer, monkeypatch):
    """``prime.rollout_chunk``: the completions are sampled in chunks, each with its own seed, so
    an SPMD campaign can spread the chunks over its ranks and sample the same rollouts."""
    sft = _ckpt(tiny_tokenizer)
    cfg = dataclasses.replace(CFG, rollout_chunk=3)
    drawn = rollouts_lib.sample_prompts(train, cfg, iteration=0)
    calls: list[tuple[int, int]] = []
    real = rollouts_lib.generate

    def spy(model, tok, texts, **kw):
        calls.append((len(texts), kw["seed"]))
        return real(model, tok, texts, **kw)

    monkeypatch.setattr(rollouts_lib, "generate", spy)
    chunked = rollouts_lib.generate_rollouts(sft, drawn, cfg, 0, sft.version)
    total = len(drawn) * cfg.samples_per_prompt
    assert [n for n, _ in calls] == [3] * (total // 3) + ([total % 3] if total % 3 else [])
    assert len({seed for _, seed in calls}) == len(calls)  # every chunk its own seed
    assert chunked.equals(rollouts_lib.generate_rollouts(sft, drawn, cfg, 0, sft.version))
    whole = rollouts_lib.generate_rollouts(sft, drawn, CFG, 0, sft.version)  # one call, one seed
    assert calls[-1][0] == total
    assert (chunked["prompt_id"] == whole["prompt_id"]).all() and len(chunked) == len(whole)
    with pytest.raises(ValueError, match="prime.rollout_chunk = 0 is invalid"):
        dataclasses.replace(CFG, rollout_chunk=0)
