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
    # the training curve's mean: (0.2 + 0.4) / 2 in both seeds without PRIME, (0.2 + 0.5) / 2 with
    assert (rloo["without"]["train_mean"], rloo["with_prime"]["train_mean"]) == pytest.approx((0.3, 0.35))
    assert summary["rows"]["GRPO"] == {"without": None, "with_prime": None}
    text = "\n".join(table4.markdown(summary, "python benchmarks/table4.py --env base", "base"))
    assert "Table 4 on the tiny world" in text and "after 2 iterations (512 rollouts" in text
    assert "| GRPO | not run | not run | n/a |" in text
    assert "| 512 (2/2) / 512 (2/2) | 30.0 (30.0-30.0) / 35.0 (35.0-35.0) | 36.9 / 41.0 |" in text


def test_with_one_seed_everywhere_the_spread_and_its_verdict_are_unknown(tmp_path):
    table4 = load_benchmark("table4")
    rows, iters = table4.load(_runs(tmp_path), None)
    rows, iters = rows[rows["seed"] != 1], iters[iters["seed"] != 1]
    rloo = table4.summarise(rows, iters)["rows"]["RLOO"]
    assert rloo["prime_gain"] == pytest.approx(0.1)
    assert rloo["spread_yardstick"] is None and rloo["gain_beyond_spread"] is None
    assert table4._beyond(rloo) == "n/a (one seed: unknown)"


def _longer(tmp_path, name: str, iteration_1_acc: float = 0.52):
    """rloo seed 0 run for 3 iterations, evaluated at iterations 1 and 2: the same protocol as
    ``_runs``'s, one iteration longer (``iteration_1_acc`` its evaluation at iteration 1)."""
    rows = [
        {"arm": "sft_checkpoint", "seed": -1, "point": 0, "iteration": -1, "rollouts": 0, "acc_all": 0.3},
        {"arm": "rloo", "seed": 0, "point": 1, "iteration": 1, "rollouts": 512, "acc_all": iteration_1_acc},
        {"arm": "rloo", "seed": 0, "point": 2, "iteration": 2, "rollouts": 768, "acc_all": 0.7},
        {"arm": "grpo", "seed": 0, "point": 1, "iteration": 1, "rollouts": 512, "acc_all": 0.45},
        {"arm": "grpo", "seed": 0, "point": 2, "iteration": 2, "rollouts": 768, "acc_all": 0.65},
    ]
    iters = [
        {"arm": arm, "seed": 0, "iteration": it, "rollouts": 256 * (it + 1), "train_verify_score/all": s}
        for arm in ("rloo", "grpo")
        for it, s in enumerate((0.2, 0.4, 0.9))
    ]
    prefix = tmp_path / name
    rows = pd.DataFrame(rows).assign(
        acc_novel=lambda d: (d["acc_all"] / 2).where(d["arm"] != "sft_checkpoint"), n_id=600, n_novel=400
    )
    rows.to_csv(prefix.with_suffix(".csv"), index=False)
    pd.DataFrame(iters).to_csv(tmp_path / f"{name}_iterations.csv", index=False)
    return prefix


def test_iterations_cut_longer_runs_to_join_shorter_ones_and_a_repeated_run_must_agree(tmp_path):
    table4 = load_benchmark("table4")
    long = _longer(tmp_path, "long", iteration_1_acc=0.50)  # rloo seed 0 as in _runs: a reproduction
    rows, iters = table4.load([_runs(tmp_path), long], [], iterations=2)
    assert int(iters["iteration"].max()) == 1 and set(rows["iteration"]) == {-1, 1}
    assert len(rows[(rows["arm"] == "rloo") & (rows["seed"] == 0)]) == 1  # kept once
    grpo = table4.summarise(rows, iters)["rows"]["GRPO"]["without"]
    assert grpo["acc_all"] == pytest.approx(0.45) and grpo["seeds"] == [0]
    # without the cut, each run's last evaluation: the long run's rloo seed 0 is another run
    with pytest.raises(ValueError, match=r"rloo seed 0 in .*runs and .*long: .*disagree on iteration"):
        table4.load([_runs(tmp_path), long], [])


def test_a_repeated_run_that_does_not_reproduce_and_a_missing_evaluation_are_named(tmp_path):
    table4 = load_benchmark("table4")
    with pytest.raises(ValueError, match=r"rloo seed 0 .*disagree on acc_all: \[0.5\] vs \[0.53\]"):
        table4.load([_runs(tmp_path), _longer(tmp_path, "long", iteration_1_acc=0.53)], [], iterations=2)
    with pytest.raises(ValueError, match=r"long: grpo seed 0 has no held-out evaluation at iteration 0 .*\[1, 2\]"):
        table4.load([_longer(tmp_path, "long")], [], iterations=1)


def test_reused_arms_are_renamed_from_another_result(tmp_path):
    table4 = load_benchmark("table4")
    _longer(tmp_path, "other")
    rows, _ = table4.load([_runs(tmp_path)], [f"{tmp_path / 'other'}:grpo=grpo_prime"], iterations=2)
    assert sorted(set(rows["arm"])) == ["grpo_prime", "rloo", "rloo_prime", "sft_checkpoint"]
    with pytest.raises(ValueError, match=r"other.csv: no arm \['ppo'\]; it has \['grpo', 'rloo'\]"):
        table4.load([_runs(tmp_path)], [f"{tmp_path / 'other'}:ppo"], iterations=2)
    with pytest.raises(FileNotFoundError, match="nowhere.csv: no such result"):
        table4.load([tmp_path / "nowhere"], [])


def test_the_training_level_follows_the_moving_average_window(tmp_path):
    table4 = load_benchmark("table4")
    rows, iters = table4.load(_runs(tmp_path), None)
    # window 1: RLOO's final score itself (0.4), not its 2-iteration mean (0.3)
    summary = table4.summarise(rows, iters, ma=1)
    assert summary["level"] == pytest.approx(0.2 + 0.8 * 0.2) and summary["moving_average"] == 1
    assert "(1-iteration moving average)" in "\n".join(table4.markdown(summary, "cmd", "base"))


@pytest.mark.parametrize("flag", ["--iterations", "--ma"])
def test_a_window_or_cut_below_one_iteration_is_refused_naming_the_flag(monkeypatch, capsys, flag):
    table4 = load_benchmark("table4")
    monkeypatch.setattr("sys.argv", ["table4.py", flag, "0"])
    with pytest.raises(SystemExit):
        table4.main()
    assert f"argument {flag}: must be a whole number of iterations, at least 1, got 0" in capsys.readouterr().err
