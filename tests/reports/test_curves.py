"""Learning curves: the per-iteration frame (from the tables and from MLflow) and its PNG."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eurus_prime.datasets.versions import latest_version
from eurus_prime.reports.curves import (
    BASELINE,
    CORE_COLUMNS,
    DEFAULT_TITLE,
    NCOLS,
    PANELS,
    iteration_metrics,
    mlflow_metrics,
    plot_learning_curves,
    sft_baseline,
    write_learning_curves,
)
from tests.images import assert_drawn, colour_share, png_pixels
from tests.pipelines.helpers import make_project

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_learning_curves_png(png, frame: pd.DataFrame, title: str) -> None:
    """``png`` is ``plot_learning_curves(frame, title=title)``: pixel for pixel the plot drawn here
    now (its size 4.2 x NCOLS by 3.1 x rows inches at 100 dpi), and in each panel's frame (the
    axes' extents in the figure drawn here) a line colour (C0, C1, ... one per series) exactly
    where that panel has a logged series; the others say "not logged" in grey."""
    import tempfile

    import matplotlib.pyplot as plt

    pixels = png_pixels(png)
    nrows = len(PANELS) // NCOLS + 1
    assert np.allclose(pixels.shape[:2], (310 * nrows, 420 * NCOLS), atol=1), pixels.shape  # matplotlib truncates
    assert_drawn(pixels, min_colours=100)
    figures, close = [], plt.close
    plt.close = figures.append  # keep the figure open to read its axes' extents
    try:
        with tempfile.TemporaryDirectory() as tmp:
            again = png_pixels(plot_learning_curves(frame, Path(tmp) / "again.png", title=title))
    finally:
        plt.close = close
    (fig,) = figures
    assert np.array_equal(pixels, again)
    curves = frame[frame["iteration"] >= 0]
    scale, height = 100 / fig.dpi, pixels.shape[0]  # savefig's dpi over the figure's
    logged_panels = 0
    for ax, (title_k, _, series, _) in zip(fig.axes, PANELS):
        box = ax.get_window_extent()
        top, bottom = round(height - box.y1 * scale) + 2, round(height - box.y0 * scale) - 2
        left, right = round(box.x0 * scale) + 2, round(box.x1 * scale) - 2
        assert ax.get_title() == title_k and 0 <= top < bottom <= height
        cell = pixels[top:bottom, left:right]
        logged = any(c in curves and curves[c].notna().any() for c, _ in series)
        coloured = sum(colour_share(cell, f"C{i}") for i in range(len(series)))
        assert (coloured > 1e-4) == logged, (title_k, coloured, logged)
        logged_panels += logged
    close(fig)
    assert logged_panels >= 10, logged_panels  # most panels have a curve after two iterations


def _table(project, layer, iteration, name) -> pd.DataFrame:
    return pd.read_parquet(latest_version(project / "data" / layer / f"iter_{iteration:04d}" / f"{name}.parquet"))


@pytest.fixture(scope="module")
def frame(trained_project) -> pd.DataFrame:
    return iteration_metrics(trained_project)


def test_frame_has_one_row_per_iteration_and_the_sft_baseline(frame):
    assert frame["iteration"].tolist() == [BASELINE, 0, 1]
    assert set(CORE_COLUMNS) <= set(frame.columns)
    baseline = frame[frame["iteration"] == BASELINE].iloc[0]
    assert baseline.filter(regex="^eval/").notna().all()
    assert baseline.drop("iteration").drop(baseline.filter(regex="^eval/").index).isna().all()


def test_frame_values_match_the_tables(trained_project, frame):
    rows = frame.set_index("iteration")
    for i in (0, 1):
        rollouts = _table(trained_project, "05_rollouts", i, "rollouts")
        report = _table(trained_project, "05_rollouts", i, "filter_report")
        ppo = _table(trained_project, "08_reporting", i, "ppo_stats")
        prm = _table(trained_project, "08_reporting", i, "prm_stats")
        assert rows.loc[i, "rollout/response_length_mean"] == pytest.approx(rollouts["response_length"].mean())
        assert rows.loc[i, "rollout/truncated_share"] == pytest.approx((rollouts["finish_reason"] == "length").mean())
        assert rows.loc[i, "filter/selected_share"] == pytest.approx(report["selected"].sum() / len(report))
        assert rows.loc[i, "ppo/ppo_kl"] == pytest.approx(ppo.loc[~ppo["skipped"], "ppo_kl"].mean())
        assert rows.loc[i, "prm/loss"] == pytest.approx(prm.loc[~prm["skipped"], "loss"].mean())
        assert rows.loc[i, "time/iteration"] > 0
    evaluated = _table(trained_project, "08_reporting", 0, "eval_report").set_index("name")
    assert rows.loc[0, "eval/all"] == pytest.approx(evaluated.loc["all", "accuracy"])
    assert np.isnan(rows.loc[1, "eval/all"])  # eval_every: 5, so iteration 1 is not evaluated


def test_frame_matches_every_metric_the_training_loop_logged(trained_project, frame):
    """train_log.jsonl holds the metrics the nodes logged to MLflow; the tables reproduce them."""
    log = pd.DataFrame(
        [json.loads(line) for line in (trained_project / "data/08_reporting/train_log.jsonl").read_text().splitlines()]
    )
    rows, logged = frame.set_index("iteration").loc[[0, 1]], log.set_index("iteration")
    shared = [c for c in rows.columns if c in logged and not c.startswith("time/")]
    assert len(shared) > 25
    pd.testing.assert_frame_equal(rows[shared], logged[shared], check_dtype=False, rtol=1e-9)


def test_baseline_scores_the_sft_model_on_the_items_the_iterations_scored(trained_project, frame):
    items = pd.read_parquet(latest_version(trained_project / "data/07_model_output/sft_eval_items.parquet"))
    n = int(_table(trained_project, "08_reporting", 0, "eval_report").set_index("name").loc["all", "n"])
    baseline = frame.set_index("iteration").loc[BASELINE]
    assert n < len(items)
    assert baseline["eval/all"] == pytest.approx(items.head(n)["correct"].mean())


def test_plot_is_a_png_with_content(frame, tmp_path):
    import matplotlib.image

    out = plot_learning_curves(frame, tmp_path / "curves.png", title="tiny")
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 50_000
    pixels = matplotlib.image.imread(out)
    assert pixels.shape[0] >= 900 and pixels.shape[1] >= 1200
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 100  # lines, text, colours
    assert_learning_curves_png(out, frame, title="tiny")
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary file left


def test_write_learning_curves_defaults_to_the_reporting_folder(trained_project, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(trained_project, project)
    png, csv = write_learning_curves(project)
    assert png == project / "data/08_reporting/learning_curves.png"
    assert csv == project / "data/08_reporting/learning_curves.csv"
    pd.testing.assert_frame_equal(pd.read_csv(csv), iteration_metrics(project), check_dtype=False)
    assert_learning_curves_png(png, iteration_metrics(project), title=f"{DEFAULT_TITLE}: project")


def test_no_iterations_says_to_train(tmp_path):
    project = make_project(tmp_path)
    with pytest.raises(FileNotFoundError, match="eurus-prime train"):
        iteration_metrics(project)


def test_mlflow_metrics_match_the_tables(trained_project, frame, tmp_path):
    shutil.copy(trained_project / "mlflow.db", tmp_path / "mlflow.db")  # the fixture stays untouched
    tracked = mlflow_metrics(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert tracked["iteration"].tolist() == [BASELINE, 0, 1]
    rows, logged = frame.set_index("iteration").loc[[0, 1]], tracked.set_index("iteration").loc[[0, 1]]
    pd.testing.assert_series_equal(logged["eval/all"], rows["eval/all"], check_dtype=False)
    shared = [c for c in rows.columns if c in logged and not c.startswith("time/")]
    pd.testing.assert_frame_equal(logged[shared], rows[shared], check_dtype=False, rtol=1e-9)
    # MLflow has only the SFT model's full evaluation (val/test_score/*), not its items
    assert tracked.set_index("iteration").loc[BASELINE, "eval/all"] == pytest.approx(
        sft_baseline(trained_project)["eval/all"]
    )
    assert_learning_curves_png(plot_learning_curves(tracked, tmp_path / "mlflow.png"), tracked, title=DEFAULT_TITLE)


def test_summary_and_progress_line_split_in_distribution_from_novel():
    from eurus_prime.reports.curves import summary_lines
    from eurus_prime.runs.loop import _progress_line

    curves = pd.DataFrame(
        {
            "iteration": [0, 1],
            "time/iteration": [10.0, 12.0],
            "eval/all": [np.nan, 0.6],
            "eval/in_distribution": [np.nan, 0.8],
            "eval/novel": [np.nan, 0.4],
        }
    )
    lines = summary_lines(curves, {"eval/all": 0.5})
    assert "last evaluated, iteration 1: 60.0% (+10.0 points); in-distribution 80.0%, novel 40.0%" in lines
    line = _progress_line({"seconds": 3.0, "eval/all": 0.6, "eval/in_distribution": 0.8, "eval/novel": 0.4})
    assert line.endswith("held-out pass@1 60.0% (in-distribution 80.0%, novel 40.0%)")
    assert _progress_line({"seconds": 3.0, "eval/all": 0.6}).endswith("held-out pass@1 60.0%")
