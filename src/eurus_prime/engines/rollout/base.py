"""The rollout-engine interface: what an engine returns (:class:`Sample`), what it must do
(:class:`RolloutEngine`) and where the engines are registered (:data:`ENGINES`).

Adding an engine is one file and one line: a module with a class that has ``unsupported_reason``
and ``sample`` as below, and its ``"module:Class"`` in :data:`ENGINES`. ``generate`` (this
package's ``__init__``) encodes the prompts, picks the engine, falls back to ``hf`` where an engine
cannot run a model, and decodes the samples.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

#: ``on_progress(done, total, unit)``: how library code reports progress (the run control passes
#: ``runs.guard.monitor.step``; None reports nothing).
ProgressFn = Callable[[int, "int | None", str], None]

#: Registered rollout engines: name -> ``"module:Class"``, imported when first used (``vllm``
#: needs the ``gpu`` extra).
ENGINES: dict[str, str] = {
    "fast": "eurus_prime.engines.rollout.fast:FastEngine",
    "hf": "eurus_prime.engines.rollout.hf:HfEngine",
    "vllm": "eurus_prime.engines.rollout.vllm:VllmEngine",
}


@dataclass(frozen=True)
class Sample:
    """One sampled continuation: its token ids (through the first end-of-turn token, if any), the
    sampling log-prob of each where the engine returns them, and whether it ``stop``ped at the
    end-of-turn token or hit the ``length`` budget."""

    token_ids: list[int]
    logprobs: np.ndarray | None
    finish_reason: str


@dataclass(frozen=True)
class Generation:
    """One completion: its text, its token ids, and why it stopped (``stop`` or ``length``).
    ``logprobs``: each token's log-prob under the sampling distribution (logits / temperature,
    before top-p; the plain softmax when greedy), from engines that return them (``fast``, ``vllm``)."""

    text: str
    token_ids: list[int]
    finish_reason: str
    logprobs: np.ndarray | None = None


class RolloutEngine(Protocol):
    """A sampler of token continuations. ``sample`` returns one :class:`Sample` per prompt, in
    input order; the samples are reproducible for fixed prompts, batch size and seed; temperature
    0 is greedy decoding."""

    def unsupported_reason(self, model: Any) -> str | None:
        """None when the engine can run ``model``, else why not (one line for a log message)."""
        ...

    def sample(
        self,
        model: Any,
        prompt_ids: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        eos_token_id: int | None,
        pad_token_id: int,
        temperature: float,
        top_p: float,
        batch_size: int,
        seed: int,
        options: Any = None,
        on_progress: ProgressFn | None = None,
        show_bar: bool = False,
    ) -> list[Sample]: ...


def engine(name: str) -> RolloutEngine:
    """The registered engine ``name``; an unknown name lists the valid ones."""
    if name not in ENGINES:
        raise ValueError(f"rollout engine {name!r} is not one of {list(ENGINES)}")
    module, _, cls = ENGINES[name].partition(":")
    engine_cls: type[RolloutEngine] = getattr(importlib.import_module(module), cls)
    return engine_cls()
