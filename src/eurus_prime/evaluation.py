"""Greedy pass@1 of a checkpoint on a table of prompts (Eurus-2-RL-Data schema)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from eurus_prime.engines.generation import generate
from eurus_prime.prompting import render_prompt
from eurus_prime.verifiers import verify_all


@dataclass(frozen=True)
class EvalConfig:
    """How a checkpoint is evaluated."""

    max_new_tokens: int = 160
    """Response budget per prompt."""
    batch_size: int = 128
    """Prompts per generation batch."""
    temperature: float = 0.0
    """0 is greedy pass@1; > 0 samples."""
    max_items: int | None = None
    """Evaluate only the first N prompts (None: all)."""
    seed: int = 0
    """Seed of sampling (unused when greedy)."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"evaluation.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"evaluation.batch_size must be >= 1, got {self.batch_size}")
        if self.temperature < 0:
            raise ValueError(f"evaluation.temperature must be >= 0, got {self.temperature}")


def evaluate_prompts(model, tokenizer, prompts: pd.DataFrame, cfg: EvalConfig) -> pd.DataFrame:
    """Generate one response per prompt and grade it.

    Returns:
        One row per prompt: ``data_source``, ``ability``, ``index``, ``response``,
        ``finish_reason``, ``response_length`` and the verdict columns (``score``, ``correct``,
        ``reason``, ``extracted``, ``error``, ``isolation``).
    """
    rows = prompts if cfg.max_items is None else prompts.head(cfg.max_items)
    texts = [render_prompt(tokenizer, list(p)) for p in rows["prompt"]]
    gens = generate(
        model, tokenizer, texts, max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature, batch_size=cfg.batch_size, seed=cfg.seed,
    )
    verdicts = verify_all(
        rows["ability"].tolist(),
        [g.text for g in gens],
        [rm["ground_truth"] for rm in rows["reward_model"]],
    )
    return pd.DataFrame(
        {
            "data_source": rows["data_source"].to_numpy(),
            "ability": rows["ability"].to_numpy(),
            "index": [e["index"] for e in rows["extra_info"]],
            "response": [g.text for g in gens],
            "finish_reason": [g.finish_reason for g in gens],
            "response_length": [len(g.token_ids) for g in gens],
            **pd.DataFrame([v.as_row() for v in verdicts]).to_dict("list"),
        }
    )


def accuracy_report(items: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per data source, per ability and overall (the ``group`` column says which)."""
    def block(group: str, key: pd.Series) -> pd.DataFrame:
        g = items.groupby(key)
        return pd.DataFrame({
            "group": group,
            "name": list(g.groups),
            "n": g.size().to_numpy(),
            "accuracy": g["correct"].mean().to_numpy(),
            "mean_score": g["score"].mean().to_numpy(),
        })
    overall = pd.Series("all", index=items.index)
    return pd.concat(
        [block("all", overall), block("ability", items["ability"]),
         block("data_source", items["data_source"])],
        ignore_index=True,
    )
