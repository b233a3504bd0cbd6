"""End-to-end runs of the real pipelines through ``kedro run``, on copies of the project."""

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from eurus_prime.datasets.versions import latest_version
from tests.pipelines.helpers import EURUS_PRIME, KEDRO, make_project, run


@pytest.fixture()
def project(tmp_path):
    return make_project(tmp_path)


_run = run


@pytest.mark.slow
def test_bootstrap_through_kedro_run_then_train_is_idempotent(project):
    _run([KEDRO, "run", "--pipelines=bootstrap"], project)
    sft = latest_version(project / "data/06_models/sft_model")
    assert (sft / "config.json").exists() and (sft / "tokenizer.json").exists()
    report = pd.read_parquet(latest_version(project / "data/08_reporting/sft_eval_report.parquet"))
    assert report.query("group == 'all'")["n"].item() == 60
    history = pd.read_parquet(latest_version(project / "data/08_reporting/sft_history.parquet"))
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]
    assert (project / "mlflow.db").exists()

    # The main job finds the SFT model and only reports: no second bootstrap.
    out = _run([EURUS_PRIME, "train", "--project", str(project), "--iterations", "0"], project).stdout
    assert "skipping the bootstrap" in out and "Held-out greedy pass@1" in out
    assert len(list((project / "data/06_models/sft_model").iterdir())) == 1

    # One stage reruns alone from its stored inputs and adds a version.
    _run([KEDRO, "run", "--pipelines=sft_eval"], project)
    assert len(list((project / "data/08_reporting/sft_eval_report.parquet").iterdir())) == 2


def _eurus_rows(n: int) -> pd.DataFrame:
    from eurus_prime.tasks.prompting import build_messages, system_prompt

    rows = []
    for i in range(n):
        math = i % 3
        rows.append(
            {
                "data_source": "numina_olympiads" if math else "taco",
                "prompt": build_messages(
                    f"Question {i}: what is {i} + {i}?", "math" if math else "code", system_prompt("eurus2")
                ),
                "ability": "math" if math else "code",
                "reward_model": {
                    "style": "rule",
                    "ground_truth": str(2 * i) if math else '{"inputs": ["1\\n"], "outputs": ["2\\n"]}',
                },
                "extra_info": {"split": "train", "index": i},
            }
        )
    return pd.DataFrame(rows)


def _raw_with_a_bad_row_7(project, n: int) -> None:
    raw = project / "data/01_raw"
    raw.mkdir(parents=True, exist_ok=True)
    rows = _eurus_rows(n)
    rows.at[7, "ability"] = "poetry"
    rows.to_parquet(raw / "eurus2_rl_data.parquet")


@pytest.mark.slow
def test_eurus7b_env_loads_a_local_parquet_in_the_eurus_schema(project):
    raw = project / "data/01_raw"
    raw.mkdir(parents=True, exist_ok=True)
    _eurus_rows(3000).to_parquet(raw / "eurus2_rl_data.parquet")
    _run(
        [
            KEDRO,
            "run",
            "--env",
            "eurus7b",
            "--pipelines=data_prep",
            "--params=data_prep.split.val_fraction=0.1,data_prep.split.test_fraction=0.1",
        ],
        project,
    )
    tables = {
        n: pd.read_parquet(latest_version(project / f"data/02_primary/prompts_{n}.parquet"))
        for n in ("train", "val", "test")
    }
    assert sum(len(t) for t in tables.values()) == 3000
    assert 200 < len(tables["test"]) < 400
    assert tables["train"]["prompt"].iloc[0][0]["content"].startswith("\nWhen tackling complex reasoning")


