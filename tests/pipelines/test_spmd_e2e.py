"""An SPMD campaign end to end: ``torchrun --nproc-per-node 2 -m eurus_prime train`` trains what
one process trains, and only rank 0 writes (one version of every table and checkpoint, one
manifest per stage, one MLflow campaign; rank 1 logs to its own file and saves nothing)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eurus_prime.runs import manifests
from eurus_prime.runs.guard import faults
from tests.pipelines.helpers import (
    EURUS_PRIME,
    KEDRO,
    assert_clean,
    assert_one_run_per_iteration,
    assert_same,
    fingerprint,
    make_project,
    run,
)

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
# two micro-batches per mini-batch (one per rank); 6 completions in chunks of 2 (3 chunks, split 2 + 1)
PARAMS = "prime.micro_batch=2,prime.eval_every=1,prime.rollout_chunk=2"
TABLES = {
    "05_rollouts": ("rollouts", "outcomes", "process_rewards", "prm_rewards", "advantages"),
    "08_reporting": ("prm_stats", "ppo_stats", "eval_report"),
}


def _versions(project: Path, relative: str) -> list[Path]:
    return sorted((project / relative).iterdir())


def _close(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    assert list(a.columns) == list(b.columns), what
    for column in a.columns:
        if "second" in column or column in ("policy_version", "version"):
            continue
        for x, y in zip(a[column], b[column]):
            try:
                np.testing.assert_allclose(np.asarray(x, float), np.asarray(y, float), atol=1e-5, err_msg=what)
            except (TypeError, ValueError):
                assert str(x) == str(y), (what, column)


@pytest.mark.slow
def test_two_ranks_train_what_one_process_trains_and_only_rank_0_writes(tmp_path):
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    one = make_project(tmp_path / "one")
    run([KEDRO, "run", "--pipelines=bootstrap"], one, env=env)
    two = tmp_path / "two"
    shutil.copytree(one, two)
    train = ["train", "--iterations", "2", "--params", PARAMS]
    run([EURUS_PRIME, *train, "--project", str(one)], one, env=env)
    out = run([TORCHRUN, "--nproc-per-node", "2", "-m", "eurus_prime", *train, "--project", str(two)], two, env=env)
    assert "SPMD: 2 ranks" in out.stdout and out.stdout.count("iteration 2/2:") == 1  # rank 0 alone prints

    for i in range(2):
        for layer, names in TABLES.items():
            for name in names:
                rel = f"data/{layer}/iter_{i:04d}/{name}.parquet"
                va, vb = _versions(one, rel), _versions(two, rel)
                assert len(vb) == 1, rel  # written once, by rank 0
                _close(pd.read_parquet(va[-1] / f"{name}.parquet"), pd.read_parquet(vb[-1] / f"{name}.parquet"), rel)
        for stage in ("update_prm", "update_policy"):
            assert len(list((two / f"data/09_manifests/iter_{i:04d}/{stage}").iterdir())) == 1
    from safetensors.torch import load_file

    for model in ("policy", "prm"):
        rel = f"data/06_models/{model}/iter_0002"
        (va,), (vb,) = _versions(one, rel), _versions(two, rel)
        wa, wb = load_file(va / "iter_0002/model.safetensors"), load_file(vb / "iter_0002/model.safetensors")
        assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5, model
    log = [json.loads(x) for x in (two / "data/08_reporting/train_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [0, 1]
    logs = sorted(p.name for p in (two / "data/08_reporting/logs").glob("train_*.log"))
    assert len(logs) == 2 and logs[1].endswith(".rank1.log")
    rank1 = (two / "data/08_reporting/logs" / logs[1]).read_text()
    assert "Running node: update_policy" in rank1 and "Saving data" not in rank1
    # rank 1 graded its block of the rollouts and of the held-out responses in every iteration
    for node in ("verify_outcomes", "evaluate_policy"):
        runs_of_node = [part.split("Running node:")[0] for part in rank1.split(f"Running node: {node}")[1:]]
        assert len(runs_of_node) == 2 and all("data-parallel: rank 1 of 2 takes items" in p for p in runs_of_node), node
    # rank 1 sampled the last of the 3 rollout chunks and scored the last of the 3 micro-batches
    # (6 rows, micro_batch 2) of each scoring pass
    assert rank1.count("data-parallel: rank 1 of 2 takes items 2-2 of 3") >= 3
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{two / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sum(r.data.tags.get("eurus_prime.role") == "campaign" for r in runs) == 1
    # rank 1 opens no runs of its own (kedro-mlflow's hooks are off there): every run but the
    # bootstrap's is the campaign or one of its iteration runs
    campaign = next(r.info.run_id for r in runs if r.data.tags.get("eurus_prime.role") == "campaign")
    strays = [r.info.run_name for r in runs if r.info.run_name != "bootstrap" and r.info.run_id != campaign]
    strays = [
        r.info.run_id for r in runs if r.info.run_name in strays and r.data.tags.get("mlflow.parentRunId") != campaign
    ]
    assert not strays


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_two_ranks_keep_their_deepspeed_engines_for_the_campaign(tmp_path, stage):
    """``prime.trainer_backend=deepspeed`` (ZeRO-2, and ZeRO-3 as in ``eurus7b``) on 2 resident ranks, 3 iterations, checkpoints
    written every 2nd (``train.save_every=2``: iterations 1 and 2). Each rank starts one engine per
    model for the whole campaign and continues it in every later update; the optimizer partitions
    are gathered only for the written checkpoints (both ranks' partitions in ``optimizer.pt``); the
    weights match one process's campaign."""
    from safetensors.torch import load_file

    from eurus_prime.datasets.checkpoint import MEMORY_ONLY, load_optimizer_state

    pytest.importorskip("deepspeed", reason="needs deepspeed (pip install -e '.[deepspeed]')")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    one = make_project(tmp_path / "one")
    run([KEDRO, "run", "--pipelines=bootstrap"], one, env=env)
    two = tmp_path / "two"
    shutil.copytree(one, two)
    params = (
        f"prime.micro_batch=2,prime.trainer_backend=deepspeed,prime.deepspeed.zero_stage={stage},train.save_every=2"
    )
    train = ["train", "--iterations", "3", "--params", params]
    run([EURUS_PRIME, *train, "--project", str(one)], one, env=env)
    run([TORCHRUN, "--nproc-per-node", "2", "-m", "eurus_prime", *train, "--project", str(two)], two, env=env)

    logs = sorted((two / "data/08_reporting/logs").glob("train_*.log"))
    assert len(logs) == 2
    for log in logs:
        text = log.read_text()
        assert text.count(f"deepspeed: engine started (ZeRO stage {stage}, 2 rank(s), kept") == 2, (
            log.name
        )  # policy, PRM
        assert text.count("deepspeed: continuing the engine of the previous update") == 4, log.name
    for model in ("policy", "prm"):
        (skipped,) = _versions(two, f"data/06_models/{model}/iter_0001")
        assert (skipped / "iter_0001" / MEMORY_ONLY).exists()  # iteration 0 kept it in memory
        for it in (2, 3):
            (vb,) = _versions(two, f"data/06_models/{model}/iter_{it:04d}")
            state = load_optimizer_state(vb / f"iter_{it:04d}/optimizer.pt")["deepspeed"]
            assert state["world_size"] == 2 and len(state["ranks"]) == 2 and all(state["ranks"]), (model, it)
        (va,) = _versions(one, f"data/06_models/{model}/iter_0003")
        wa, wb = load_file(va / "iter_0003/model.safetensors"), load_file(vb / "iter_0003/model.safetensors")
        assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5, model


@pytest.mark.slow
def test_a_rank_killed_during_an_update_stops_the_campaign_and_the_rerun_resumes_to_the_same_result(tmp_path):
    """kill -9 of rank 1 half way through iteration 2's policy update (``EURUS_PRIME_FAULT_RANK``):
    rank 0's collective loses its peer, rank 0 says so (not a bare gloo error) and the launcher
    fails the campaign; the same command again resumes at that update, from iteration 1's saved
    checkpoints, and ends with the tables and checkpoints of an uninterrupted 2-rank campaign, bit
    for bit, with one finished MLflow run per iteration and no debris."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    env.pop(faults.ENV, None)
    reference = make_project(tmp_path / "reference")
    run([KEDRO, "run", "--pipelines=bootstrap"], reference, env=env)
    faulty = tmp_path / "faulty"
    shutil.copytree(reference, faulty)

    def launch(project: Path, iterations: int) -> list[str]:
        return [TORCHRUN, "--nproc-per-node", "2", "-m", "eurus_prime", "train", "--iterations", str(iterations)] + [
            "--params",
            "prime.micro_batch=2",
            "--project",
            str(project),
        ]

    run(launch(reference, 2), reference, env=env)
    run(launch(faulty, 1), faulty, env=env)  # iteration 1 complete, its checkpoints saved
    crash = subprocess.run(
        launch(faulty, 2),
        cwd=faulty,
        capture_output=True,
        text=True,
        timeout=900,
        env={**env, faults.ENV: "update_policy:exit@middle", faults.RANK_ENV: "1"},
    )
    output = crash.stdout + crash.stderr
    assert crash.returncode != 0, output[-3000:]
    assert "injected fault update_policy:exit@middle" in output
    assert "rank 0 of 2: the SPMD campaign lost a rank in iteration 2" in output, output[-3000:]
    assert "run the same command again to resume" in output
    assert manifests.latest("iter_0001", "update_policy", faulty / "data/09_manifests") is None

    resumed = run(launch(faulty, 2), faulty, env=env).stdout
    assert "resuming at stage update_policy" in resumed
    assert_same(fingerprint(faulty), fingerprint(reference))
    assert_clean(faulty)
    assert_one_run_per_iteration(faulty, 2)
