"""Batched generation with a causal LM: the rollout, evaluation and inference engines.

:func:`generate` completes rendered prompts with one of the registered engines (``base.ENGINES``):

- ``fast`` (the default): :mod:`.fast`, a sampler with a preallocated KV cache for Llama/Qwen2-family
  models that also returns each sampled token's log-prob;
- ``hf``: :mod:`.hf`, Hugging Face ``model.generate``, for every other architecture (an engine that
  cannot run a model falls back to it, with a warning naming why);
- ``vllm``: :mod:`.vllm`, a long-lived vLLM engine per model folder that receives each new policy's
  weights in place (GPU machines, the ``gpu`` extra).

Results come back in input order. Greedy decoding when ``temperature == 0``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from eurus_prime.engines.rollout.base import ENGINES, Generation, ProgressFn, Sample, engine

__all__ = ["ENGINES", "Generation", "ProgressFn", "Sample", "engine", "generate"]

log = logging.getLogger(__name__)


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    engine: str = "fast",
    engine_options: Any = None,
    on_progress: ProgressFn | None = None,
) -> list[Generation]:
    """Complete every prompt (already rendered with the chat template).

    Args:
        prompts: N prompt strings.
        max_new_tokens: response budget per prompt.
        temperature: 0 for greedy decoding, else the sampling temperature.
        seed: the samples are reproducible for a fixed seed, engine and batch size.
        progress: a progress bar where the engine draws one (``hf``).
        engine: a name in ``ENGINES`` (module docstring).
        engine_options: the engine's own options: ``vllm.VllmOptions`` for ``vllm``, extra
            ``model.generate`` arguments for ``hf`` (e.g. ``cache_implementation``).
        on_progress: called as ``on_progress(done, total, "generation batches")``.
    Returns:
        N ``Generation`` in the order of ``prompts``.
    """
    chosen = _engine(engine)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    reason = chosen.unsupported_reason(model)
    if reason is not None:
        log.warning("generation engine %r cannot run %s (%s): using engine 'hf'", engine, type(model).__name__, reason)
        chosen, engine_options = _engine("hf"), None
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    samples = chosen.sample(
        model,
        encoded,
        max_new_tokens=max_new_tokens,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        temperature=temperature,
        top_p=top_p,
        batch_size=batch_size,
        seed=seed,
        options=engine_options,
        on_progress=on_progress,
        show_bar=progress,
    )
    return [
        Generation(
            text=tokenizer.decode(s.token_ids, skip_special_tokens=True),
            token_ids=s.token_ids,
            finish_reason=s.finish_reason,
            logprobs=s.logprobs,
        )
        for s in samples
    ]


_engine = engine  # ``generate``'s ``engine`` argument shadows the function inside it
