"""The batch verifier API and ``eurus-prime verify`` on a Parquet file of the Eurus-2 schema."""

import json

import pandas as pd
from click.testing import CliRunner

from eurus_prime.cli import main
from eurus_prime.verifiers import verify_all, verify_table

CODE_GT = json.dumps({"inputs": ["2\n"], "outputs": ["4\n"]})
ROWS = [
    ("math", "so \\boxed{4}", "4"),
    ("math", "I think \\boxed{5}", "4"),
    ("math", "no answer here", "4"),
    ("code", "```python\nprint(int(input()) * 2)\n```", CODE_GT),
    ("code", "```python\nprint(3)\n```", CODE_GT),
]


def test_a_parallel_batch_equals_the_serial_one_in_order():
    rows = ROWS * 15  # 75 rows: over PARALLEL_MIN_ROWS, so the process pool grades it
    abilities, responses, gts = map(list, zip(*rows))
    parallel = verify_all(abilities, responses, gts, workers=2)
    serial = verify_all(abilities, responses, gts, workers=1)
    assert [(v.score, v.reason) for v in parallel] == [(v.score, v.reason) for v in serial]
    assert [v.score for v in parallel[:5]] == [1.0, 0.0, 0.0, 1.0, 0.0]


def test_verify_cli_scores_a_eurus2_parquet_and_summarises(tmp_path):
    frame = pd.DataFrame({
        "data_source": "x",
        "ability": [a for a, _, _ in ROWS],
        "response": [r for _, r, _ in ROWS],
        "reward_model": [{"style": "rule", "ground_truth": g} for _, _, g in ROWS],
    })
    frame.to_parquet(tmp_path / "rows.parquet")
    result = CliRunner().invoke(main, ["verify", "--input", str(tmp_path / "rows.parquet"),
                                       "--output", str(tmp_path / "scores.parquet"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    scored = pd.read_parquet(tmp_path / "scores.parquet")
    assert scored["score"].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert {"verifier", "rule", "detail", "isolation", "data_source"} <= set(scored.columns)
    assert "math  n=3      accuracy  33.3%" in result.output and "code  n=2      accuracy  50.0%" in result.output
    assert "code isolation:" in result.output


def test_verify_cli_names_the_file_and_the_missing_column(tmp_path):
    pd.DataFrame({"ability": ["math"], "response": ["x"]}).to_parquet(tmp_path / "bad.parquet")
    result = CliRunner().invoke(main, ["verify", "--input", str(tmp_path / "bad.parquet"),
                                       "--output", str(tmp_path / "o.parquet")])
    assert result.exit_code != 0
    assert "bad.parquet: verify_table: the table lacks column(s) ['ground_truth']" in result.output
    assert verify_table(pd.DataFrame({"ability": ["math"], "response": ["\\boxed{1}"], "ground_truth": ["1"]}),
                        workers=1)["correct"].tolist() == [True]
