"""Resident models end to end: a campaign whose stages hand the policy, PRM and reference on in
memory trains exactly what the campaign that reads every checkpoint from disk trains, and after
its first iteration reads no checkpoint from disk at all."""

import json
import shutil
from pathlib import Path

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


@pytest.mark.slow
def test_save_every_keeps_checkpoints_in_memory_and_a_later_run_replays_from_the_last_saved_one(tmp_path, monkeypatch):
    """``train.save_every`` 3 over 3 iterations writes only the last iteration's checkpoints. A
    campaign that dies after iteration 1 has no checkpoint on disk but the SFT model: the next run
    replays iterations 0 and 1 from it and trains exactly what an uninterrupted campaign that saves
    every iteration trains."""
    from eurus_prime.runs import loop

    every = make_project(tmp_path / "every")
    run([KEDRO, "run", "--pipelines=bootstrap"], every)
    sparse = tmp_path / "sparse"
    shutil.copytree(every, sparse)
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "1")
    params = {"prime": {"eval_every": 1}}
    train(every, None, 3, echo=lambda _: None, params=params)

    real = loop._progress_line

    def dies_after_iteration_1(summary):
        if summary["iteration"] == 1:
            raise RuntimeError("the machine went away")
        return real(summary)

    monkeypatch.setattr(loop, "_progress_line", dies_after_iteration_1)
    with pytest.raises(RuntimeError, match="went away"):
        train(sparse, None, 3, echo=lambda _: None, params=params, save_every=3)
    models = sparse / "data/06_models"

    def weights_written(rel: str) -> bool:
        (version,) = sorted((models / rel).iterdir())[-1:]
        name = Path(rel).name
        assert (version / name / "MEMORY_ONLY").exists() != (version / name / "model.safetensors").exists()
        return (version / name / "model.safetensors").exists()

    assert not weights_written("policy/iter_0001") and not weights_written("prm/iter_0002")
    # a single-stage rerun in a new process says why there is nothing to load
    from kedro.io import DatasetError
    from kedro.io.core import Version

    from eurus_prime.datasets import HFCheckpointDataset

    with pytest.raises(DatasetError, match="train.save_every kept that iteration's checkpoint in the memory"):
        HFCheckpointDataset(str(models / "policy/iter_0001"), version=Version(None, None), iteration=1).load()
    assert loop.replay_from(sparse / "data/09_manifests") == 0
    monkeypatch.setattr(loop, "_progress_line", real)
    lines: list[str] = []
    summaries = train(sparse, None, 3, echo=lines.append, params=params, save_every=3)
    assert any("replaying from the last saved checkpoint" in x for x in lines)
    assert [s["iteration"] for s in summaries] == [0, 1, 2]
    assert [s["resident/read"] for s in summaries] == [3.0, 0.0, 0.0]  # iterations 1, 2: from memory
    assert not weights_written("policy/iter_0001") and weights_written("policy/iter_0003")
    for model in ("policy", "prm"):
        a, b = _weights(every, model, 3), _weights(sparse, model, 3)
        assert all(torch.equal(a[k], b[k]) for k in a), model
    a, b = _table(every, 2, "05_rollouts", "rollouts"), _table(sparse, 2, "05_rollouts", "rollouts")
    assert a["response_ids"].map(list).tolist() == b["response_ids"].map(list).tolist()
    # the rollout report's tokenizer comes from the SFT model where the iteration's policy is not on disk
    from eurus_prime.reports import inspection

    frame, tokenizer = inspection.load_rollouts(sparse, 2)
    assert len(frame) == len(b) and tokenizer is not None
