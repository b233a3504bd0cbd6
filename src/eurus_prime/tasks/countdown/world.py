"""The countdown world: make a target from a pool of numbers, one move per line.

Numbers and targets come from ``reasoning-gym``'s ``countdown`` generator (``operators``: ``+``
and ``-`` by default), which builds each target from a random expression over the numbers, so
every task has a solution; a task our move rules (no negative intermediate results) cannot solve
is skipped. The generator is slow (sympy, about 6 ms a task), so large worlds are drawn by a
process per core; its tasks depend only on their index, so the result does not. The
question text is ours (``steps.Puzzle.question``): the generator's asks for a bare expression,
while this world answers with one move per line, which is what gives it steps to label.

Why this world should reward credit assignment: every move is a choice among up to 12, and only
about half keep the target reachable (with ``+ -`` and 4 numbers: 55%, 53% and 53% of the moves at
steps 0-2, and a uniformly random player solves 16%; with 5 numbers: 64%, 57%, 54% and 53%, and
11%), which a small model cannot compute and must learn. A failed response is usually right for
several moves before the one that lost the target: an outcome reward blames all of them, a process
reward can blame the one that broke. Measured, it does not pay at this model size: the oracle
process reward ties outcome-only RLOO, and RL only sharpens the SFT model's sampling towards its
greedy answer (benchmarks/README.md, "The countdown world").

The demonstrator is a skilled player only part of the time, so that imitation leaves headroom
for reward to fill: at each move, with probability ``skill`` it picks uniformly among the moves
that keep the target reachable, otherwise uniformly among all legal moves. (A perfect
demonstrator, ``skill: 1``, made the imitation-optimal policy the best one: outcome-only RLOO
then did not move the SFT model in 8 iterations.) On top, a planted misconception it shows the
context for: from the second move on, when combining the pool's two largest numbers with
``misconception_op`` overshoots the target, it makes that move with probability
``misconception_rate`` (once per task), whether or not that loses the target. After a lost
target it plays the move whose result is closest to the target and boxes what is left.

Test splits: ``test`` rows are in-distribution (a pool size seen in training;
``data_source`` ``countdown_id_n<size>``) or *novel* (a pool size held out of sft/train/val,
``novel_sizes``; ``countdown_novel_n<size>``). Exact duplicate puzzles never cross splits.
"""

from __future__ import annotations

import json
import logging
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import pandas as pd

from eurus_prime.tasks.countdown.steps import Puzzle, combine, label_steps, moves, reachable
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
    sizes: tuple[int, ...] = (4,)
    """Pool sizes of sft/train/val and of the in-distribution test rows (moves = size - 1)."""
    novel_sizes: tuple[int, ...] = (3, 5)
    """Pool sizes only novel test prompts have."""
    min_value: int = 1
    """Smallest number of a pool."""
    max_value: int = 9
    """Largest number of a pool."""
    min_target: int = 10
    """Smallest target."""
    max_target: int = 30
    """Largest target."""
    operators: tuple[str, ...] = ("+", "-")
    """Operators a move may use (of ``+ - *``)."""
    misconception_op: str = "+"
    """The misconception combines the two largest numbers with this operator."""
    misconception_rate: float = 0.6
    """Probability that the demonstrator makes the misconception's move where it applies."""
    skill: float = 0.5
    """Probability that the demonstrator picks among the moves that keep the target reachable (else
    among all legal moves)."""
    system_prompt: str = "tiny"
    """System message: ``tiny`` or ``eurus2``."""
    max_draws_factor: int = 4
    """Give up after this many generator draws per requested row."""
    workers: int = 0
    """Processes that draw from the generator (0: one per core; 1: this process)."""

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
        for name in ("novel_share", "misconception_rate", "skill"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"countdownworld.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.novel_share > 0 and self.n_test and not self.novel_sizes:
            raise ValueError("countdownworld.novel_share > 0 needs novel_sizes")
        bad_ops = [op for op in (*self.operators, self.misconception_op) if op not in ("+", "-", "*")]
        if bad_ops or not self.operators:
            raise ValueError(f"countdownworld.operators and misconception_op must be of + - *, got {bad_ops or '[]'}")
        if self.misconception_op not in self.operators:
            raise ValueError(
                f"countdownworld.misconception_op {self.misconception_op!r} is not one of operators {list(self.operators)}"
            )
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
            "operators": list(self.operators),
            "seed": self.seed * 100 + size,
        }


