"""The countdown world: make a target from a pool of numbers, one move per line.

Numbers and targets come from ``reasoning-gym``'s ``countdown`` generator (operators ``+ - *``),
which builds each target from a random expression over the numbers, so every task has a
solution; a task our move rules (no negative intermediate results) cannot solve is skipped. The
question text is ours (``steps.Puzzle.question``): the generator's asks for a bare expression,
while this world answers with one move per line, which is what gives it steps to label.

Why this world should reward credit assignment: every move is a choice among up to 30, and only
some keep the target reachable, which a small model cannot compute and must learn. A failed
response is usually right for several moves before the one that lost the target: an outcome
reward blames all of them, a process reward can blame the one that broke. The demonstrator picks
uniformly among the moves that keep the target reachable, except for a planted misconception it
shows the context for: from the second move on, when the pool's two largest numbers are both at
least ``misconception_min`` and their product exceeds the target, it multiplies them with
probability ``misconception_rate`` (> 0.5, once per task), whether or not that loses the target.
After a lost target it plays the move whose result is closest to the target and boxes what is left.

Test splits: ``test`` rows are in-distribution (a pool size seen in training;
``data_source`` ``countdown_id_n<size>``) or *novel* (a pool size held out of sft/train/val,
``novel_sizes``; ``countdown_novel_n<size>``). Exact duplicate puzzles never cross splits.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass

import pandas as pd

from eurus_prime.tasks.countdown.steps import Puzzle, label_steps, moves, reachable
from eurus_prime.tasks.prompting import build_messages, system_prompt

log = logging.getLogger(__name__)

GENERATOR = "countdown"


@dataclass(frozen=True)
class CountdownWorldConfig:
    """Size and shape of the countdown world (``params:countdownworld``)."""

    seed: int = 0
    """Seed of the generator streams and of the demonstrator's choices."""
    n_sft: int = 20000
    """SFT demonstrations (split ``sft``)."""
    n_train: int = 4000
    """RL training prompts."""
    n_val: int = 500
    """Validation prompts."""
    n_test: int = 2000
    """Held-out test prompts, in-distribution and novel interleaved."""
    novel_share: float = 0.5
    """Share of the test prompts with a held-out pool size."""
    sizes: tuple[int, ...] = (5,)
    """Pool sizes of sft/train/val and of the in-distribution test rows (moves = size - 1)."""
    novel_sizes: tuple[int, ...] = (4, 6)
    """Pool sizes only novel test prompts have."""
    min_value: int = 1
    """Smallest number of a pool."""
    max_value: int = 9
    """Largest number of a pool."""
    min_target: int = 10
    """Smallest target."""
    max_target: int = 60
    """Largest target."""
    misconception_rate: float = 0.55
    """Probability that the demonstrator multiplies the two largest numbers where the misconception applies."""
    misconception_min: int = 5
    """The misconception applies only when the two largest numbers are both at least this."""
    system_prompt: str = "tiny"
    """System message: ``tiny`` or ``eurus2``."""
    max_draws_factor: int = 4
    """Give up after this many generator draws per requested row."""

    def __post_init__(self) -> None:
        for name in ("n_sft", "n_train", "n_val", "n_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"countdownworld.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("sizes", "novel_sizes"):
            bad = [s for s in getattr(self, name) if not 2 <= s <= 7]
            if bad:
                raise ValueError(f"countdownworld.{name} {bad}: pool sizes must be 2-7 (the search is exhaustive)")
        if not self.sizes:
            raise ValueError("countdownworld.sizes is empty: nothing to train on")
        if set(self.sizes) & set(self.novel_sizes):
            raise ValueError(f"countdownworld.novel_sizes {list(self.novel_sizes)} overlap sizes {list(self.sizes)}")
        if not 0 <= self.min_value <= self.max_value:
            raise ValueError(f"countdownworld: need 0 <= min_value ({self.min_value}) <= max_value ({self.max_value})")
        if not 0 <= self.min_target <= self.max_target:
            raise ValueError(
                f"countdownworld: need 0 <= min_target ({self.min_target}) <= max_target ({self.max_target})"
            )
        for name in ("novel_share", "misconception_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"countdownworld.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.novel_share > 0 and self.n_test and not self.novel_sizes:
            raise ValueError("countdownworld.novel_share > 0 needs novel_sizes")
        if self.max_draws_factor < 1:
            raise ValueError(f"countdownworld.max_draws_factor must be >= 1, got {self.max_draws_factor}")
        system_prompt(self.system_prompt)

    def generator_config(self, size: int) -> dict:
        """The reasoning-gym config of one pool size's stream (recorded in ``extra_info``)."""
        return {
            "min_numbers": size,
            "max_numbers": size,
            "min_value": self.min_value,
            "max_value": self.max_value,
            "min_target": self.min_target,
            "max_target": self.max_target,
            "operators": ["+", "-", "*"],
            "seed": self.seed * 100 + size,
        }


def _misconception_applies(pool: list[int], target: int, cfg: CountdownWorldConfig) -> bool:
    top = sorted(pool, reverse=True)
    return len(top) >= 2 and top[1] >= cfg.misconception_min and top[0] * top[1] > target


def demonstrate(puzzle: Puzzle, rng: random.Random, cfg: CountdownWorldConfig) -> str:
    """The demonstrator's trace (see the module docstring): one move per line with the pool after
    it, then the boxed last number."""
    pool, lines, fired = list(puzzle.numbers), [], False
    for k in range(puzzle.n_moves):
        options = [m for m in moves(pool) if m[3] is not None]
        if k >= 1 and not fired and _misconception_applies(pool, puzzle.target, cfg):
            fired = True
            if rng.random() < cfg.misconception_rate:
                top = sorted(pool, reverse=True)
                options = [m for m in options if (m[0], m[1], m[2]) == (top[0], "*", top[1])]
        good = [m for m in options if reachable((*m[4], m[3]), puzzle.target)]
        if good:
            a, op, b, c, rest = rng.choice(good)
        else:
            a, op, b, c, rest = min(options, key=lambda m: (abs(m[3] - puzzle.target), m[:3]))
        pool = [c, *rest]
        lines.append(f"{a} {op} {b} = {c} [{' '.join(map(str, pool))}]")
    return (
        "[ADVANCE]\n\n" + "\n".join(lines) + "\n\nNext action: [OUTPUT]\n\n"
        f"[OUTPUT]\n\nThe answer is \\boxed{{{pool[0]}}}"
    )


def _stream(cfg: CountdownWorldConfig, size: int, n: int):
    try:
        import reasoning_gym  # noqa: PLC0415
    except ImportError as err:
        raise ImportError(
            "the countdown world draws its tasks from reasoning-gym, which is not installed: "
            'pip install -e ".[chains]" (or pip install reasoning-gym)'
        ) from err
    gen = cfg.generator_config(size)
    config = {**gen, "operators": tuple(gen["operators"])}
    return reasoning_gym.create_dataset(GENERATOR, size=max(1, n * cfg.max_draws_factor), **config)


def generate_countdown_world(cfg: CountdownWorldConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Draw the world from reasoning-gym's ``countdown`` streams, one per pool size.

    Returns ``prompts`` (splits train/val/test, Eurus-2-RL-Data schema with ability
    ``countdown``; ``extra_info`` also holds ``generator``, ``generator_config`` (JSON),
    ``source_index``, ``reference`` (the generator's expression) and ``novel``) and
    ``demonstrations`` (split sft, plus ``response`` and ``first_wrong_step``).
    """
    system = system_prompt(cfg.system_prompt)
    n_novel = round(cfg.n_test * cfg.novel_share)
    # Quotas per (split, novel, size), spread evenly over the sizes.
    quotas: dict[tuple[str, bool, int], int] = {}

    def spread(split: str, novel: bool, total: int, sizes: tuple[int, ...]) -> None:
        for i, s in enumerate(sizes):
            quotas[(split, novel, s)] = total // len(sizes) + (i < total % len(sizes))

    spread("test", True, n_novel, cfg.novel_sizes or cfg.sizes)
    spread("test", False, cfg.n_test - n_novel, cfg.sizes)
    spread("val", False, cfg.n_val, cfg.sizes)
    spread("train", False, cfg.n_train, cfg.sizes)
    spread("sft", False, cfg.n_sft, cfg.sizes)
    got: dict[tuple[str, bool, int], list[tuple[int, dict, Puzzle]]] = {k: [] for k in quotas}
    held: set[Puzzle] = set()  # puzzles in train/val/test: never repeated in another split
    for size in sorted({s for _, _, s in quotas}):
        keys = [k for k in quotas if k[2] == size]  # test first, sft last: ``held`` is complete by then
        order = sorted(keys, key=lambda k: ("test", "val", "train", "sft").index(k[0]))
        dataset = _stream(cfg, size, sum(quotas[k] for k in keys))
        idx = 0
        for key in order:
            while len(got[key]) < quotas[key]:
                if idx >= len(dataset):
                    short = {
                        f"{s}{'/novel' if n else ''}/n={z}": quotas[(s, n, z)] - len(got[(s, n, z)])
                        for s, n, z in order
                    }
                    raise ValueError(
                        f"countdownworld: the generator stream for pool size {size} ran out with rows missing "
                        f"{ {k: v for k, v in short.items() if v} }; raise countdownworld.max_draws_factor or widen "
                        f"the world (values, targets)"
                    )
                item = dataset[idx]
                idx += 1
                meta = item["metadata"]
                puzzle = Puzzle(tuple(meta["numbers"]), int(meta["target"]))
                if puzzle in held or not reachable(puzzle.numbers, puzzle.target):
                    continue
                if key[0] != "sft":
                    held.add(puzzle)
                got[key].append((idx - 1, meta, puzzle))
    rng = random.Random(cfg.seed + 1)
    shuffle = random.Random(cfg.seed + 2)
    prompts, demos, index = [], [], 0
    for split in ("train", "val", "test", "sft"):
        # Shuffled, so that any head of a split (evaluation takes the first N) mixes pool sizes,
        # and in the test split in-distribution and novel rows.
        rows = [(novel, r) for (s, novel, _), v in got.items() if s == split for r in v]
        shuffle.shuffle(rows)
        for novel, (source_index, meta, puzzle) in rows:
            size = len(puzzle.numbers)
            row = {
                "data_source": f"countdown_{'novel' if novel else 'id'}_n{size}",
                "prompt": build_messages(puzzle.question(), "countdown", system),
                "ability": "countdown",
                "reward_model": {"style": "rule", "ground_truth": puzzle.ground_truth()},
                "extra_info": {
                    "split": split,
                    "index": index,
                    "generator": GENERATOR,
                    "generator_config": json.dumps(cfg.generator_config(size), sort_keys=True),
                    "source_index": source_index,
                    "reference": meta["expression"],
                    "novel": novel,
                },
            }
            index += 1
            if split == "sft":
                response = demonstrate(puzzle, rng, cfg)
                demos.append(
                    {**row, "response": response, "first_wrong_step": label_steps(puzzle, response).first_wrong_step}
                )
            else:
                prompts.append(row)
    log.info("countdownworld: %s", {f"{s}{'/novel' if n else ''}/n={z}": len(v) for (s, n, z), v in got.items()})
    return pd.DataFrame(prompts), pd.DataFrame(demos)
