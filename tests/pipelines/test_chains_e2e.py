"""The chains world end to end at tiny sizes: bootstrap with --env chains, then PRIME iterations
with the oracle process reward, step labels in the outcomes and PRM quality in the training log."""

import json

import pandas as pd
import pytest

from eurus_prime.datasets.versions import latest_version
from tests.pipelines.helpers import EURUS_PRIME, KEDRO, STEP_WORLD_PARAMS, make_project, overlay_env, run

TINY_CHAINS = {
    **STEP_WORLD_PARAMS,
    "chainworld": {
        "n_sft": 300,
        "n_train": 40,
        "n_val": 20,
        "n_test": 40,
        "min_terms": 6,
        "max_terms": 8,
        "novel_terms": [7],
        "max_traps": 2,
        "seed": 1,
    },
}


@pytest.mark.slow
def test_chains_world_bootstraps_and_trains_with_the_oracle(tmp_path):
    project = make_project(tmp_path)
    overlay_env(project, "chains", TINY_CHAINS)

    run([KEDRO, "run", "--env", "chains", "--pipelines=bootstrap"], project)
    demos = pd.read_parquet(latest_version(project / "data/01_raw/sft_demonstrations.parquet"))
    assert len(demos) == 300 and demos["first_wrong_step"].ge(-1).all()
    test = pd.read_parquet(latest_version(project / "data/02_primary/prompts_test.parquet"))
    assert set(test["data_source"].str.extract(r"chains_(\w+)_t")[0]) == {"id", "novel"}

    run([EURUS_PRIME, "train", "--project", str(project), "--env", "chains", "--iterations", "2"], project)
    outcomes = pd.read_parquet(latest_version(project / "data/05_rollouts/iter_0001/outcomes.parquet"))
    assert outcomes["first_wrong_step"].notna().all()
    rewards = pd.read_parquet(latest_version(project / "data/05_rollouts/iter_0001/prm_rewards.parquet"))
    assert (rewards["process_reward"] == "oracle").all()
    merged = rewards.merge(outcomes, on=["prompt_id", "sample_idx"])
    for k, r in zip(merged["first_wrong_step"], merged["token_rewards"]):
        assert r.sum() == pytest.approx(-1.0 if k >= 0 else 0.0, abs=1e-5)
    log = [json.loads(line) for line in (project / "data/08_reporting/train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all("prm_eval/fresh_ce" in e and "prm_eval/fresh_localisation" in e for e in log)
    assert "prm_eval/fixed_ce" in log[0]  # the fixed set is scored at iteration 0 (prm_eval.every)
    prm_eval = pd.read_parquet(latest_version(project / "data/08_reporting/iter_0000/prm_eval.parquet"))
    assert prm_eval["set"].tolist() == ["fresh", "fixed"]
