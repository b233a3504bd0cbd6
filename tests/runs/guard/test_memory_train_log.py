"""The training loop records each node's peak RSS next to its time/<node> in train_log.jsonl and
on the MLflow campaign run (``hooks.MemoryHooks``, Linux)."""

from __future__ import annotations

import json

import pytest

from eurus_prime.runs.guard import hooks

NODES = (
    "sample_prompts",
    "generate_rollouts",
    "verify_outcomes",
    "filter_prompts",
    "compute_process_rewards",
    "update_prm",
    "estimate_advantages",
    "update_policy",
    "evaluate_policy",
)


@pytest.mark.slow
@pytest.mark.skipif(
    not hooks.reset_peak_rss() or not hooks.read_rss_kb(),
    reason="needs Linux /proc/self/clear_refs (writable) and /proc/self/status",
)
def test_train_log_and_campaign_carry_memory_metrics(trained_project):
    rows = [json.loads(x) for x in (trained_project / "data/08_reporting/train_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1]
    for r in rows:
        for node in NODES:
            peak, before = r[f"memory/{node}_peak_rss_mb"], r[f"memory/{node}_rss_before_mb"]
            assert 20 < before <= peak + 1 < 100_000, (node, before, peak)
        assert r["memory/peak_rss_mb"] >= max(r[f"memory/{n}_peak_rss_mb"] for n in NODES) - 1
        assert "time/update_policy" in r  # next to the time metrics

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{trained_project / 'mlflow.db'}")
    campaign = json.loads((trained_project / "data/08_reporting/campaign.json").read_text())
    run_id = campaign.get("run_id") or campaign.get("campaign_run_id")
    history = client.get_metric_history(run_id, "memory/update_policy_peak_rss_mb")
    assert sorted(m.step for m in history) == [0, 1]
