"""Build the tiny world: prompts in the Eurus-2-RL-Data schema, split, plus SFT demonstrations.

Splits are disjoint by construction: every prompt text belongs to the first split that drew it.
The SFT demonstrations are a split of their own (``sft``), so the RL prompts (``train``),
validation (``val``) and held-out test (``test``) prompts are never seen during SFT.

The test split measures generalisation, not recall. A distinct prompt text is not enough: the
world's task space is small (about 700 code functions, and few short math chains), so most
distinct test texts are a training task with only its name, item or identifier changed. Test rows
are therefore of two kinds (``extra_info.novel``):

- *in-distribution* (``data_source`` ``tiny_math_d<k>``): math chains whose rename-free
  signature (``task_signature``: start value and the sequence of operations) no sft/train/val
  task has. Code has no in-distribution rows: 99% of the code tasks drawn from the training
  templates are a training task under another name (9 of the 800 test draws of the default
  world were not), so the few that are not would measure one template;
- *novel* (``tiny_math_novel_d<k>``, ``tiny_code_novel_d<k>``): structures never drawn for
  sft/train/val: math chains of a held-out length (``novel_math_difficulties``) and code functions
  of held-out templates (``code_tasks.NOVEL_TEMPLATES``, new compositions of the training
  templates' parts, the misconceived ones included).

sft/train/val are drawn from the same stream whatever the test split holds, so changing the test
split's rules leaves them, and hence the tokenizer and every trained weight, unchanged.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import pandas as pd

from eurus_prime.tasks.prompting import build_messages, system_prompt
from eurus_prime.tasks.tinyworld.code_tasks import (
    NOVEL_TEMPLATES,
    TEMPLATES,
    CodeTask,
    demonstrate_code,
    sample_code_task,
)
from eurus_prime.tasks.tinyworld.math_tasks import MathTask, demonstrate_math, sample_math_task

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
    """Number of held-out test prompts (split ``test``): in-distribution and novel, interleaved."""
    novel_share: float = 0.5
    """Share of the test prompts with a structure held out of sft/train/val (see the module doc)."""
    novel_math_difficulties: tuple[int, ...] = (4,)
    """Math chain lengths held out of sft/train/val: only novel test prompts have them."""
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
            raise ValueError(f"tinyworld.misconception_rate must be in [0, 1], got {self.misconception_rate}")
        if not self.math_difficulties or any(d < 1 for d in self.math_difficulties):
            raise ValueError(f"tinyworld.math_difficulties must be positive step counts, got {self.math_difficulties}")
        if not 0.0 <= self.novel_share <= 1.0:
            raise ValueError(f"tinyworld.novel_share must be in [0, 1], got {self.novel_share}")
        if any(d < 1 for d in self.novel_math_difficulties):
            raise ValueError(
                f"tinyworld.novel_math_difficulties must be positive step counts, got {self.novel_math_difficulties}"
            )
        if set(self.novel_math_difficulties) & set(self.math_difficulties):
            raise ValueError(
                f"tinyworld.novel_math_difficulties {list(self.novel_math_difficulties)} overlap "
                f"math_difficulties {list(self.math_difficulties)}: a held-out length must not "
                f"be trained on"
            )
        if self.novel_share > 0 and not self.novel_math_difficulties and self.code_fraction < 1:
            raise ValueError("tinyworld.novel_share > 0 needs novel_math_difficulties for its math rows")
        if not 10 <= self.math_max_value <= 99:
            raise ValueError(f"tinyworld.math_max_value must be in [10, 99], got {self.math_max_value}")
        if not 1 <= self.math_max_operand <= self.math_max_value:
            raise ValueError(f"tinyworld.math_max_operand must be in [1, math_max_value], got {self.math_max_operand}")
        system_prompt(self.system_prompt)  # raises listing the valid names

    def count(self, split: str) -> int:
        return getattr(self, f"n_{split}")


@dataclass(frozen=True)
class _Draw:
    ability: str
    task: MathTask | CodeTask
    novel: bool = False

    @property
    def data_source(self) -> str:
        return f"tiny_{self.ability}{'_novel' if self.novel else ''}_d{self.task.difficulty}"

    @property
    def ground_truth(self) -> str:
        # Computed only for kept rows: a code task's tests run its solution.
        return self.task.ground_truth if self.ability == "code" else str(self.task.answer)


def _draw(rng: random.Random, cfg: TinyWorldConfig, ability: str, novel: bool = False) -> _Draw:
    """One task of ``ability``: from the training templates and lengths, or with ``novel`` from the
    held-out ones (``NOVEL_TEMPLATES``, ``novel_math_difficulties``)."""
    if ability == "code":
        return _Draw("code", sample_code_task(rng, rng.choice(NOVEL_TEMPLATES if novel else TEMPLATES)), novel)
    lengths = cfg.novel_math_difficulties if novel else cfg.math_difficulties
    task = sample_math_task(rng, rng.choice(lengths), cfg.math_max_value, cfg.math_max_operand)
    return _Draw("math", task, novel)


def task_signature(task: MathTask | CodeTask) -> tuple:
    """What a task asks, without its names: two tasks with one signature differ only in the
    person, item, function or argument name (or a synonym of a phrase: "finds 3 more" and "buys 3
    more" are one operation). Math: the start value and each step's operation, operand and whether
    it carries a misconception; code: the template and its constants."""
    if isinstance(task, MathTask):
        return ("math", task.start, tuple((s.verb.op, s.operand, s.verb.wrong_op is not None) for s in task.steps))
    return ("code", task.template.description, tuple(sorted(task.constants.items())))


def _row(d: _Draw, split: str, index: int, system: str) -> dict:
    return {
        "data_source": d.data_source,
        "prompt": build_messages(d.task.question, d.ability, system),
        "ability": d.ability,
        "reward_model": {"style": "rule", "ground_truth": d.ground_truth},
        "extra_info": {"split": split, "index": index, "novel": d.novel},
    }


def generate_world(cfg: TinyWorldConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate the world.

    ``val``, ``test`` and ``train`` hold distinct prompts (a duplicate draw is thrown away). The
    ``sft`` demonstrations may repeat a prompt (several demonstrations of one task, each with its
    own misconception draws), but never one of the other splits' prompts, so no prompt text is in
    two splits and the held-out splits are never seen in SFT. train, val, sft and the novel test
    rows have exactly ``code_fraction`` code tasks (rounded); the in-distribution test rows are
    math (see the module docstring).

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
    drawn["test"] = _held_out_test(cfg, drawn, owner)
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


def _held_out_test(cfg: TinyWorldConfig, drawn: dict[str, list[_Draw]], owner: dict[str, str]) -> list[_Draw]:
    """The test split: in-distribution math rows whose signature no sft/train/val task has (first
    the main stream's test draws, then a stream of their own), and novel rows (held-out math
    lengths and code templates), shuffled together. Its own streams leave the other splits as
    they were."""
    n_novel = round(cfg.n_test * cfg.novel_share)
    n_novel_code = round(n_novel * cfg.code_fraction)
    quotas = {
        (False, "math"): cfg.n_test - n_novel,
        (True, "code"): n_novel_code,
        (True, "math"): n_novel - n_novel_code,
    }
    seen = {task_signature(d.task) for split in ("sft", "train", "val") for d in drawn[split]}
    taken: set[tuple] = set()  # signatures already in the test split: no task twice
    out: dict[tuple[bool, str], list[_Draw]] = {key: [] for key in quotas}

    def offer(d: _Draw) -> None:
        sig = task_signature(d.task)
        key = (d.novel, d.ability)
        if key not in quotas or len(out[key]) >= quotas[key] or sig in seen or sig in taken:
            return
        if owner.get(d.task.question, "test") != "test":
            return  # another split's prompt text
        taken.add(sig)
        out[key].append(d)

    for d in drawn["test"]:  # the main stream's test draws: kept when they are not recall
        offer(d)
    rng = random.Random(cfg.seed + 101)  # the test split's own stream
    for key, want in quotas.items():
        novel, ability = key
        draws = 0
        while len(out[key]) < want:
            draws += 1
            if draws > cfg.max_draws_factor * max(want, 1):
                raise ValueError(
                    f"tinyworld: only {len(out[key])} usable {'novel' if novel else 'in-distribution'} "
                    f"{ability} prompts for split 'test' after {draws} draws (wanted {want}); lower "
                    f"tinyworld.n_test or novel_share, or widen the world"
                )
            offer(_draw(rng, cfg, ability, novel))
    rows = [d for key in quotas for d in out[key]]
    random.Random(cfg.seed + 102).shuffle(rows)  # any head of the split mixes the kinds
    log.info("tinyworld: test split %s", {f"{'novel' if n else 'id'}/{a}": len(v) for (n, a), v in out.items()})
    return rows
