"""evaluation: greedy pass@1 of a checkpoint on the held-out prompts."""

from __future__ import annotations

import logging

import pandas as pd

from eurus_prime.datasets import Checkpoint
from eurus_prime.evaluation import EvalConfig, accuracy_report, evaluate_prompts

log = logging.getLogger(__name__)


def evaluate_checkpoint(
    checkpoint: Checkpoint, prompts: pd.DataFrame, evaluation: EvalConfig
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Generate, grade and summarise.

    Returns:
        ``eval_items`` (one row per prompt), ``eval_report`` (accuracy per data source, ability
        and overall) and MLflow metrics ``val/test_score/<name>``.
    """
    items = evaluate_prompts(checkpoint.model, checkpoint.tokenizer, prompts, evaluation)
    report = accuracy_report(items)
    for row in report.itertuples():
        log.info("eval %-12s %-14s n=%-5d accuracy %.3f", row.group, row.name, row.n, row.accuracy)
    metrics = {
        f"val/test_score/{row.name}": {"value": float(row.accuracy), "step": 0}
        for row in report.itertuples()
    }
    return items, report, metrics
