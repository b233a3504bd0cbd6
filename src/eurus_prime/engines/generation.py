"""Batched generation with a Hugging Face causal LM (the CPU rollout/eval engine).

Prompts are sorted by length and batched with left padding, so each batch wastes little compute on
padding; results come back in input order. Greedy decoding when ``temperature == 0``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from eurus_prime import monitor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generation:
    """One completion: its text, its token ids, and why it stopped (``stop`` or ``length``)."""

    text: str
    token_ids: list[int]
    finish_reason: str


def sampling_kwargs(temperature: float, top_p: float = 1.0) -> dict:
    """``model.generate`` arguments: greedy at temperature 0, else plain sampling (no top-k)."""
    if temperature == 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}


def finish(tokenizer, new_ids: list[int]) -> Generation:
    """A completion from the ids ``generate`` added after the prompt: cut after the end-of-turn
    token (``stop``; the token is kept), else padding removed (``length``)."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if eos in new_ids:
        new_ids, reason = new_ids[: new_ids.index(eos) + 1], "stop"
    else:
        new_ids, reason = [t for t in new_ids if t != pad], "length"
    return Generation(text=tokenizer.decode(new_ids, skip_special_tokens=True), token_ids=new_ids,
                      finish_reason=reason)


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
) -> list[Generation]:
    """Complete every prompt (already rendered with the chat template).

    Args:
        prompts: N prompt strings.
        max_new_tokens: response budget per prompt.
        temperature: 0 for greedy decoding, else the sampling temperature.
        seed: seeds torch's RNG once, so a run's samples are reproducible for a fixed batching.
    Returns:
        N ``Generation`` in the order of ``prompts``.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    was_training = model.training
    model.eval()
    tokenizer.padding_side = "left"
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
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
        )
        for row, i in enumerate(batch):
            results[i] = finish(tokenizer, out[row, width:].tolist())
        monitor.step(done + 1, len(batches), "generation batches")
    model.train(was_training)
    return results  # type: ignore[return-value]
