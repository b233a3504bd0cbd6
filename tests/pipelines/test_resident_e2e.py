"""Resident models end to end: a campaign whose stages hand the policy, PRM and reference on in
memory trains exactly what the campaign that reads every checkpoint from disk trains, and after
its first iteration reads no checkpoint from disk at all."""

import json
import shutil

import pandas as pd
import pytest
import torch

from eurus_prime.runs.loop import train
from tests.pipelines.helpers import KEDRO, make_project, run

TABLES = {
    "05_rollouts": ("rollouts", "process_rewards", "prm_rewards", "advantages"),
    "07_model_output": ("eval_items",),
    "08_reporting": ("prm_stats", "ppo_stats", "prm_eval"),
}


def _table(project, iteration: int, layer: str, name: str) -> pd.DataFrame:
    folder = project / f"data/{layer}/iter_{iteration:04d}/{name}.parquet"
    return pd.read_parquet(max(folder.iterdir()) / f"{name}.parquet")


def _no_times(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=[c for c in table.columns if "second" in c or c.endswith("_s")])


def _labels_checked(project, table: pd.DataFrame) -> pd.DataFrame:
    """Each checkpoint label names a version saved in ``project`` (the save times differ between
    the two projects, so the labels are compared without them)."""
    for column in ("policy_version", "version"):
        if column in table:
            for label in set(table[column]):
                folder, _, version = label.partition("@")
                saved = [project / d / folder / version for d in ("data", "data/06_models")]
                assert any(f.is_dir() for f in saved), (column, label)
            table = table.assign(**{column: table[column].str.partition("@")[0]})
    return table


def _weights(project, model: str, iteration: int) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    folder = project / f"data/06_models/{model}/iter_{iteration:04d}"
    return load_file(max(folder.iterdir()) / f"iter_{iteration:04d}" / "model.safetensors")


@pytest.mark.slow
def test_resident_campaign_trains_what_the_disk_campaign_trains_and_reads_no_checkpoint_after_iteration_0(
    tmp_path, monkeypatch
):
    disk = make_project(tmp_path / "disk")
    run([KEDRO, "run", "--pipelines=bootstrap"], disk)
    resident = tmp_path / "resident"
    shutil.copytree(disk, resident)  # the same SFT model, tokenizer and prompts
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "1")
    params = {"prime": {"eval_every": 1}}
    monkeypatch.setenv("EURUS_PRIME_RESIDENT", "0")
    off = train(disk, None, 3, echo=lambda _: None, params=params)
    monkeypatch.setenv("EURUS_PRIME_RESIDENT", "1")
    on = train(resident, None, 3, echo=lambda _: None, params=params)

    assert [s["resident/served"] for s in off] == [0.0, 0.0, 0.0]
    reads_off = [s["resident/read"] for s in off]
    assert min(reads_off) >= 7  # policy x3 (+ evaluation), PRM x2 (+ evaluate_prm), reference
    # Iteration 0 reads the SFT model once per slot (policy, PRM, reference); later ones read nothing.
    assert [s["resident/read"] for s in on] == [3.0, 0.0, 0.0]
    assert [s["resident/read"] + s["resident/served"] for s in on] == reads_off
    for i in range(3):
        for layer, names in TABLES.items():
            for name in names:
                a, b = (_labels_checked(p, _table(p, i, layer, name)) for p in (disk, resident))
                pd.testing.assert_frame_equal(_no_times(a), _no_times(b), obj=f"iteration {i} {name}")
    for model in ("policy", "prm"):
        a, b = _weights(disk, model, 3), _weights(resident, model, 3)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (model, k)
    log = [json.loads(x) for x in (resident / "data/08_reporting/train_log.jsonl").read_text().splitlines()]
    assert [r["resident/served"] for r in log] == [s["resident/served"] for s in on]
