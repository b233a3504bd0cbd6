"""``eurus-prime train`` as a user meets it: a quiet terminal (``runs/console.py``: a header, one
line per iteration and the final table; Kedro's, transformers' and MLflow's output and warnings in
the campaign log file, ``--verbose`` puts them back), and MLflow runs that compare (flat
parameters, checkpoint tags, logged and registered models)."""

from __future__ import annotations

import pytest

from tests.pipelines.helpers import EURUS_PRIME, make_project, run

#: The terminal budget of a default ``make train`` (20 iterations), venv already made.
BUDGET = 100
DEFAULT_ITERATIONS = 20


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("console"))
    proc = run([EURUS_PRIME, "train", "--project", str(project), "--iterations", "2"], project)
    return project, proc


@pytest.mark.slow
def test_train_prints_a_header_a_line_per_iteration_and_the_table_and_logs_the_rest(trained):
    project, proc = trained
    terminal = (proc.stdout + proc.stderr).rstrip("\n").split("\n")  # a bar redrawn with \r is one line
    iteration_lines = [line for line in terminal if line.startswith("iteration ")]
    assert [line.split(":")[0] for line in iteration_lines] == ["iteration 1/2", "iteration 2/2"]
    assert all("done in" in line for line in iteration_lines) and "held-out pass@1" in iteration_lines[0]
    # Everything but the iteration lines is fixed overhead: with 20 iterations it must still fit.
    overhead = len(terminal) - len(iteration_lines)
    assert overhead + DEFAULT_ITERATIONS <= BUDGET, "\n".join(terminal)
    assert not [line for line in terminal if "INFO" in line or "Warning" in line or "Loading weights" in line]
    assert "Held-out greedy pass@1 on the same 10 test prompts:" in proc.stdout

    logs = list((project / "data/08_reporting/logs").glob("train_*.log"))
    assert len(logs) == 1 and f"log: data/08_reporting/logs/{logs[0].name}" in proc.stdout
    text = logs[0].read_text()
    assert "kedro" in text and "Running node: update_policy" in text and "Loading data from" in text
    assert "register_new_resolver() is deprecated" not in text  # known noise, silenced at its source

    verbose = run([EURUS_PRIME, "train", "--project", str(project), "--iterations", "2", "--verbose"], project)
    assert "Loading data from" in verbose.stdout + verbose.stderr  # Kedro's log, on the terminal
    assert len(list((project / "data/08_reporting/logs").glob("train_*.log"))) == 1  # no new log file


@pytest.mark.slow
def test_mlflow_runs_filter_by_flat_params_and_the_logged_policy_loads(trained):
    import mlflow

    project, proc = trained
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("eurus_prime").experiment_id
    lr = client.search_runs([experiment], "tags.`eurus_prime.iteration` = '0'")[0].data.params["prime.policy_lr"]
    children = client.search_runs([experiment], f"params.`prime.policy_lr` = '{lr}'")
    assert {r.data.tags.get("eurus_prime.iteration") for r in children} >= {"0", "1"}
    other = client.search_runs([experiment], "params.`prime.policy_lr` = '123.0'")
    assert other == []  # the filter filters
    first = next(r for r in children if r.data.tags.get("eurus_prime.iteration") == "1")
    assert first.data.tags["checkpoint.in.policy_in"].startswith("policy/iter_0001@")
    assert first.data.tags["checkpoint.out.policy_out"].startswith("data/06_models/policy/iter_0002/")

    assert "registered as eurus_prime_policy" in proc.stdout
    version = max(client.search_model_versions("name = 'eurus_prime_policy'"), key=lambda v: int(v.version))
    assert version.tags["iteration"] == "0"  # the only evaluated iteration of this run
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    parts = mlflow.transformers.load_model(f"models:/eurus_prime_policy/{version.version}", return_type="components")
    assert type(parts["model"]).__name__ == "Qwen2ForCausalLM" and parts["tokenizer"].eos_token


def test_the_final_table_has_a_row_per_ability_the_run_evaluated_and_none_for_the_others():
    import math

    import pandas as pd

    from eurus_prime.cli import _report_rows

    def items(correct: list[bool], source: str) -> pd.DataFrame:
        n = len(correct)
        return pd.DataFrame(
            {"ability": "countdown", "data_source": source, "correct": correct, "score": [float(c) for c in correct]},
            index=range(n),
        )

    sft = pd.concat([items([True, False], "countdown_id_n4"), items([False, False], "countdown_novel_n5")])
    after = pd.concat([items([True, True], "countdown_id_n4"), items([False, False], "countdown_novel_n5")])
    rows = _report_rows(sft, after)
    assert [name for name, _, _ in rows] == ["all", "countdown", "in_distribution", "novel"]
    assert rows[2][1:] == (0.5, 1.0)
    assert not any(math.isnan(v) for _, a, b in rows for v in (a, b))
