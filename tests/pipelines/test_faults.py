"""Fault injection: crash every stage of prime_iteration, resume, and get the uninterrupted run.

Each case copies one bootstrapped tiny project, runs ``eurus-prime train --iterations 2`` with
``EURUS_PRIME_FAULT`` naming a stage (the fault fires in iteration 0), checks the crash left the
state it should (no manifest for the stage; a torn temporary file or an unmanifested version),
then runs the same command again and checks:

- every final table and checkpoint equals the uninterrupted reference run's, bit for bit on CPU
  (checkpoints by the SHA-256 of their weights and optimizer state);
- nothing is left behind: no temporary files, one version per output;
- MLflow has one finished campaign run and exactly one run per iteration, none left RUNNING.
"""

import os
import shutil
import subprocess
from pathlib import Path

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

ITERATIONS = 2
TRAIN = [EURUS_PRIME, "train", "--iterations", str(ITERATIONS)]

#: (stage, kind, where): every stage, every kind of crash and every place one can happen.
FAULTS = [
    ("sample_prompts", "exit", "write"),  # torn Parquet write
    ("generate_rollouts", "exit", "middle"),  # kill -9 half way through generation
    ("verify_outcomes", "raise", "start"),  # an exception before any work
    ("filter_prompts", "exit", "saved"),  # its table saved, its metrics and manifest not
    ("compute_process_rewards", "exit", "write"),
    ("update_prm", "exit", "saved"),  # the new PRM checkpoint saved, its tables not
    ("estimate_advantages", "raise", "middle"),
    ("update_policy", "exit", "write"),  # torn checkpoint folder
    ("evaluate_policy", "exit", "saved"),
]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    return {**env, "TQDM_DISABLE": "1", "KEDRO_DISABLE_TELEMETRY": "1", **extra}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    project = make_project(tmp_path_factory.mktemp("bootstrapped"))
    run([KEDRO, "run", "--pipelines=bootstrap"], project, env=_env())
    return project


def _copy(base: Path, dest: Path) -> Path:
    shutil.copytree(base, dest)
    return dest


@pytest.fixture(scope="module")
def reference(base, tmp_path_factory) -> dict:
    project = _copy(base, tmp_path_factory.mktemp("reference") / "p")
    run(TRAIN, project, env=_env())
    return fingerprint(project)


def resume_and_compare(project: Path, reference: dict) -> str:
    """Run the training command again; the result must be the uninterrupted run's, cleanly."""
    out = run(TRAIN, project, env=_env()).stdout
    assert_same(fingerprint(project), reference)
    assert_clean(project)
    assert_one_run_per_iteration(project, ITERATIONS)
    return out


def _crash(project: Path, spec: str, **extra_env) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        TRAIN, cwd=project, capture_output=True, text=True, timeout=900, env=_env(**{faults.ENV: spec}, **extra_env)
    )
    assert proc.returncode != 0, proc.stdout[-2000:]
    return proc


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "kind", "where"), FAULTS, ids=[f"{s}-{k}@{w}" for s, k, w in FAULTS])
def test_a_crash_in_any_stage_resumes_to_the_uninterrupted_result(base, reference, tmp_path, stage, kind, where):
    project = _copy(base, tmp_path / "p")
    proc = _crash(project, f"{stage}:{kind}@{where}")
    output = proc.stdout + proc.stderr
    assert f"injected fault {stage}:{kind}@{where}" in output
    assert proc.returncode == (faults.EXIT_CODE if kind == "exit" else 1)
    # The crash left what it should: the stage incomplete, and for a torn or partial write, debris.
    assert manifests.latest("iter_0000", stage, project / "data/09_manifests") is None
    if where == "write":
        assert manifests.leftovers(project / "data"), "a torn write leaves its temporary file"

    resumed = resume_and_compare(project, reference)
    if stage != "sample_prompts":
        assert f"resuming at stage {stage}" in resumed


@pytest.mark.slow
def test_a_hung_stage_is_stopped_by_its_watchdog_with_progress_and_stacks_then_resumes(base, reference, tmp_path):
    project = _copy(base, tmp_path / "p")
    proc = subprocess.run(
        TRAIN + ["--params", "watchdog.stages.verify_outcomes=3"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(**{faults.ENV: "verify_outcomes:hang@start"}),
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert "watchdog: stage verify_outcomes ran past its limit of 3 s" in output
    assert "progress: verify_outcomes after" in output
    reports = list((project / "data/08_reporting/watchdog").glob("verify_outcomes-*.txt"))
    assert len(reports) == 1
    dump = reports[0].read_text()
    assert "stack of every thread" in dump and "faults.py" in dump and "in point" in dump
    assert "StageTimeout" in output
    resume_and_compare(project, reference)


@pytest.mark.slow
def test_two_runs_with_one_seed_give_identical_tables_and_checkpoints(base, reference, tmp_path):
    project = _copy(base, tmp_path / "p")
    run(TRAIN, project, env=_env())
    assert_same(fingerprint(project), reference)


@pytest.mark.slow
def test_a_response_budget_beyond_the_context_fails_before_any_stage_runs(base, tmp_path):
    project = _copy(base, tmp_path / "p")
    proc = subprocess.run(
        [KEDRO, "run", "--pipelines=prime_iteration", "--params=prime.max_response_length=400"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(),
    )
    assert proc.returncode != 0
    message = "".join((proc.stdout + proc.stderr).split())  # rich wraps long lines anywhere
    assert (
        "prime.max_prompt_length(256)+prime.max_response_length(400)=656tokensexceedsthepolicy'scontextof512"
    ) in message
    assert not (project / "data/09_manifests/iter_0000").exists()  # no stage ran


@pytest.mark.slow
def test_when_every_group_is_filtered_out_training_draws_again_then_stops_with_the_distribution(base, tmp_path):
    project = _copy(base, tmp_path / "p")
    impossible = [
        "--params",
        "prime.filter_low=0.3,prime.filter_high=0.4,prime.max_draws_per_iteration=2",
    ]  # n=2: 0, .5, 1
    proc = subprocess.run(TRAIN + impossible, cwd=project, capture_output=True, text=True, timeout=600, env=_env())
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert "drawing again (draw 2 of at most 2)" in output
    flat = "".join(output.split())
    assert (
        "Error:NothingSelected:everyoneofthe6drawnpromptgroupsisoutsidetheaccuracyband[0.3,0.4]:"
        "accuracydistribution{" in flat
    )
    assert "stillnothingafter2draw(s)(prime.max_draws_per_iteration=2);stopping." in flat
    # Both draws are kept, with their manifests saying which draw each was; the second extends the first.
    draws = manifests.read_all("iter_0000", "sample_prompts", project / "data/09_manifests")
    assert [d["params"]["params:draw"] for d in draws] == [0, 1]
    assert manifests.latest("iter_0000", "filter_prompts", project / "data/09_manifests") is None
    # The stop is persistent: running again resumes at the filter of draw 1, not at a fresh draw 0.
    again = subprocess.run(TRAIN + impossible, cwd=project, capture_output=True, text=True, timeout=600, env=_env())
    assert again.returncode == 1 and "resuming at stage filter_prompts (no manifest)" in again.stdout
    assert len(manifests.read_all("iter_0000", "sample_prompts", project / "data/09_manifests")) == 2
    # MLflow: one run per draw (params are write-once), the stopped campaign FAILED, none RUNNING.
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    attempts = {r.data.params.get("draw") for r in runs if r.data.tags.get("eurus_prime.iteration") == "0"}
    assert attempts == {"0", "1"}
