"""The ``hf`` rollout engine: Hugging Face ``model.generate``, for any causal LM.

Prompts are sorted by length and batched with left padding, so each batch wastes little compute on
padding; results come back in input order. ``options``: extra ``model.generate`` arguments (e.g.
``{"cache_implementation": "static"}``). The samples carry no log-probs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from eurus_prime.engines.rollout.base import Generation, ProgressFn, Sample


def sampling_kwargs(temperature: float, top_p: float = 1.0) -> dict:
    """``model.generate`` arguments: greedy at temperature 0, else plain sampling (no top-k)."""
    if temperature == 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}


def cut(new_ids: list[int], eos_token_id: int | None) -> Sample:
    """A sample from the ids ``generate`` added after the prompt: cut after the end-of-turn token
    (``stop``; the token is kept), else the whole budget (``length``). ``model.generate`` pads only
    rows that have stopped, so a row without the end-of-turn token has no padding: a pad id in it
    was sampled and stays (the trainer must see the sequence that was sampled)."""
    if eos_token_id in new_ids:
        return Sample(token_ids=new_ids[: new_ids.index(eos_token_id) + 1], logprobs=None, finish_reason="stop")
    return Sample(token_ids=new_ids, logprobs=None, finish_reason="length")


def finish(tokenizer: Any, new_ids: list[int]) -> Generation:
    """:func:`cut`, decoded with ``tokenizer``: the ``Generation`` of one streamed completion."""
    s = cut(new_ids, tokenizer.eos_token_id)
    return Generation(
        text=tokenizer.decode(s.token_ids, skip_special_tokens=True),
        token_ids=s.token_ids,
        finish_reason=s.finish_reason,
    )


class HfEngine:
    """``model.generate`` in length-sorted, left-padded batches (``base.RolloutEngine``)."""

    def unsupported_reason(self, model: Any) -> str | None:
        return None if hasattr(model, "generate") else f"{type(model).__name__} has no .generate"

    @torch.no_grad()
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
    ) -> list[Sample]:
        was_training = model.training
        model.eval()
        order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
        results: list[Sample | None] = [None] * len(prompt_ids)
        torch.manual_seed(seed)
        sampling = sampling_kwargs(temperature, top_p)
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        quiet = not show_bar or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
        for done, batch in enumerate(tqdm(batches, desc="generate", disable=quiet, leave=False)):
            width = max(len(prompt_ids[i]) for i in batch)
            ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                ids[row, width - len(prompt_ids[i]) :] = torch.tensor(prompt_ids[i])
                mask[row, width - len(prompt_ids[i]) :] = 1
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                eos_token_id=eos_token_id,
                pad_token_id=pad_token_id,
                **sampling,
                **(options or {}),
            )
            for row, i in enumerate(batch):
                results[i] = cut(out[row, width:].tolist(), eos_token_id)
            if on_progress is not None:
                on_progress(done + 1, len(batches), "generation batches")
        model.train(was_training)
        return results  # type: ignore[return-value]