def misconception_move(pool: list[int], target: int, op: str) -> tuple[int, str, int] | None:
    """The planted move where it applies: the two largest numbers combined with ``op`` when that
    overshoots the target; else None."""
    top = sorted(pool, reverse=True)
    if len(top) < 2:
        return None
    result = combine(top[0], op, top[1])
    return (top[0], op, top[1]) if result is not None and result > target else None


def demonstrate(puzzle: Puzzle, rng: random.Random, cfg: CountdownWorldConfig) -> str:
    """The demonstrator's trace (see the module docstring): one move per line with the pool after
    it, then the boxed last number."""
    pool, lines, fired = list(puzzle.numbers), [], False
    for k in range(puzzle.n_moves):
        options = moves(pool, puzzle.ops)
        planted = misconception_move(pool, puzzle.target, cfg.misconception_op) if k >= 1 and not fired else None
        if planted is not None:
            fired = True
            if rng.random() < cfg.misconception_rate:
                options = [m for m in options if m[:3] == planted]
        good = [m for m in options if reachable((*m[4], m[3]), puzzle.target, puzzle.ops)]
        if planted is None and rng.random() >= cfg.skill:
            good = options  # the unskilled half: any legal move
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


def _dataset(gen: dict, size: int):
    try:
        import reasoning_gym  # noqa: PLC0415
    except ImportError as err:
        raise ImportError(
            "the countdown world draws its tasks from reasoning-gym, which is not installed: "
            'pip install -e ".[chains]" (or pip install reasoning-gym)'
        ) from err
    return reasoning_gym.create_dataset(GENERATOR, size=size, **{**gen, "operators": tuple(gen["operators"])})


def _draw(gen: dict, start: int, stop: int) -> list[dict]:
    """The generator's items ``start..stop-1`` (their metadata): each depends only on its index."""
    dataset = _dataset(gen, stop)
    return [dataset[i]["metadata"] for i in range(start, stop)]


class _Stream:
    """One pool size's generator items in index order, drawn in blocks (shared by the processes of
    ``pool`` when there are several blocks to draw)."""

    BLOCK = 512

    def __init__(self, gen: dict, limit: int, pool: ProcessPoolExecutor | None) -> None:
        self.gen, self.limit, self.pool = gen, limit, pool
        self.items: list[dict] = []

    def __len__(self) -> int:
        return self.limit

    def fetch(self, want: int) -> None:
        """Draw items until ``want`` are held (or the limit is reached)."""
        want = min(want, self.limit)
        if len(self.items) >= want:
            return
        start = len(self.items)
        bounds = list(range(start, want, self.BLOCK)) + [want]
        blocks = list(zip(bounds[:-1], bounds[1:]))
        if self.pool is not None and len(blocks) > 1:
            for part in self.pool.map(_draw, [self.gen] * len(blocks), *zip(*blocks)):
                self.items += part
        else:
            self.items += _draw(self.gen, start, want)

    def __getitem__(self, idx: int) -> dict:
        if idx >= len(self.items):
            self.fetch(max(idx + 1, int(len(self.items) * 1.25) + self.BLOCK))
        return self.items[idx]


def _fill(cfg: CountdownWorldConfig, quotas: dict, got: dict, held: set, pool: ProcessPoolExecutor | None) -> None:
    """Fill every (split, novel, size) quota from its size's generator stream, in index order."""
    for size in sorted({s for _, _, s in quotas}):
        keys = [k for k in quotas if k[2] == size]  # test first, sft last: ``held`` is complete by then
        order = sorted(keys, key=lambda k: ("test", "val", "train", "sft").index(k[0]))
        total = sum(quotas[k] for k in keys)
        dataset = _Stream(cfg.generator_config(size), max(1, total * cfg.max_draws_factor), pool)
        dataset.fetch(int(total * 1.1) + 1)  # skips are rare: one parallel draw covers most worlds
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
                meta = dataset[idx]
                idx += 1
                puzzle = Puzzle(tuple(meta["numbers"]), int(meta["target"]), tuple(cfg.operators))
                if puzzle in held or not reachable(puzzle.numbers, puzzle.target, puzzle.ops):
                    continue
                if key[0] != "sft":
                    held.add(puzzle)
                got[key].append((idx - 1, meta, puzzle))


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
    workers = cfg.workers or os.cpu_count() or 1
    need = sum(quotas.values())
    pool = None
    if workers > 1 and need > 2 * _Stream.BLOCK:
        import multiprocessing  # noqa: PLC0415

        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
    try:
        _fill(cfg, quotas, got, held, pool)
    finally:
        if pool is not None:
            pool.shutdown()
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
