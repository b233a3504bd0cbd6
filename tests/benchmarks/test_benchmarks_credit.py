"""benchmarks/credit_assignment.py's prompt restriction (``--where``), without running a benchmark."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.benchmarks import load_benchmark


def test_where_keeps_the_prompts_whose_extra_info_matches():
    ca = load_benchmark("credit_assignment")
    prompts = pd.DataFrame(
        {
            "data_source": ["a", "b", "c", "d"],
            "extra_info": [{"traps": t, "novel": n} for t, n in ((1, False), (3, False), (3, True), (2, False))],
        }
    )
    assert list(ca._where(prompts, "traps == 3")["data_source"]) == ["b", "c"]
    assert list(ca._where(prompts, "traps == 3 and not novel")["data_source"]) == ["b"]
    assert ca._where(prompts, None) is prompts
    with pytest.raises(ValueError, match="keeps no prompt"):
        ca._where(prompts, "traps > 5")


def _result(tmp_path, name: str, arms: dict, sft_acc: float = 0.3):
    """A ``credit_assignment.py --out`` result: per (arm, seed) its held-out accuracy at iteration 1
    and the training scores of iterations 0 and 1."""
    rows = [{"arm": "sft_checkpoint", "seed": -1, "point": 0, "iteration": -1, "rollouts": 0, "acc_all": sft_acc}]
    iters = []
    for (arm, seed), (acc, scores) in arms.items():
        rows.append({"arm": arm, "seed": seed, "point": 1, "iteration": 1, "rollouts": 512, "acc_all": acc})
        iters += [
            {"arm": arm, "seed": seed, "iteration": i, "rollouts": 256 * (i + 1), "train_verify_score/all": s}
            for i, s in enumerate(scores)
        ]
    rows = pd.DataFrame(rows).assign(acc_id=lambda d: d["acc_all"], acc_novel=lambda d: d["acc_all"] / 2)
    prefix = tmp_path / name
    rows.to_csv(prefix.with_suffix(".csv"), index=False)
    pd.DataFrame(iters).to_csv(tmp_path / f"{name}_iterations.csv", index=False)
    return prefix


def test_merged_results_keep_a_reproduced_run_once_and_rename_selected_arms(tmp_path):
    ca = load_benchmark("credit_assignment")
    a = _result(tmp_path, "a", {("rloo", 0): (0.5, (0.2, 0.4)), ("prime", 0): (0.6, (0.2, 0.5))})
    b = _result(tmp_path, "b", {("rloo", 0): (0.5, (0.2, 0.4)), ("rloo", 1): (0.55, (0.25, 0.45))})
    rows, iters = ca.merge_results([a, b])
    assert sorted(zip(rows["arm"], rows["seed"])) == [("prime", 0), ("rloo", 0), ("rloo", 1), ("sft_checkpoint", -1)]
    assert len(iters) == 6
    rows, _ = ca.merge_results([f"{a}:prime=rloo_prime", b])
    assert sorted(set(rows["arm"])) == ["rloo", "rloo_prime", "sft_checkpoint"]
    assert ca.parse_result_spec("results/x:rloo,prime=rloo_prime") == (
        ca.Path("results/x"),
        {"rloo": "rloo", "prime": "rloo_prime"},
    )
    assert ca.parse_result_spec("results/x") == (ca.Path("results/x"), None)


def test_merging_runs_that_disagree_or_start_from_other_models_is_an_error_that_names_them(tmp_path):
    ca = load_benchmark("credit_assignment")
    a = _result(tmp_path, "a", {("rloo", 0): (0.5, (0.2, 0.4))})
    other_score = _result(tmp_path, "b", {("rloo", 0): (0.5, (0.2, 0.41))})
    with pytest.raises(ValueError, match=r"rloo seed 0 in .*a and .*b: they disagree on train_verify_score/all"):
        ca.merge_results([a, other_score])
    other_acc = _result(tmp_path, "c", {("rloo", 0): (0.52, (0.2, 0.4))})
    with pytest.raises(ValueError, match=r"rloo seed 0 in .*a and .*c: they disagree on acc_all: \[0.5\] vs \[0.52\]"):
        ca.merge_results([a, other_acc])
    other_sft = _result(tmp_path, "d", {("rloo", 1): (0.5, (0.2, 0.4))}, sft_acc=0.31)
    with pytest.raises(ValueError, match="start from different SFT models"):
        ca.merge_results([a, other_sft])
    with pytest.raises(ValueError, match="expected PREFIX or PREFIX:ARM"):
        ca.parse_result_spec("results/x:")
