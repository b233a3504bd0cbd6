"""Batched generation with a causal LM: the rollout, evaluation and inference engines.

Two engines behind one function, :func:`generate`:

- ``fast`` (the default): :mod:`eurus_prime.engines.fast`, a sampler with a preallocated KV cache
  for Llama/Qwen2-family models that also returns each sampled token's log-prob;
- ``hf``: Hugging Face ``model.generate``, for every other architecture (``fast`` falls back to
  it, with a warning naming why);
- ``vllm``: :mod:`eurus_prime.engines.vllm_engine`, a long-lived vLLM engine per model folder that
  receives each new policy's weights in place (GPU machines, the ``gpu`` extra).

Prompts are sorted by length and batched with left padding, so each batch wastes little compute on
padding; results come back in input order. Greedy decoding when ``temperature == 0``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from eurus_prime import monitor
from eurus_prime.engines import fast

ENGINES = ("fast", "hf", "vllm")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generation:
    """One completion: its text, its token ids, and why it stopped (``stop`` or ``length``).
    ``logprobs``: each token's log-prob under the sampling distribution (logits / temperature,
    before top-p; the plain softmax when greedy), from engines that return them (``fast``)."""

    text: str
    token_ids: list[int]
    finish_reason: str
    logprobs: np.ndarray | None = None


def sampling_kwargs(temperature: float, top_p: float = 1.0) -> dict:
    """``model.generate`` arguments: greedy at temperature 0, else plain sampling (no top-k)."""
    if temperature == 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}


def finish(tokenizer, new_ids: list[int]) -> Generation:
    """A completion from the ids ``generate`` added after the prompt: cut after the end-of-turn
    token (``stop``; the token is kept), else the whole budget (``length``). ``model.generate``
    pads only rows that have stopped, so a row without the end-of-turn token has no padding: a
    pad id in it was sampled and stays (the trainer must see the sequence that was sampled)."""
    eos = tokenizer.eos_token_id
    if eos in new_ids:
        new_ids, reason = new_ids[: new_ids.index(eos) + 1], "stop"
    else:
        reason = "length"
    return Generation(text=tokenizer.decode(new_ids, skip_special_tokens=True), token_ids=new_ids, finish_reason=reason)


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    engine: str = "fast",
    hf_kwargs: dict | None = None,
    engine_options: dict | None = None,
) -> list[Generation]:
    """Complete every prompt (already rendered with the chat template).

    Args:
        prompts: N prompt strings.
        max_new_tokens: response budget per prompt.
        temperature: 0 for greedy decoding, else the sampling temperature.
        seed: the samples are reproducible for a fixed seed, engine and batch size (``hf`` seeds
            torch's global RNG, ``fast`` a private generator).
        engine: ``fast``, ``hf`` or ``vllm`` (module docstring).
        hf_kwargs: extra ``model.generate`` arguments for ``hf`` (e.g. ``cache_implementation``).
        engine_options: ``vllm_engine.VllmOptions`` for ``vllm``.
    Returns:
        N ``Generation`` in the order of ``prompts``.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r} is not one of {ENGINES}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if engine == "vllm":
        from eurus_prime.engines import vllm_engine  # noqa: PLC0415

        samples = vllm_engine.sample(
            model,
            encoded,
            max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            options=engine_options,
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
    if engine == "fast":
        reason = fast.unsupported_reason(model)
        if reason is None:
            return _generate_fast(
                model,
                tokenizer,
                encoded,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                batch_size=batch_size,
                seed=seed,
            )
        log.warning("generation engine 'fast' cannot run %s (%s): using engine 'hf'", type(model).__name__, reason)
    was_training = model.training
    model.eval()
    tokenizer.padding_side = "left"
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    results: list[Generation | None] = [None] * len(prompts)
    torch.manual_seed(seed)
    sampling = sampling_kwargs(temperature, top_p)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    quiet = not progress or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    for done, batch in enumerate(tqdm(batches, desc="generate", disable=quiet, leave=False)):
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            mask[row, width - len(encoded[i]) :] = 1
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos,
            pad_token_id=pad,
            **sampling,
            **(hf_kwargs or {}),
        )
        for row, i in enumerate(batch):
            results[i] = finish(tokenizer, out[row, width:].tolist())
        monitor.step(done + 1, len(batches), "generation batches")
    model.train(was_training)
    return results  # type: ignore[return-value]


def _generate_fast(
    model,
    tokenizer,
    encoded: list[list[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    batch_size: int,
    seed: int,
) -> list[Generation]:
    samples = fast.sample(
        model,
        encoded,
        max_new_tokens=max_new_tokens,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        temperature=temperature,
        top_p=top_p,
        batch_size=batch_size,
        seed=seed,
        on_batch=lambda done, total: monitor.step(done, total, "generation batches"),
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
