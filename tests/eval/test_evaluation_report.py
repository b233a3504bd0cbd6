"""The evaluation pipeline's summaries: table, Markdown report, chart, config validation."""

import numpy as np
import pandas as pd
import pytest

from eurus_prime.eval.evaluation import SuiteEvalConfig, chart_png, markdown_report, suite_table
from tests.images import assert_drawn, colour_share, png_pixels


def _items() -> pd.DataFrame:
    rows = []
    for ckpt, right in (("sft", {0}), ("iter_0003", {0, 1, 2})):
        for method in ("greedy", "prm@4"):
            for index, source in enumerate(["a", "a", "b", "b"]):
                ok = index in right if method == "greedy" else index in right | {3}
                rows.append(
                    {
                        "checkpoint": ckpt,
                        "suite": "test",
                        "data_source": source,
                        "method": method,
                        "index": index,
                        "correct": float(ok),
                        "score": float(ok),
                    }
                )
    return pd.DataFrame(rows)


def test_suite_table_has_one_row_per_checkpoint_suite_source_and_method_in_evaluation_order():
    table = suite_table(_items())
    assert len(table) == 2 * 2 * 3  # checkpoints x methods x (all, a, b)
    whole = table[table.data_source == "all"]
    assert list(whole.checkpoint) == ["sft", "sft", "iter_0003", "iter_0003"]
    assert list(whole.method) == ["greedy", "prm@4"] * 2
    assert list(whole.accuracy) == [0.25, 0.5, 0.75, 1.0] and (whole.n == 4).all()
    b = table[(table.data_source == "b") & (table.method == "greedy")]
    assert list(b.accuracy) == [0.0, 0.5]


def test_markdown_report_compares_checkpoints_per_method_and_per_source():
    md = markdown_report(suite_table(_items()))
    assert "## test (4 items)" in md
    assert "| checkpoint | greedy | prm@4 |" in md and "| sft | 25.0% | 50.0% |" in md
    assert "| data source | n | sft | iter_0003 | iter_0003 - sft |" in md
    assert "| all | 4 | 25.0% | 75.0% | +50.0 pts |" in md and "| b | 2 | 0.0% | 50.0% | +50.0 pts |" in md
    assert "`pass@N` whether any sample is correct" in md


def assert_eval_chart(png: bytes, suites: int, methods: int, checkpoints: int) -> np.ndarray:
    """``chart_png``'s figure: its size follows from the panels and bars (1 + per suite 1.2 + 0.45
    x methods x checkpoints inches wide, 3.8 high, 110 dpi), a bar colour per checkpoint (C0, C1,
    ...) and nothing of the next colour. Returns the pixels."""
    pixels = png_pixels(png)
    width = (1.0 + suites * (1.2 + 0.45 * methods * checkpoints)) * 110
    assert np.allclose(pixels.shape[:2], (3.8 * 110, width), atol=1), pixels.shape  # matplotlib truncates
    assert_drawn(pixels)
    for k in range(checkpoints):  # its bars (none at 0% accuracy), at least its legend patch (225 pixels)
        assert colour_share(pixels, f"C{k}") * pixels.shape[0] * pixels.shape[1] >= 150, k
    assert colour_share(pixels, f"C{checkpoints}") == 0
    return pixels


def test_chart_is_a_png_of_the_bars():
    pixels = assert_eval_chart(chart_png(suite_table(_items())), suites=1, methods=2, checkpoints=2)
    # Bars as tall as the accuracies: sft 25% + 50%, iter_0003 75% + 100%, the same width, so
    # iter_0003's colour covers 175 / 75 of sft's (less the two equal legend patches).
    ratio = colour_share(pixels, "C1") / colour_share(pixels, "C0")
    assert 175 / 75 * 0.85 < ratio < 175 / 75, ratio


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("checkpoints", [], "checkpoints is empty"),
        ("suites", [], "suites is empty"),
        ("max_items", 0, "max_items must be >= 1"),
        ("best_of", -1, "best_of must be >= 0"),
    ],
)
def test_config_errors_name_the_parameter(field, value, message):
    with pytest.raises(ValueError, match=f"evaluation_suites.{message}"):
        SuiteEvalConfig(**{field: value})


def test_methods_follow_best_of():
    assert SuiteEvalConfig().methods == ["greedy"]
    assert SuiteEvalConfig(best_of=8).methods == ["greedy", "sample@1", "majority@8", "prm@8", "pass@8"]
    with pytest.raises(ValueError, match="temperature/beta must be > 0"):
        SuiteEvalConfig(best_of=2, temperature=0)


def test_accuracy_report_splits_held_out_items_into_in_distribution_and_novel():
    from eurus_prime.eval.evaluation import accuracy_report

    items = pd.DataFrame(
        {
            "data_source": ["tiny_math_d2", "tiny_math_d3", "tiny_math_novel_d4", "tiny_code_novel_d1"],
            "ability": ["math", "math", "math", "code"],
            "correct": [True, False, True, True],
            "score": [1.0, 0.0, 1.0, 1.0],
        }
    )
    report = accuracy_report(items).set_index(["group", "name"])
    assert report.loc[("all", "all"), "accuracy"] == 0.75
    assert report.loc[("heldout", "in_distribution"), "accuracy"] == 0.5
    assert report.loc[("heldout", "in_distribution"), "n"] == 2
    assert report.loc[("heldout", "novel"), "accuracy"] == 1.0
    # Without novel data sources (a benchmark suite) there is no heldout group.
    plain = accuracy_report(items.assign(data_source=["a", "b", "a", "b"]))
    assert "heldout" not in set(plain["group"])
