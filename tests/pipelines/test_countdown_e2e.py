"""The countdown world end to end at tiny sizes: bootstrap with --env countdown, then PRIME
iterations with the oracle process reward, step labels in the outcomes and the countdown verifier's
verdicts."""

import pandas as pd
import pytest
import yaml

from eurus_prime.datasets.versions import latest_version
from tests.pipelines.helpers import EURUS_PRIME, KEDRO, make_project, run

TINY_COUNTDOWN = {
    "countdownworld": {"n_sft": 300, "n_train": 40, "n_val": 20, "n_test": 40, "seed": 1},
    "tokenizer": {"vocab_size": 320},
    "model": {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 64,
    },
    "sft": {"epochs": 1, "eval_every": 5, "batch_size": 32},
    "evaluation": {"max_new_tokens": 64},
    "prime": {
        "prompts_per_step": 3,
        "max_prompt_length": 256,  # a 320-token vocabulary spells the question out
        "oversample_factor": 1.0,
        "samples_per_prompt": 2,
        "max_response_length": 64,
        "filter_low": 0.0,
        "filter_high": 1.0,
        "generation_batch_size": 8,
        "prm_mini_batch": 4,
        "ppo_mini_batch": 4,
        "micro_batch": 4,
        "eval_max_items": 10,
        "process_reward": "oracle",
    },
}


@pytest.mark.slow
def test_countdown_world_bootstraps_and_trains_with_the_oracle(tmp_path):
    project = make_project(tmp_path)
    params = project / "conf/countdown/parameters.yml"
    merged = yaml.safe_load(params.read_text())
    for key, value in TINY_COUNTDOWN.items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    params.write_text(yaml.safe_dump(merged))

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
