"""benchmarks/table4.py's summary of runs, on a hand-made result (no benchmark runs)."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.benchmarks import load_benchmark


def _runs(tmp_path):
    """Two seeds of rloo and rloo_prime, 2 iterations each (256 rollouts per iteration), evaluated
    at iteration 1 on 600 + 400 held-out prompts."""
    acc = {("rloo", 0): 0.50, ("rloo", 1): 0.54, ("rloo_prime", 0): 0.60, ("rloo_prime", 1): 0.61}
    rows = [{"arm": "sft_checkpoint", "seed": -1, "point": 0, "iteration": -1, "rollouts": 0, "acc_all": 0.3}]
    iters = []
    for (arm, seed), a in acc.items():
        rows.append(
            {"arm": arm, "seed": seed, "point": 1, "iteration": 1, "rollouts": 512, "acc_all": a, "acc_novel": a / 2}
        )
        for it, score in enumerate((0.2, 0.4 if arm == "rloo" else 0.5)):
            iters.append(
                {"arm": arm, "seed": seed, "iteration": it, "rollouts": 256 * (it + 1), "train_verify_score/all": score}
            )
    rows = pd.DataFrame(rows).assign(n_id=600, n_novel=400)
    prefix = tmp_path / "runs"
    rows.to_csv(prefix.with_suffix(".csv"), index=False)
    pd.DataFrame(iters).to_csv(tmp_path / "runs_iterations.csv", index=False)
    return prefix


def test_a_world_that_reuses_nothing_is_summarised_from_its_own_runs(tmp_path):
    table4 = load_benchmark("table4")
    rows, iters = table4.load(_runs(tmp_path), None)
    summary = table4.summarise(rows, iters)
    assert (summary["iterations"], summary["rollouts"], summary["eval_items"]) == (2, 512, 1000)
    rloo = summary["rows"]["RLOO"]
    assert rloo["prime_gain"] == pytest.approx(0.085)  # 0.605 - 0.52
    assert rloo["spread_yardstick"] == pytest.approx(0.04) and rloo["gain_beyond_spread"]
    # the level: 80% of the way from iteration 0's 0.2 to RLOO's final moving average (0.3)
    assert summary["level"] == pytest.approx(0.28)
    assert rloo["without"]["rollouts_to_level"] == 512 and rloo["with_prime"]["rollouts_to_level"] == 512
    assert summary["rows"]["GRPO"] == {"without": None, "with_prime": None}
    text = "\n".join(table4.markdown(summary, "python benchmarks/table4.py --env base", "base"))
    assert "Table 4 on the tiny world" in text and "after 2 iterations (512 rollouts" in text
    assert "| GRPO | not run | not run | n/a |" in text


def test_with_one_seed_everywhere_the_spread_and_its_verdict_are_unknown(tmp_path):
    table4 = load_benchmark("table4")
    rows, iters = table4.load(_runs(tmp_path), None)
    rows, iters = rows[rows["seed"] != 1], iters[iters["seed"] != 1]
    rloo = table4.summarise(rows, iters)["rows"]["RLOO"]
    assert rloo["prime_gain"] == pytest.approx(0.1)
    assert rloo["spread_yardstick"] is None and rloo["gain_beyond_spread"] is None
    assert table4._beyond(rloo) == "n/a (one seed: unknown)"
