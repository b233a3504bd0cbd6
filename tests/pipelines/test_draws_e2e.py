"""The reference's filtering loop end to end: `train` draws again until B groups pass, every draw's
rows stay in the iteration's tables, and the surplus is drawn first by the next iteration.

Which groups pass is planted (two of every three, by position): the tiny test model answers
almost nothing right, so a real accuracy band would pass all groups or none."""

import json

import pandas as pd
import pytest
import torch

from eurus_prime.prime import rollouts as rollouts_lib
from eurus_prime.runs import manifests
from eurus_prime.runs.loop import train
from tests.pipelines.helpers import KEDRO, make_project, run


def _two_of_three(scores: torch.Tensor, n: int, low: float = 0.2, high: float = 0.8) -> torch.Tensor:
    return torch.arange(scores.numel() // n) % 3 != 2


def _table(project, iteration: int, name: str) -> pd.DataFrame:
    folder = project / f"data/05_rollouts/iter_{iteration:04d}/{name}.parquet"
    return pd.read_parquet(max(folder.iterdir()) / f"{name}.parquet")


@pytest.mark.slow
def test_train_draws_until_b_groups_pass_and_buffers_the_surplus(tmp_path, monkeypatch):
    project = make_project(tmp_path)
    run([KEDRO, "run", "--pipelines=bootstrap"], project)
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(rollouts_lib, "accuracy_band_keep", _two_of_three)
    lines: list[str] = []
    summaries = train(project, None, 2, echo=lines.append, params={"prime": {"eval_every": 0}})
    # B = 3, M = 3 per draw. Iteration 0: draw 0 passes 2 of 3, draw 1 brings it to 4: train on 3,
    # buffer 1. Iteration 1: the buffered prompt first, then 3 fresh: 3 pass at draw 0.
    assert [s["draws"] for s in summaries] == [2, 1]
    assert [s["filter/selected"] for s in summaries] == [3.0, 3.0]
    drawn0, report0 = _table(project, 0, "drawn_prompts"), _table(project, 0, "filter_report")
    assert drawn0["draw"].tolist() == [0, 0, 0, 1, 1, 1] and drawn0["prompt_id"].is_unique
    assert report0["status"].tolist() == ["selected", "selected", "too_hard", "selected", "surplus", "too_hard"]
    rollouts0 = _table(project, 0, "rollouts")
    assert rollouts0["draw"].tolist() == [0] * 6 + [1] * 6  # n = 2 samples per prompt, both draws kept
    assert rollouts0["policy_version"].nunique() == 1
    surplus = report0.loc[report0["status"] == "surplus", "prompt_id"].item()
    buffer = _table(project, 1, "group_buffer")
    assert buffer["prompt_id"].tolist() == [surplus] and buffer["made_at"].tolist() == [0]
    drawn1 = _table(project, 1, "drawn_prompts")
    assert drawn1["prompt_id"].iloc[0] == surplus and drawn1["source"].tolist() == ["buffer"] + ["fresh"] * 3
    # The selected groups, and only they, are trained on: the advantages cover 3 groups of n = 2.
    advantages0 = _table(project, 0, "advantages")
    assert sorted(set(advantages0["prompt_id"])) == sorted(report0.loc[report0["selected"], "prompt_id"])
    # Each draw's stages have their manifests, with the draw they ran at.
    root = project / manifests.ROOT
    assert [m["params"]["params:draw"] for m in manifests.read_all("iter_0000", "sample_prompts", root)] == [0, 1]
    assert len(manifests.read_all("iter_0000", "generate_rollouts", root)) == 2
    assert len(manifests.read_all("iter_0000", "update_policy", root)) == 1
    log = [json.loads(line) for line in (project / "data/08_reporting/train_log.jsonl").read_text().splitlines()]
    assert [r["filter/draws"] for r in log] == [2.0, 1.0] and log[1]["filter/buffered"] == 1.0
