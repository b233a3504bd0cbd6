"""Build the tiny world: prompts in the Eurus-2-RL-Data schema, split, plus SFT demonstrations.

Splits are disjoint by construction: every prompt text is drawn once, and a duplicate draw is
thrown away before it is assigned to a split. The SFT demonstrations are a split of their own
(``sft``), so the RL prompts (``train``), validation (``val``) and held-out test (``test``) prompts
are never seen during SFT.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import pandas as pd

from eurus_prime.prompting import build_messages, system_prompt
from eurus_prime.tinyworld.code_tasks import (
    TEMPLATES,
    demonstrate_code,
    sample_code_task,
)
from eurus_prime.tinyworld.math_tasks import demonstrate_math, sample_math_task

log = logging.getLogger(__name__)

SPLITS = ("sft", "train", "val", "test")


@dataclass(frozen=True)
class TinyWorldConfig:
    """Size and shape of the generated world."""

    seed: int = 0
    """Seed of the generator; the same seed gives the same tables."""
    n_sft: int = 24000
    """Number of SFT demonstrations (prompts of split ``sft``)."""
    n_train: int = 8000
    """Number of RL training prompts (split ``train``)."""
    n_val: int = 500
    """Number of validation prompts (split ``val``)."""
    n_test: int = 2000
    """Number of held-out test prompts (split ``test``)."""
    code_fraction: float = 0.4
    """Share of code tasks in every split; the rest are math."""
    math_difficulties: tuple[int, ...] = (1, 2, 3, 4)
    """Numbers of steps of the math word problems, drawn uniformly."""
    misconception_rate: float = 0.75
    """Probability that the demonstrator applies its misconception where one exists."""
    system_prompt: str = "tiny"
    """System message: ``tiny`` (short, same structure) or ``eurus2`` (the exact Eurus-2 one)."""
    max_draws_factor: int = 50
    """Give up after drawing this many times the requested rows (the world is too small)."""

    def __post_init__(self) -> None:
        for name in ("n_sft", "n_train", "n_val", "n_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"tinyworld.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.code_fraction <= 1.0:
            raise ValueError(f"tinyworld.code_fraction must be in [0, 1], got {self.code_fraction}")
        if not 0.0 <= self.misconception_rate <= 1.0:
            raise ValueError(
                f"tinyworld.misconception_rate must be in [0, 1], got {self.misconception_rate}"
            )
        if not self.math_difficulties or any(d < 1 for d in self.math_difficulties):
            raise ValueError(
                f"tinyworld.math_difficulties must be positive step counts, "
                f"got {self.math_difficulties}"
            )
        system_prompt(self.system_prompt)  # raises listing the valid names

    def count(self, split: str) -> int:
        return getattr(self, f"n_{split}")


@dataclass
class _Draw:
    ability: str
    data_source: str
    question: str
    ground_truth: str
    difficulty: int
    task: object = field(repr=False)


def _draw(rng: random.Random, cfg: TinyWorldConfig, ability: str) -> _Draw:
    if ability == "code":
        task = sample_code_task(rng, rng.choice(TEMPLATES))
        return _Draw("code", f"tiny_code_d{task.difficulty}", task.question,
                     task.ground_truth, task.difficulty, task)
    task = sample_math_task(rng, rng.choice(cfg.math_difficulties))
    return _Draw("math", f"tiny_math_d{task.difficulty}", task.question,
                 str(task.answer), task.difficulty, task)


def _row(d: _Draw, split: str, index: int, system: str) -> dict:
    return {
        "data_source": d.data_source,
        "prompt": build_messages(d.question, d.ability, system),
        "ability": d.ability,
        "reward_model": {"style": "rule", "ground_truth": d.ground_truth},
        "extra_info": {"split": split, "index": index},
    }


def _draw_distinct(
    rng: random.Random, cfg: TinyWorldConfig, ability: str, total: int
) -> list[_Draw]:
    seen: set[str] = set()
    pool: list[_Draw] = []
    draws = 0
    while len(pool) < total:
        draws += 1
        if draws > cfg.max_draws_factor * total:
            raise ValueError(
                f"tinyworld: only {len(pool)} distinct {ability} prompts after {draws} draws (wanted "
                f"{total}); lower tinyworld.n_sft/n_train/n_val/n_test or widen the world"
            )
        d = _draw(rng, cfg, ability)
        if d.question not in seen:
            seen.add(d.question)
            pool.append(d)
    log.info("tinyworld: %d distinct %s prompts from %d draws", total, ability, draws)
    return pool


def generate_world(cfg: TinyWorldConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate the world.

    Every prompt text is drawn once (duplicate draws are thrown away), then the pool is shuffled
    and cut into the splits, so each split is a uniform sample of the same pool: identically
    distributed, and disjoint.

    Returns:
        ``prompts``: one row per RL prompt (splits train/val/test), Eurus-2-RL-Data schema;
        ``demonstrations``: one row per SFT prompt (split sft), the same columns plus
        ``response``, the demonstrator's action trace.
    """
    rng = random.Random(cfg.seed)
    demo_rng = random.Random(cfg.seed + 1)  # demonstrator slips don't shift the task stream
    system = system_prompt(cfg.system_prompt)
    total = sum(cfg.count(s) for s in SPLITS)
    n_code = round(total * cfg.code_fraction)
    pool = _draw_distinct(rng, cfg, "code", n_code) + _draw_distinct(rng, cfg, "math", total - n_code)
    rng.shuffle(pool)
    prompts, demos = [], []
    start = 0
    for split in SPLITS:
        for index in range(start, start + cfg.count(split)):
            d = pool[index]
            row = _row(d, split, index, system)
            if split == "sft":
                demonstrate = demonstrate_code if d.ability == "code" else demonstrate_math
                demos.append({**row, "response": demonstrate(d.task, demo_rng, cfg.misconception_rate)})
            else:
                prompts.append(row)
        start += cfg.count(split)
    return pd.DataFrame(prompts), pd.DataFrame(demos)