@pytest.mark.slow
def test_a_bad_row_fails_the_run_naming_file_row_and_field(project):
    _raw_with_a_bad_row_7(project, 10)
    proc = subprocess.run(
        [KEDRO, "run", "--env", "eurus7b", "--pipelines=data_prep"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0
    # Kedro's rich console wraps long lines at any character, so compare without whitespace.
    message = "".join((proc.stdout + proc.stderr).split())
    assert "eurus2_rl_data.parquet:row7,fieldability:mustbeoneof" in message


ITERATION_TABLES = [
    "05_rollouts/{it}/drawn_prompts",
    "05_rollouts/{it}/rollouts",
    "05_rollouts/{it}/outcomes",
    "05_rollouts/{it}/filter_report",
    "05_rollouts/{it}/process_rewards",
    "05_rollouts/{it}/prm_rewards",
    "05_rollouts/{it}/advantages",
    "08_reporting/{it}/prm_stats",
    "08_reporting/{it}/ppo_stats",
    "08_reporting/{it}/eval_report",
    "07_model_output/{it}/eval_items",
]


def _versions(folder: Path) -> list[Path]:
    return sorted(v / folder.name for v in folder.iterdir())


@pytest.mark.slow
def test_prime_iteration_runs_reruns_a_stage_identically_and_trains_with_resume(project):
    import mlflow

    _run([KEDRO, "run", "--pipelines=bootstrap"], project)
    # `kedro run --pipelines=prime_iteration` runs the next iteration: 0.
    _run([KEDRO, "run", "--pipelines=prime_iteration"], project)
    data = project / "data"
    for table in ITERATION_TABLES:
        folder = data / (table.format(it="iter_0000") + ".parquet")
        assert len(_versions(folder)) == 1, folder
    rollouts = pd.read_parquet(latest_version(data / "05_rollouts/iter_0000/rollouts.parquet"))
    assert len(rollouts) == 3 * 2 and rollouts["policy_version"].str.startswith("06_models/sft_model@").all()
    assert len(_versions(data / "06_models/policy/iter_0001")) == 1
    assert len(_versions(data / "06_models/prm/iter_0001")) == 1

    # Rerun one stage from its stored inputs, twice: bit-identical outputs, new versions.
    for _ in range(2):
        _run([KEDRO, "run", "--pipelines=prime_iteration", "--nodes=update_policy", "--params=iteration=0"], project)
    policies = _versions(data / "06_models/policy/iter_0001")
    assert len(policies) == 3
    weights = {(p / "model.safetensors").read_bytes() for p in policies}
    assert len(weights) == 1, "reruns of update_policy with the same inputs and seed must be identical"
    stats = [pd.read_parquet(p) for p in _versions(data / "08_reporting/iter_0000/ppo_stats.parquet")]
    pd.testing.assert_frame_equal(stats[1], stats[2])
    assert len(_versions(data / "05_rollouts/iter_0000/rollouts.parquet")) == 1  # nothing else reran

    # The training command continues at iteration 1 (a complete iteration is history) ...
    out = _run([EURUS_PRIME, "train", "--project", str(project), "--iterations", "2"], project).stdout
    assert "iteration 2/2: done in" in out and "iteration 1/2" not in out
    assert "Held-out greedy pass@1 on the same 10 test prompts" in out
    assert "\n  in_distribution " in out and "\n  novel " in out  # the tiny world's held-out kinds
    # ... and after losing the last stages of iteration 1, resumes at the first missing one.
    for rel in [
        "05_rollouts/iter_0001/advantages.parquet",
        "08_reporting/iter_0001/ppo_stats.parquet",
        "08_reporting/iter_0001/eval_report.parquet",
        "07_model_output/iter_0001/eval_items.parquet",
        "06_models/policy/iter_0002",
    ]:
        shutil.rmtree(data / rel)
    out = _run([EURUS_PRIME, "train", "--project", str(project), "--iterations", "2"], project).stdout
    assert "resuming at stage estimate_advantages" in out
    for table in ITERATION_TABLES:
        assert len(_versions(data / (table.format(it="iter_0001") + ".parquet"))) == 1
    assert len(_versions(data / "05_rollouts/iter_0001/rollouts.parquet")) == 1  # not regenerated
    import json

    log = [json.loads(x) for x in (data / "08_reporting/train_log.jsonl").read_text().splitlines()]
    assert [e["resumed_at"] for e in log] == ["sample_prompts", "estimate_advantages"]
    assert all(e["time/io_load"] > 0 and e["time/io_save"] > 0 and e["time/update_policy"] > 0 for e in log)

    # MLflow: one campaign run, finished, with the iteration's runs as children; nothing left running.
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    campaigns = [r for r in runs if r.data.tags.get("eurus_prime.role") == "campaign"]
    assert len(campaigns) == 1 and campaigns[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == campaigns[0].info.run_id]
    # One run per iteration: the resumed iteration 1 continued its run instead of opening another.
    assert len(children) == 1 and children[0].data.tags["eurus_prime.iteration"] == "1"
    assert not [r for r in runs if r.info.status == "RUNNING"]
    history = client.get_metric_history(campaigns[0].info.run_id, "filter/selected")
    assert {m.step for m in history} == {1}
    assert client.get_run(campaigns[0].info.run_id).data.params["prime.samples_per_prompt"] == "2"


@pytest.mark.slow
def test_quarantine_sets_a_bad_row_aside_and_splits_the_rest(project):
    import json

    import mlflow

    _raw_with_a_bad_row_7(project, 40)
    proc = _run(
        [
            KEDRO,
            "run",
            "--env",
            "eurus7b",
            "--pipelines=data_prep",
            "--params=data_prep.quarantine=true,data_prep.split.val_fraction=0.2,data_prep.split.test_fraction=0.2",
        ],
        project,
    )
    # Kedro's rich console wraps lines and puts the logger's file:line beside the first one.
    message = "".join((proc.stdout + proc.stderr).split())
    assert "1of40rows" in message
    assert "werequarantinedtoprompts_quarantine(data/02_primary/quarantine.parquet);39rowskept" in message
    assert "eurus2_rl_data.parquet:row7,fieldability:mustbeoneof" in message

    data = project / "data"
    quarantine = pd.read_parquet(latest_version(data / "02_primary/quarantine.parquet"))
    assert quarantine[["row", "field"]].values.tolist() == [[7, "ability"]]
    assert quarantine["reason"].item() == "must be one of ('math', 'code', 'countdown'), got 'poetry'"
    assert quarantine["source"].item().endswith("eurus2_rl_data.parquet")
    assert json.loads(quarantine["row_json"].item())["extra_info"] == {"split": "train", "index": 7}

    tables = {
        n: pd.read_parquet(latest_version(data / f"02_primary/prompts_{n}.parquet")) for n in ("train", "val", "test")
    }
    indices = sorted(i for t in tables.values() for i in t["extra_info"].map(lambda e: e["index"]))
    assert indices == [i for i in range(40) if i != 7]
    report = pd.read_parquet(latest_version(data / "08_reporting/data_prep_report.parquet"))
    assert report.set_index("table").at["quarantined", "rows"] == 1

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    metrics = [r.data.metrics for r in runs if "data_prep/quarantined" in r.data.metrics]
    assert metrics == [{"data_prep/rows_in": 40.0, "data_prep/quarantined": 1.0, "data_prep/rows_kept": 39.0}]


@pytest.mark.slow
def test_prime_iteration_with_the_deepspeed_backend_reruns_identically_and_continues_its_optimizer(project):
    """The nodes do not change with the trainer backend: ``prime.trainer_backend=deepspeed`` (ZeRO-2,
    one rank inside the Kedro process, DS_ACCELERATOR=cpu) runs iteration 0, a rerun of
    update_policy is bit-identical, and iteration 1 continues the AdamW state saved with the
    checkpoint (DeepSpeed's, per rank)."""
    from eurus_prime.datasets.checkpoint import load_optimizer_state

    _run([KEDRO, "run", "--pipelines=bootstrap"], project)
    params = "--params=prime.trainer_backend=deepspeed,prime.deepspeed.zero_stage=2"
    _run([KEDRO, "run", "--pipelines=prime_iteration", params], project)
    data = project / "data"
    _run(
        [
            KEDRO,
            "run",
            "--pipelines=prime_iteration",
            "--nodes=update_policy",
            "--params=iteration=0,prime.trainer_backend=deepspeed,prime.deepspeed.zero_stage=2",
        ],
        project,
    )
    policies = _versions(data / "06_models/policy/iter_0001")
    assert len(policies) == 2
    assert len({(p / "model.safetensors").read_bytes() for p in policies}) == 1
    state = load_optimizer_state(policies[-1] / "optimizer.pt")  # weights-only, DeepSpeed's 3 classes allowed
    assert state["deepspeed"]["zero_stage"] == 2 and len(state["deepspeed"]["ranks"]) == 1
    _run([KEDRO, "run", "--pipelines=prime_iteration", params], project)
    stats = pd.read_parquet(latest_version(data / "08_reporting/iter_0001/ppo_stats.parquet"))
    assert len(stats) and stats["grad_norm"].notna().all() and not stats["skipped"].any()
    assert len(_versions(data / "06_models/prm/iter_0002")) == 1
    # Continued, not restarted: AdamW's step count saved after iteration 1 is iteration 0's plus
    # iteration 1's optimizer steps (one per stats row). Fresh moments would count iteration 1's only.
    for model, table in (("policy", "ppo_stats"), ("prm", "prm_stats")):
        steps = {}
        for it in (0, 1):
            rows = pd.read_parquet(latest_version(data / f"08_reporting/iter_{it:04d}/{table}.parquet"))
            assert len(rows) and not rows["skipped"].any(), (model, it)
            saved = _adam_steps(latest_version(data / f"06_models/{model}/iter_{it + 1:04d}") / "optimizer.pt")
            steps[it] = (saved, len(rows))
        (step0, n0), (step1, n1) = steps[0], steps[1]
        assert step0 == n0 and step1 == n0 + n1, (model, steps)


def _adam_steps(path: Path) -> int:
    """AdamW's step count in a ZeRO-2 ``optimizer.pt`` of one rank (every parameter group has the same)."""
    from eurus_prime.datasets.checkpoint import load_optimizer_state

    (rank,) = load_optimizer_state(path)["deepspeed"]["ranks"]
    steps = {int(s["step"]) for s in rank["base_optimizer_state"]["state"].values()}
    assert len(steps) == 1, steps
    return steps.pop()
