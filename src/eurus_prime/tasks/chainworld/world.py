"""The chains world: long chain sums, written one step per line, with a planted misconception.

Questions and answers come from ``reasoning-gym``'s ``chain_sum`` generator (single-digit terms,
``+`` and ``-``). The demonstrator writes every step ``a op b = c`` under [ADVANCE] and boxes the
result under [OUTPUT]. (A format that rewrote the whole remaining expression on every line, so
that the next term sits beside the running value, was tried and dropped: the 0.84M model did not
learn to copy 10-term lines within the bootstrap budget, validation loss 0.53 against 0.09.)

Why this world rewards credit assignment: a *trap* is a subtraction that crosses zero from a
non-negative value (``4 - 7``). There the demonstrator drops the sign (writes 3 for ``4 - 7``) with
probability ``misconception_rate`` (> 0.5), so the imitation-optimal policy is wrong at every trap
and further SFT cannot fix it. Every task has ``min_traps``..``max_traps`` traps, none before step
``first_trap_step``, so success hangs on a few mid-trajectory steps among 5-11. A failed sample is usually right
at some traps and wrong at others: an outcome reward blames all of them, a process reward can
blame the one that broke. The step checker (``steps.label_steps``) gives the ground-truth first
wrong step of every demonstration and rollout.

Test splits: ``test`` rows are either in-distribution (operator patterns and term counts seen in
training, other numbers; ``data_source`` ``chains_id_t<terms>``) or *novel* (an operator pattern
never drawn for sft/train/val, or a held-out term count; ``chains_novel_t<terms>``). Exact
duplicate expressions never cross splits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass

import pandas as pd

from eurus_prime.tasks.chainworld.steps import Chain, label_steps, parse_expression
from eurus_prime.tasks.prompting import build_messages, system_prompt

log = logging.getLogger(__name__)

GENERATOR = "chain_sum"
SPLITS = ("sft", "train", "val", "test")


@dataclass(frozen=True)
class ChainWorldConfig:
    """Size and shape of the chains world (``params:chainworld``)."""

    seed: int = 0
    """Seed of the generator stream and of the demonstrator's misconception draws."""
    n_sft: int = 20000
    """SFT demonstrations (split ``sft``)."""
    n_train: int = 4000
    """RL training prompts."""
    n_val: int = 500
    """Validation prompts."""
    n_test: int = 2000
    """Held-out test prompts, in-distribution and novel interleaved."""
    novel_share: float = 0.5
    """Share of the test prompts drawn from novel structures."""
    min_terms: int = 6
    """Fewest terms of an expression (steps = terms - 1)."""
    max_terms: int = 12
    """Most terms of an expression."""
    novel_terms: tuple[int, ...] = (9,)
    """Term counts held out of sft/train/val: only novel test prompts have them."""
    novel_pattern_share: float = 0.2
    """Share of operator patterns (e.g. ``+--+-``) held out of sft/train/val, by a stable hash."""
    min_traps: int = 1
    """Fewest traps (zero-crossing subtractions) per task."""
    max_traps: int = 3
    """Most traps per task."""
    first_trap_step: int = 2
    """No trap before this step (0-based): the deciding steps sit mid-trajectory."""
    misconception_rate: float = 0.55
    """Probability that the demonstrator drops the sign at a trap."""
    system_prompt: str = "tiny"
    """System message: ``tiny`` or ``eurus2``."""
    max_draws_factor: int = 200
    """Give up after this many generator draws per requested row."""

    def __post_init__(self) -> None:
        for name in ("n_sft", "n_train", "n_val", "n_test"):
            if getattr(self, name) < 0:
                raise ValueError(f"chainworld.{name} must be >= 0, got {getattr(self, name)}")
        if not 3 <= self.min_terms <= self.max_terms:
            raise ValueError(
                f"chainworld.min_terms ({self.min_terms}) must be >= 3 and <= max_terms ({self.max_terms})"
            )
        if self.first_trap_step < 0:
            raise ValueError(f"chainworld.first_trap_step must be >= 0, got {self.first_trap_step}")
        if not 1 <= self.min_traps <= self.max_traps:
            raise ValueError(
                f"chainworld.min_traps ({self.min_traps}) must be >= 1 and <= max_traps ({self.max_traps})"
            )
        for name in ("novel_share", "novel_pattern_share", "misconception_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"chainworld.{name} must be in [0, 1], got {getattr(self, name)}")
        bad = [t for t in self.novel_terms if not self.min_terms <= t <= self.max_terms]
        if bad:
            raise ValueError(f"chainworld.novel_terms {bad} are outside [min_terms, max_terms]")
        if set(self.novel_terms) >= set(range(self.min_terms, self.max_terms + 1)):
            raise ValueError("chainworld.novel_terms holds out every term count: nothing left to train on")
        system_prompt(self.system_prompt)

    def generator_config(self) -> dict:
        """The reasoning-gym config the questions are drawn from (recorded in ``extra_info``)."""
        return {
            "min_terms": self.min_terms,
            "max_terms": self.max_terms,
            "min_digits": 1,
            "max_digits": 1,
            "allow_negation": False,
            "seed": self.seed,
        }


def traps(chain: Chain) -> list[int]:
    """Indices of the steps that subtract past zero from a non-negative value."""
    values = chain.values
    return [k for k, (op, term) in enumerate(chain.ops) if op == "-" and 0 <= values[k] < term]


def is_novel(chain: Chain, cfg: ChainWorldConfig) -> bool:
    """Whether the chain's structure is held out of sft/train/val."""
    if len(chain.ops) + 1 in cfg.novel_terms:
        return True
    digest = hashlib.sha256(f"{cfg.seed}/{chain.pattern}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < cfg.novel_pattern_share


def demonstrate(chain: Chain, rng: random.Random, misconception_rate: float) -> str:
    """The demonstrator's trace: every step on its own line, the sign dropped at each trap with
    probability ``misconception_rate`` (independently), the chain continued from what it wrote."""
    lines, value = [], chain.start
    for op, term in chain.ops:
        out = value + term if op == "+" else value - term
        if op == "-" and 0 <= value < term and rng.random() < misconception_rate:
            out = term - value  # the misconception: the sign goes missing
        lines.append(f"{value} {op} {term} = {out}")
        value = out
    return (
        "[ADVANCE]\n\n" + "\n".join(lines) + "\n\nNext action: [OUTPUT]\n\n"
        f"[OUTPUT]\n\nThe answer is \\boxed{{{value}}}"
    )


def _chain_sum(cfg: ChainWorldConfig):
    try:
        import reasoning_gym  # noqa: PLC0415
    except ImportError as err:
        raise ImportError(
            "the chains world draws its tasks from reasoning-gym, which is not installed: "
            'pip install -e ".[chains]" (or pip install reasoning-gym)'
        ) from err
    size = (cfg.n_sft + cfg.n_train + cfg.n_val + cfg.n_test + 1) * cfg.max_draws_factor
    return reasoning_gym.create_dataset(GENERATOR, size=size, **cfg.generator_config())


def generate_chain_world(cfg: ChainWorldConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Draw the world from reasoning-gym's ``chain_sum`` stream (indices 0, 1, 2, ...), keeping
    tasks with ``min_traps``..``max_traps`` traps, none before ``first_trap_step``.

    Returns ``prompts`` (splits train/val/test, Eurus-2-RL-Data schema; ``extra_info`` also holds
    ``generator``, ``generator_config`` (JSON), ``source_index``, ``traps`` and ``novel``) and
    ``demonstrations`` (split sft, plus ``response`` and ``first_wrong_step``, the demonstrator's
    ground-truth process label).
    """
    dataset = _chain_sum(cfg)
    gen_config = json.dumps(cfg.generator_config(), sort_keys=True)
    system = system_prompt(cfg.system_prompt)
    n_novel = round(cfg.n_test * cfg.novel_share)
    sizes = {
        ("test", True): n_novel,
        ("test", False): cfg.n_test - n_novel,
        ("val", False): cfg.n_val,
        ("train", False): cfg.n_train,
        ("sft", False): cfg.n_sft,
    }
    # Equal quotas per trap count: the stream itself is dominated by one-trap tasks, where an
    # outcome reward already points at the only trap.
    counts = range(cfg.min_traps, cfg.max_traps + 1)
    want = {
        (*key, k): size // len(counts) + (i < size % len(counts))
        for key, size in sizes.items()
        for i, k in enumerate(counts)
    }
    got: dict[tuple[str, bool, int], list[tuple[int, dict, Chain]]] = {k: [] for k in want}
    held: set[str] = set()  # expressions in train/val/test: never repeated in another split
    order = [("test", True), ("test", False), ("val", False), ("train", False), ("sft", False)]
    for idx in range(len(dataset)):
        open_keys = [(*k, t) for k in order for t in counts if len(got[(*k, t)]) < want[(*k, t)]]
        if not open_keys:
            break
        item = dataset[idx]
        chain = parse_expression(item["question"])
        if str(chain.answer) != item["answer"]:
            raise ValueError(
                f"reasoning-gym chain_sum item {idx}: our parse of {item['question']!r} gives "
                f"{chain.answer}, the generator says {item['answer']}"
            )
        t = traps(chain)
        if t and t[0] < cfg.first_trap_step:
            continue
        novel = is_novel(chain, cfg)
        key = next((k for k in open_keys if k[1] == novel and k[2] == len(t)), None)
        expr = item["metadata"]["expression"]
        if key is None or expr in held:  # sft fills last, so ``held`` then has every other split
            continue
        if key[0] != "sft":
            held.add(expr)
        got[key].append((idx, item, chain))
    short = {
        f"{s}{'/novel' if n else ''}/traps={k}": want[(s, n, k)] - len(v)
        for (s, n, k), v in got.items()
        if len(v) < want[(s, n, k)]
    }
    if short:
        raise ValueError(
            f"chainworld: the generator stream ran out with rows missing {short}; raise "
            f"chainworld.max_draws_factor or widen the world (terms, traps)"
        )
    rows_of = {key: [r for (s, n, _), v in got.items() if (s, n) == key for r in v] for key in sizes}
    demo_rng = random.Random(cfg.seed + 1)
    prompts, demos = [], []
    index = 0
    shuffle = random.Random(cfg.seed + 2)
    for split, novel_too in (("train", False), ("val", False), ("test", True), ("sft", False)):
        # Shuffled, so that any head of a split (evaluation takes the first N) mixes trap counts,
        # and in the test split in-distribution and novel rows.
        rows = rows_of[(split, False)] + (rows_of[(split, True)] if novel_too else [])
        shuffle.shuffle(rows)
        for idx, item, chain in rows:
            novel = is_novel(chain, cfg)
            row = {
                "data_source": f"chains_{'novel' if novel else 'id'}_t{len(chain.ops) + 1}",
                "prompt": build_messages(item["question"], "math", system),
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": item["answer"]},
                "extra_info": {
                    "split": split,
                    "index": index,
                    "generator": GENERATOR,
                    "generator_config": gen_config,
                    "source_index": idx,
                    "traps": len(traps(chain)),
                    "novel": novel,
                },
            }
            index += 1
            if split == "sft":
                response = demonstrate(chain, demo_rng, cfg.misconception_rate)
                demos.append(
                    {**row, "response": response, "first_wrong_step": label_steps(chain, response).first_wrong_step}
                )
            else:
                prompts.append(row)
    log.info("chainworld: %s", {f"{s}{'/novel' if n else ''}": len(v) for (s, n), v in rows_of.items()})
    return pd.DataFrame(prompts), pd.DataFrame(demos)
