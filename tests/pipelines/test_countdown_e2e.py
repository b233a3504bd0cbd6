"""The countdown world end to end at tiny sizes: bootstrap with --env countdown, then PRIME
iterations with the oracle process reward, step labels in the outcomes and the countdown verifier's
verdicts."""

import pandas as pd
import pytest

from eurus_prime.datasets.versions import latest_version
from tests.pipelines.helpers import EURUS_PRIME, KEDRO, STEP_WORLD_PARAMS, make_project, overlay_env, run

TINY_COUNTDOWN = {
    **STEP_WORLD_PARAMS,
    "countdownworld": {"n_sft": 300, "n_train": 40, "n_val": 20, "n_test": 40, "seed": 1},
    # a 320-token vocabulary spells the question out
    "prime": {**STEP_WORLD_PARAMS["prime"], "max_prompt_length": 256},
}


@pytest.mark.slow
def test_countdown_world_bootstraps_and_trains_with_the_oracle(tmp_path):
    project = make_project(tmp_path)
    overlay_env(project, "countdown", TINY_COUNTDOWN)

    run([KEDRO, "run", "--env", "countdown", "--pipelines=bootstrap"], project)
    demos = pd.read_parquet(latest_version(project / "data/01_raw/sft_demonstrations.parquet"))
    assert len(demos) == 300 and (demos["ability"] == "countdown").all() and demos["first_wrong_step"].ge(-1).all()
    test = pd.read_parquet(latest_version(project / "data/02_primary/prompts_test.parquet"))
    assert set(test["data_source"].str.extract(r"countdown_(\w+)_n")[0]) == {"id", "novel"}

    run([EURUS_PRIME, "train", "--project", str(project), "--env", "countdown", "--iterations", "2"], project)
    outcomes = pd.read_parquet(latest_version(project / "data/05_rollouts/iter_0001/outcomes.parquet"))
    assert outcomes["first_wrong_step"].notna().all()
    assert (outcomes["verifier"] == "countdown/steps-1").all()
    # the verifier and the step label are one re-execution: right exactly when no step is wrong
    assert ((outcomes["score"] == 1.0) == (outcomes["first_wrong_step"] == -1)).all()
    rewards = pd.read_parquet(latest_version(project / "data/05_rollouts/iter_0001/prm_rewards.parquet"))
    assert (rewards["process_reward"] == "oracle").all()
