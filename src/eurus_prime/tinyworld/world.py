"""Build the tiny world: prompts in the Eurus-2-RL-Data schema, split, plus SFT demonstrations.

Splits are disjoint by construction: every prompt text belongs to the first split that drew it.
The SFT demonstrations are a split of their own (``sft``), so the RL prompts (``train``),
validation (``val``) and held-out test (``test``) prompts are never seen during SFT.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import pandas as pd

from eurus_prime.prompting import build_messages, system_prompt
from eurus_prime.tinyworld.code_tasks import (
    TEMPLATES,
    CodeTask,
    demonstrate_code,
    sample_code_task,
)
from eurus_prime.tinyworld.math_tasks import MathTask, demonstrate_math, sample_math_task

log = logging.getLogger(__name__)

SPLITS = ("sft", "train", "val", "test")


@dataclass(frozen=True)
class TinyWorldConfig:
    """Size and shape of the generated world."""

    seed: int = 0
    """Seed of the generator; the same seed gives the same tables."""
    n_sft: int = 20000
    """Number of SFT demonstrations (prompts of split ``sft``)."""
    n_train: int = 4000
    """Number of RL training prompts (split ``train``)."""
    n_val: int = 500
    """Number of validation prompts (split ``val``)."""
    n_test: int = 2000
    """Number of held-out test prompts (split ``test``)."""
    code_fraction: float = 0.4
    """Share of code tasks in every split; the rest are math."""
    math_difficulties: tuple[int, ...] = (1, 2, 3)
    """Numbers of steps of the math word problems, drawn uniformly."""
    math_max_value: int = 10
    """Largest number a math chain may reach (every intermediate value is in [0, this])."""
    math_max_operand: int = 5
    """Largest operand of an addition or subtraction step."""
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
        if not 10 <= self.math_max_value <= 99:
            raise ValueError(f"tinyworld.math_max_value must be in [10, 99], got {self.math_max_value}")
        if not 1 <= self.math_max_operand <= self.math_max_value:
            raise ValueError(
                f"tinyworld.math_max_operand must be in [1, math_max_value], got {self.math_max_operand}"
            )
        system_prompt(self.system_prompt)  # raises listing the valid names

    def count(self, split: str) -> int:
        return getattr(self, f"n_{split}")


@dataclass(frozen=True)
class _Draw:
    ability: str
    task: MathTask | CodeTask

    @property
    def data_source(self) -> str:
        return f"tiny_{self.ability}_d{self.task.difficulty}"

    @property
    def ground_truth(self) -> str:
        # Computed only for kept rows: a code task's tests run its solution.
        return self.task.ground_truth if self.ability == "code" else str(self.task.answer)


def _draw(rng: random.Random, cfg: TinyWorldConfig, ability: str) -> _Draw:
    if ability == "code":
        return _Draw("code", sample_code_task(rng, rng.choice(TEMPLATES)))
    task = sample_math_task(
        rng, rng.choice(cfg.math_difficulties), cfg.math_max_value, cfg.math_max_operand
    )
    return _Draw("math", task)


def _row(d: _Draw, split: str, index: int, system: str) -> dict:
    return {
        "data_source": d.data_source,
        "prompt": build_messages(d.task.question, d.ability, system),
        "ability": d.ability,
        "reward_model": {"style": "rule", "ground_truth": d.ground_truth},
        "extra_info": {"split": split, "index": index},
    }


def generate_world(cfg: TinyWorldConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate the world.

    ``val``, ``test`` and ``train`` hold distinct prompts (a duplicate draw is thrown away). The
    ``sft`` demonstrations may repeat a prompt (several demonstrations of one task, each with its
    own misconception draws), but never one of the other splits' prompts, so no prompt text is in
    two splits and the held-out splits are never seen in SFT. Every split has exactly
    ``code_fraction`` code tasks (rounded).

    Returns:
        ``prompts``: one row per RL prompt (splits train/val/test), Eurus-2-RL-Data schema;
        ``demonstrations``: one row per SFT demonstration (split sft), the same columns plus
        ``response``, the demonstrator's action trace.
    """
    rng = random.Random(cfg.seed)
    demo_rng = random.Random(cfg.seed + 1)  # demonstrator slips don't shift the task stream
    system = system_prompt(cfg.system_prompt)
    owner: dict[str, str] = {}  # prompt text -> the split that drew it first
    taken: set[str] = set()  # prompt texts already in a split that must stay distinct
    drawn: dict[str, list[_Draw]] = {s: [] for s in SPLITS}
    for split in ("test", "val", "train", "sft"):
        want, draws = cfg.count(split), 0
        # Exact ability quotas, shuffled; a rejected draw is retried within its ability, so
        # every split has the same share of code.
        n_code = round(want * cfg.code_fraction)
        abilities = ["code"] * n_code + ["math"] * (want - n_code)
        rng.shuffle(abilities)
        for ability in abilities:
            while True:
                draws += 1
                if draws > cfg.max_draws_factor * want:
                    raise ValueError(
                        f"tinyworld: only {len(drawn[split])} usable prompts for split {split!r} "
                        f"after {draws} draws (wanted {want}); lower tinyworld.n_{split} or widen "
                        f"the world"
                    )
                d = _draw(rng, cfg, ability)
                if owner.setdefault(d.task.question, split) != split:
                    continue  # another split's prompt
                if split != "sft":
                    if d.task.question in taken:
                        continue
                    taken.add(d.task.question)
                break
            drawn[split].append(d)
        log.info("tinyworld: %d %s prompts from %d draws", want, split, draws)
    prompts, demos = [], []
    index = 0
    for split in SPLITS:
        for d in drawn[split]:
            row = _row(d, split, index, system)
            index += 1
            if split == "sft":
                demonstrate = demonstrate_code if d.ability == "code" else demonstrate_math
                demos.append({**row, "response": demonstrate(d.task, demo_rng, cfg.misconception_rate)})
            else:
                prompts.append(row)
    return pd.DataFrame(prompts), pd.DataFrame(demos)
