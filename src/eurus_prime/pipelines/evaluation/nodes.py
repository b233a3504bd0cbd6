"""evaluation: the SFT model's held-out pass@1 (part of the bootstrap), and the `evaluation`
pipeline: several checkpoints on named suites, compared in a table, a report and a chart."""

from __future__ import annotations

import logging

import pandas as pd

from eurus_prime.datasets import Checkpoint
from eurus_prime.eval import evaluation
from eurus_prime.eval.checkpoints import current_project
from eurus_prime.eval.evaluation import (
    SPLIT_SUITES,
    EvalConfig,
    SuiteEvalConfig,
    accuracy_report,
    evaluate_prompts,
    suite_name,
)
from eurus_prime.prime import prm_eval as prm_eval_lib
from eurus_prime.prime.config import PrimeConfig
from eurus_prime.prime.prm_eval import PrmEvalConfig
from eurus_prime.runs.guard import monitor

log = logging.getLogger(__name__)


def evaluate_checkpoint(
    checkpoint: Checkpoint, prompts: pd.DataFrame, evaluation: EvalConfig
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Generate, grade and summarise.

    Returns:
        ``eval_items`` (one row per prompt), ``eval_report`` (accuracy per data source, ability
        and overall) and MLflow metrics ``val/test_score/<name>``.
    """
    items = evaluate_prompts(checkpoint.model, checkpoint.tokenizer, prompts, evaluation, monitor.step)
    report = accuracy_report(items)
    for row in report.itertuples():
        log.info("eval %-12s %-14s n=%-5d accuracy %.3f", row.group, row.name, row.n, row.accuracy)
    metrics = {f"val/test_score/{row.name}": {"value": float(row.accuracy), "step": 0} for row in report.itertuples()}
    return items, report, metrics


def build_prm_eval_set(
    sft_model: Checkpoint, prompts_val: pd.DataFrame, prm_eval: PrmEvalConfig, prime: PrimeConfig
) -> pd.DataFrame:
    """The fixed set the PRM is measured on at every evaluation: SFT samples of validation prompts,
    graded, step-labelled where the world can, with the reference log-probs (``prime.prm_eval``)."""
    table = prm_eval_lib.build_eval_set(sft_model, prompts_val, prm_eval, prime)
    log.info(
        "prm_eval_set: %d samples of %d validation prompts, %.1f%% correct",
        len(table),
        len(table) // prm_eval.samples,
        100 * float(table["correct"].mean()) if len(table) else 0.0,
    )
    return table


def load_eval_suites(
    prompts_test: pd.DataFrame, prompts_val: pd.DataFrame, evaluation_suites: SuiteEvalConfig
) -> pd.DataFrame:
    """The items to evaluate: the held-out splits named ``test``/``val`` and any benchmark suites
    (``eurus_prime.tasks.suites``), each cut to ``max_items``, with a ``suite`` column."""
    cfg = evaluation_suites
    splits = {"test": prompts_test, "val": prompts_val}
    frames = []
    for spec in cfg.suites:
        name = suite_name(spec)
        if name in SPLIT_SUITES:
            frame = splits[name]
        else:
            from eurus_prime.tasks.suites import load_suites

            frame = load_suites([spec], system=cfg.system_prompt)
        if cfg.max_items is not None:
            frame = frame.head(cfg.max_items)
        frames.append(frame.assign(suite=name))
        log.info("evaluation suite %-14s %d items", name, len(frame))
    return pd.concat(frames, ignore_index=True)


def evaluate_suites(
    eval_suite_prompts: pd.DataFrame, evaluation_suites: SuiteEvalConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every checkpoint on every suite item, greedy and (``best_of`` > 0) best-of-N."""
    return evaluation.evaluate_suites(eval_suite_prompts, evaluation_suites, current_project())


def summarise_evaluation(eval_suite_items: pd.DataFrame) -> tuple[pd.DataFrame, str, bytes, dict]:
    """The comparison table, its Markdown report and chart (both logged to MLflow as artifacts)
    and one metric per checkpoint, suite and method: ``eval_suite/<checkpoint>/<suite>/<method>``."""
    table = evaluation.suite_table(eval_suite_items)
    whole = table[table["data_source"] == "all"]
    for row in whole.itertuples():
        log.info("%-14s %-12s %-12s n=%-5d accuracy %.3f", row.checkpoint, row.suite, row.method, row.n, row.accuracy)
    metrics = {
        f"eval_suite/{r.checkpoint}/{r.suite}/{r.method.replace('@', '_at_')}": {"value": float(r.accuracy), "step": 0}
        for r in whole.itertuples()
    }
    return table, evaluation.markdown_report(table), evaluation.chart_png(table), metrics
