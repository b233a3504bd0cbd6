"""PPO with a critic end to end: `eurus-prime train --params prime.advantage_estimator=gae` runs the
prime_iteration_ppo pipeline, whose critic checkpoints, values and value-loss tables are data, and
resumes a killed iteration at the critic's stage."""

import subprocess

import pandas as pd
import pytest

from eurus_prime.runs import manifests
from eurus_prime.runs.guard import faults
from tests.pipelines.helpers import EURUS_PRIME, KEDRO, make_project, run

GAE = ["--params", "prime.advantage_estimator=gae"]


def _env(**extra):
    import os

    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    return {**env, "TQDM_DISABLE": "1", "KEDRO_DISABLE_TELEMETRY": "1", **extra}


def _latest(project, path: str) -> pd.DataFrame:
    folder = project / path
    return pd.read_parquet(max(folder.iterdir()) / folder.name)


@pytest.mark.slow
def test_gae_trains_a_critic_and_resumes_at_update_critic(tmp_path):
    project = make_project(tmp_path)
    run([KEDRO, "run", "--pipelines=bootstrap"], project, env=_env())
    crash = _env(**{faults.ENV: "update_critic:raise@start"})  # in iteration 0
    proc = subprocess.run(
        [EURUS_PRIME, "train", "--iterations", "2", *GAE],
        cwd=project,
        capture_output=True,
        text=True,
        env=crash,
        timeout=600,
    )
    assert proc.returncode != 0
    again = run([EURUS_PRIME, "train", "--iterations", "2", *GAE], project, env=_env())
    assert "resuming at stage update_critic" in again.stdout
    root = project / manifests.ROOT
    for it in (0, 1):
        assert manifests.latest(f"iter_{it:04d}", "compute_values", root) is not None
        assert manifests.latest(f"iter_{it:04d}", "update_critic", root) is not None
    assert sorted(p.name for p in (project / "data/06_models/critic").iterdir()) == ["iter_0001", "iter_0002"]
    values0 = _latest(project, "data/05_rollouts/iter_0000/values.parquet")
    values1 = _latest(project, "data/05_rollouts/iter_0001/values.parquet")
    assert all((v == 0).all() for v in values0["values"])  # the new critic's head is 0
    assert values1["critic_version"].iloc[0].startswith("critic/iter_0001@")
    assert any((v != 0).any() for v in values1["values"])  # one update later it is not
    stats = _latest(project, "data/08_reporting/iter_0001/critic_stats.parquet")
    assert len(stats) and stats["vf_loss"].notna().all()
