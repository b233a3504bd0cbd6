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
    frame = pd.DataFrame(
        {
            "data_source": "x",
            "ability": [a for a, _, _ in ROWS],
            "response": [r for _, r, _ in ROWS],
            "reward_model": [{"style": "rule", "ground_truth": g} for _, _, g in ROWS],
        }
    )
    frame.to_parquet(tmp_path / "rows.parquet")
    result = CliRunner().invoke(
        main,
        [
            "verify",
            "--input",
            str(tmp_path / "rows.parquet"),
            "--output",
            str(tmp_path / "scores.parquet"),
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    scored = pd.read_parquet(tmp_path / "scores.parquet")
    assert scored["score"].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert {"verifier", "rule", "detail", "isolation", "data_source"} <= set(scored.columns)
    assert "math  n=3      accuracy  33.3%" in result.output and "code  n=2      accuracy  50.0%" in result.output
    assert "code isolation:" in result.output


def test_verify_cli_names_the_file_and_the_missing_column(tmp_path):
    pd.DataFrame({"ability": ["math"], "response": ["x"]}).to_parquet(tmp_path / "bad.parquet")
    result = CliRunner().invoke(
        main, ["verify", "--input", str(tmp_path / "bad.parquet"), "--output", str(tmp_path / "o.parquet")]
    )
    assert result.exit_code != 0
    assert "bad.parquet: verify_table: the table lacks column(s) ['ground_truth']" in result.output
    assert verify_table(
        pd.DataFrame({"ability": ["math"], "response": ["\\boxed{1}"], "ground_truth": ["1"]}), workers=1
    )["correct"].tolist() == [True]


def _invoke(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return CliRunner().invoke(
        main, ["verify", "--input", str(tmp_path / name), "--output", str(tmp_path / "o.jsonl"), "--workers", "1"]
    )


def test_verify_cli_refuses_a_row_without_ground_truth_naming_its_line_and_field(tmp_path):
    good = {"ability": "math", "response": "\\boxed{4}", "ground_truth": "4"}
    lines = [
        json.dumps(good),
        "",
        json.dumps({"ability": "math", "response": "\\boxed{4}"}),
        json.dumps({**good, "ground_truth": None}),
        json.dumps({**good, "ability": " "}),
    ]
    result = _invoke(tmp_path, "rows.jsonl", "\n".join(lines) + "\n")
    assert result.exit_code != 0
    assert (
        "rows.jsonl: 3 row(s) cannot be graded: line 3: no ground_truth; line 4: no ground_truth; "
        "line 5: no ability. Nothing was scored."
    ) in result.output
    assert not (tmp_path / "o.jsonl").exists()
    # the library call names row positions
    with_gap = pd.DataFrame({"ability": ["math", "math"], "response": ["a", "b"], "ground_truth": ["1", None]})
    try:
        verify_table(with_gap, workers=1)
    except ValueError as err:
        assert "row 1: ground_truth" in str(err)
    else:
        raise AssertionError("verify_table scored a row without ground_truth")


def test_verify_cli_refuses_a_eurus2_row_whose_reward_model_lacks_ground_truth(tmp_path):
    frame = pd.DataFrame(
        {
            "ability": ["math", "math"],
            "response": ["\\boxed{4}"] * 2,
            "reward_model": [{"style": "rule", "ground_truth": "4"}, {"style": "rule"}],
        }
    )
    frame.to_parquet(tmp_path / "rows.parquet")
    result = CliRunner().invoke(
        main,
        [
            "verify",
            "--input",
            str(tmp_path / "rows.parquet"),
            "--output",
            str(tmp_path / "o.parquet"),
            "--workers",
            "1",
        ],
    )
    assert result.exit_code != 0 and "row 1: no ground_truth" in result.output


def test_verify_cli_names_the_line_that_is_not_json(tmp_path):
    good = json.dumps({"ability": "math", "response": "\\boxed{4}", "ground_truth": "4"})
    result = _invoke(tmp_path, "rows.jsonl", f"{good}\n{good}\n{{not json\n")
    assert result.exit_code != 0 and "rows.jsonl, line 3: not valid JSON" in result.output
    result = _invoke(tmp_path, "list.jsonl", f"{good}\n[1, 2]\n")
    assert result.exit_code != 0 and "list.jsonl, line 2: expected a JSON object, got list" in result.output
    result = _invoke(tmp_path, "ok.jsonl", f"{good}\n\n{good}\n")
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["score"] for x in (tmp_path / "o.jsonl").read_text().splitlines()] == [1.0, 1.0]
