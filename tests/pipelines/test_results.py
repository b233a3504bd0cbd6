"""The README's "see and use the results" commands on a trained tiny project, as a user runs them:
evaluate SFT vs the latest policy, chat, answer a file of questions, look at rollouts, plot curves."""

import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eurus_prime.datasets.versions import latest_version
from eurus_prime.eval.evaluation import chart_png
from eurus_prime.reports.curves import DEFAULT_TITLE, iteration_metrics
from tests.eval.test_evaluation_report import assert_eval_chart
from tests.images import png_pixels
from tests.pipelines.helpers import EURUS_PRIME, KEDRO, run
from tests.reports.test_curves import assert_learning_curves_png

pytestmark = pytest.mark.slow
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "suites"


@pytest.fixture(scope="module")
def project(trained_project, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("results") / "p"
    shutil.copytree(trained_project, dest)
    return dest


def _env() -> dict:
    return {**os.environ, "TQDM_DISABLE": "1", "KEDRO_DISABLE_TELEMETRY": "1"}


def _latest(project: Path, rel: str) -> Path:
    path = latest_version(project / rel)
    assert path is not None, f"nothing saved at {rel}"
    return path


def _assert_rollout_report(project: Path, page: str) -> None:
    """``page`` is the rollout report of iteration 1 (``reports.inspection.html_report``, 5 correct
    and 5 wrong selected rollouts, seed 0): its counts and sections match the iteration's tables."""
    tables = {
        name: pd.read_parquet(_latest(project, f"data/05_rollouts/iter_0001/{name}.parquet"))
        for name in ("rollouts", "outcomes", "process_rewards")
    }
    key = ["prompt_id", "sample_idx"]
    selected = tables["process_rewards"][key].merge(tables["outcomes"][key + ["correct"]], on=key, validate="1:1")
    correct = selected["correct"].astype(bool)
    n_correct, n_wrong = int(correct.sum()), int((~correct).sum())
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert ": iteration 1 rollouts</title>" in page
    assert f'<b>{len(tables["rollouts"])}</b><span class="ep-muted">rollouts</span>' in page
    assert f'<b>{len(selected)}</b><span class="ep-muted">selected rollouts</span>' in page
    assert f'Correct selected rollouts <span class="ep-muted">{min(n_correct, 5)} of {n_correct}, sample seed 0' in page
    assert f'Wrong selected rollouts <span class="ep-muted">{min(n_wrong, 5)} of {n_wrong}, sample seed 0' in page
    assert page.count('class="ep-card"') == min(n_correct, 5) + min(n_wrong, 5) > 0
    assert "accuracy by data source" in page and "filter status (prompts)" in page
    for source in tables["rollouts"]["data_source"].unique():  # a row of the accuracy table each
        assert f"<tr><td>{source}</td>" in page, source


def test_train_leaves_the_last_rollout_report_and_the_learning_curves(project, trained_project):
    _assert_rollout_report(project, (project / "data/08_reporting/rollout_reports/iter_0001.html").read_text())
    assert_learning_curves_png(
        project / "data/08_reporting/learning_curves.png",
        iteration_metrics(project),
        title=f"{DEFAULT_TITLE}: {trained_project.name}",  # drawn in the project that trained
    )


def test_evaluate_compares_sft_with_the_latest_policy_greedy_and_best_of_n(project):
    out = run(
        [
            EURUS_PRIME,
            "evaluate",
            "--checkpoint",
            "sft",
            "--checkpoint",
            "latest",
            "--suite",
            "test",
            "--suite",
            f"amc={FIXTURES / 'amc.jsonl'}",
            "--max-items",
            "6",
            "--best-of",
            "2",
        ],
        project,
        env=_env(),
    ).stdout
    table = pd.read_parquet(_latest(project, "data/08_reporting/evaluation/eval_table.parquet"))
    whole = table[table.data_source == "all"]
    assert set(whole.checkpoint) == {"sft", "iter_0002"} and set(whole.suite) == {"test", "amc"}
    assert list(dict.fromkeys(whole.method)) == ["greedy", "sample@1", "majority@2", "prm@2", "pass@2"]
    assert (whole[whole.suite == "test"].n == 6).all()
    for ckpt in ("sft", "iter_0002"):  # pass@N bounds every method from above
        acc = whole[(whole.checkpoint == ckpt)].groupby(["suite", "method"]).accuracy.first()
        for suite in ("test", "amc"):
            assert acc[(suite, "pass@2")] >= max(acc[(suite, m)] for m in ("sample@1", "majority@2", "prm@2"))
    items = pd.read_parquet(_latest(project, "data/07_model_output/evaluation/eval_suite_items.parquet"))
    assert len(items) == 2 * (6 + 3) * 5  # checkpoints x (test + amc items) x methods
    samples = pd.read_parquet(_latest(project, "data/07_model_output/evaluation/eval_suite_samples.parquet"))
    assert len(samples) == 2 * 9 * 2 and samples.groupby(["checkpoint", "suite", "index"]).prm_choice.sum().eq(1).all()
    chosen = samples[samples.prm_choice].set_index(["checkpoint", "suite", "index"]).sort_index()
    prm_rows = items[items.method == "prm@2"].set_index(["checkpoint", "suite", "index"]).sort_index()
    assert (chosen.response == prm_rows.response).all()
    report = _latest(project, "data/08_reporting/evaluation/eval_report.md").read_text()
    assert "## test (6 items)" in report and "| iter_0002 - sft |" in report and report.strip() in out
    chart = _latest(project, "data/08_reporting/evaluation/eval_chart.png").read_bytes()
    pixels = assert_eval_chart(chart, suites=2, methods=5, checkpoints=2)
    assert np.array_equal(pixels, png_pixels(chart_png(table)))  # the chart of the saved table
    with sqlite3.connect(project / "mlflow.db") as db:  # the report and chart are the run's artifacts
        keys = {k for (k,) in db.execute("select key from latest_metrics")}
    assert "eval_suite/iter_0002/test/prm_at_2" in keys


def test_evaluate_names_a_bad_checkpoint(project):
    proc = __import__("subprocess").run(
        [EURUS_PRIME, "evaluate", "--checkpoint", "iter:9"], cwd=project, capture_output=True, text=True, env=_env()
    )
    assert proc.returncode != 0 and "policy after 9 iteration(s)" in proc.stderr


def test_chat_streams_an_answer_and_parses_it(project):
    out = run(
        [
            EURUS_PRIME,
            "chat",
            "--model",
            "latest",
            "--system",
            "tiny",
            "--max-new-tokens",
            "40",
            "Zoe has 3 toys. She buys 2 more. How many toys does Zoe have now?",
        ],
        project,
        env=_env(),
    ).stdout
    assert "steps:" in out and "answer:" in out
    best = run(
        [
            EURUS_PRIME,
            "chat",
            "--model",
            "sft",
            "--system",
            "tiny",
            "--max-new-tokens",
            "24",
            "--best-of",
            "3",
            "Add 2 and 2.",
        ],
        project,
        env=_env(),
    ).stdout
    assert "3 samples ranked by the implicit PRM" in best and "best by PRM" in best


def test_the_inference_pipeline_answers_a_file_of_questions(project):
    rows = [
        {"id": "q1", "question": "Zoe has 3 toys. She buys 2 more. How many toys does Zoe have now?"},
        {"question": "Write a function run(x) that returns x plus 5.", "ability": "code"},
    ]
    (project / "data/01_raw/questions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    run(
        [KEDRO, "run", "--pipelines=inference", "--params=inference.max_new_tokens=32,inference.best_of=2"],
        project,
        env=_env(),
    )
    answers = pd.read_parquet(_latest(project, "data/07_model_output/inference/answers.parquet"))
    assert list(answers["id"]) == ["q1", "1"] and list(answers["ability"]) == ["math", "code"]
    assert {"response", "steps", "actions", "answer", "prm_score", "candidates"} <= set(answers.columns)
    assert all(len(c) == 2 for c in answers["candidates"])
    assert answers["prompt_text"].str.contains("Actions: \\[ASSESS\\]").all()  # the tiny system prompt


def test_rollouts_show_report_and_curves(project):
    out = run(
        [
            EURUS_PRIME,
            "rollouts",
            "show",
            "--iteration",
            "1",
            "--where",
            "status == 'selected'",
            "--limit",
            "2",
            "--color",
        ],
        project,
        env=_env(),
    ).stdout
    assert out.startswith("iteration 1:") and "\x1b[48;2;" in out and "response, background = implicit_reward" in out
    bad = __import__("subprocess").run(
        [EURUS_PRIME, "rollouts", "show", "--where", "nonsense ==="],
        cwd=project,
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert bad.returncode != 0 and "--where 'nonsense ==='" in bad.stderr
    out = run([EURUS_PRIME, "rollouts", "report"], project, env=_env()).stdout
    html = project / "data/08_reporting/rollout_reports/iter_0001.html"
    assert str(html) in out
    _assert_rollout_report(project, html.read_text())
    assert f"<title>{project.name}: iteration 1 rollouts</title>" in html.read_text()  # written here, now
    out = run([EURUS_PRIME, "curves"], project, env=_env()).stdout
    assert_learning_curves_png(
        project / "data/08_reporting/learning_curves.png",
        iteration_metrics(project),
        f"{DEFAULT_TITLE}: {project.name}",
    )
    assert len(pd.read_csv(project / "data/08_reporting/learning_curves.csv")) >= 2
