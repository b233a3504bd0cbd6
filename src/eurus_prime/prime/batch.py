"""Between tables and tensors: token-id lists in, padded (rows, width) tensors out, and back.

Rollout tables store token ids and per-token values as list columns (ragged). A forward pass
needs them packed: prompts left-padded and responses right-padded, so that every row's response
starts at the same column. Packing happens per micro-batch, so padding follows the longest row of
the micro-batch, not of the whole step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from eurus_prime.engines.logprobs import sequence_logprobs
from eurus_prime.engines.rollout.base import ProgressFn

#: One response's per-token values: a list of floats or a 1-D array.
Values = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class Packed:
    """A packed micro-batch.

    ``input_ids``/``attention_mask``: (rows, prompt_width + response_width);
    ``response_mask``: (rows, response_width), 1 on response tokens.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor

    @property
    def response_width(self) -> int:
        return self.response_mask.shape[1]


def pack(prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], pad_id: int) -> Packed:
    """Left-pad prompts, right-pad responses, concatenate."""
    if len(prompt_ids) != len(response_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(response_ids)} responses")
    rows = len(prompt_ids)
    pw = max((len(p) for p in prompt_ids), default=0)
    rw = max(1, max((len(r) for r in response_ids), default=1))
    ids = torch.full((rows, pw + rw), pad_id, dtype=torch.long)
    mask = torch.zeros((rows, pw + rw), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        p, r = list(p), list(r)
        ids[i, pw - len(p) : pw] = torch.tensor(p, dtype=torch.long)
        ids[i, pw : pw + len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, pw - len(p) : pw + len(r)] = 1
    return Packed(ids, mask, mask[:, pw:].clone())


def pad_values(values: Sequence[Values], width: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Ragged per-token values -> (rows, width), 0 beyond each row's length."""
    out = torch.zeros((len(values), width), dtype=dtype)
    for i, row in enumerate(values):
        v = np.asarray(row, dtype=np.float64)
        out[i, : len(v)] = torch.as_tensor(v[:width], dtype=dtype)
    return out


def pad_ragged(
    values: Sequence[Values], dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Ragged per-token values -> ``(padded, mask, lengths)``, both (rows, longest); empty rows
    (zero-length responses) are all padding, and with no tokens at all the width is 0."""
    lengths = [len(v) for v in values]
    width = max(lengths, default=0)
    return pad_values(values, width, dtype), pad_values([np.ones(n) for n in lengths], width, dtype), lengths


def unpad(x: torch.Tensor, lengths: Sequence[int]) -> list[np.ndarray]:
    """(rows, width) -> one float32 array of ``lengths[i]`` values per row."""
    a = x.detach().to(torch.float32).numpy()
    return [a[i, : int(n)].copy() for i, n in enumerate(lengths)]


def micro_batches(indices: Sequence[int], size: int) -> list[list[int]]:
    indices = list(indices)
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def packed_tokens(
    prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], rows: Sequence[int]
) -> int:
    """Tokens ``pack`` makes of ``rows``: rows x (longest prompt + longest response), padding included."""
    if not rows:
        return 0
    return len(rows) * (max(len(prompt_ids[i]) for i in rows) + max(1, max(len(response_ids[i]) for i in rows)))


def budget_micro_batches(
    order: Sequence[int],
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    max_rows: int,
    max_tokens: int | None = None,
) -> list[list[int]]:
    """Cut ``order`` into consecutive micro-batches of at most ``max_rows`` rows and, with
    ``max_tokens``, at most that many packed tokens (``packed_tokens``: padding counts, since the
    forward pass computes it). Memory per pass follows tokens, not rows: at a fixed row count a
    micro-batch of 3k-token responses needs 30x what one of 100-token responses does, so a token
    budget lets short rows go through many at a time and long rows few at a time. Give ``order``
    sorted by length, or the padding of one long row spreads over its neighbours.

    A row longer than the budget on its own still gets its micro-batch (one row is the least a
    forward pass takes); ``max_tokens=None`` is plain ``micro_batches(order, max_rows)``.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows = {max_rows}: must be >= 1")
    if max_tokens is None:
        return micro_batches(order, max_rows)
    if max_tokens < 1:
        raise ValueError(f"max_tokens = {max_tokens}: must be >= 1 (or None for no budget)")
    out: list[list[int]] = []
    current: list[int] = []
    p_width = r_width = 0
    for i in order:
        p, r = max(p_width, len(prompt_ids[i])), max(r_width, len(response_ids[i]), 1)
        if current and (len(current) == max_rows or (len(current) + 1) * (p + r) > max_tokens):
            out.append(current)
            current, p, r = [], len(prompt_ids[i]), max(1, len(response_ids[i]))
        current.append(i)
        p_width, r_width = p, r
    if current:
        out.append(current)
    return out


def forward_rows(
    model: Any,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    rows: Sequence[int],
    pad_id: int,
    grad: bool = False,
    return_entropy: bool = False,
) -> tuple[Any, ...]:
    """Pack ``rows`` into one micro-batch and return ``(packed, logprobs)`` (and the entropies
    with ``return_entropy``); logprobs are (len(rows), packed.response_width)."""
    packed = pack([prompt_ids[i] for i in rows], [response_ids[i] for i in rows], pad_id)
    out = sequence_logprobs(
        model,
        packed.input_ids,
        packed.attention_mask,
        packed.response_width,
        chunk_rows=len(rows),
        grad=grad,
        return_entropy=return_entropy,
    )
    return (packed, *out) if return_entropy else (packed, out)


def scoring_micro_batches(
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    micro_batch: int,
    max_tokens: int | None = None,
) -> list[list[int]]:
    """The micro-batches ``score_responses`` makes: rows sorted by length, then cut by
    ``budget_micro_batches``. One micro-batch given alone comes back as itself."""
    order = sorted(range(len(response_ids)), key=lambda i: len(prompt_ids[i]) + len(response_ids[i]))
    return budget_micro_batches(order, prompt_ids, response_ids, micro_batch, max_tokens)


@torch.no_grad()
def score_responses(
    model: Any,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    pad_id: int,
    micro_batch: int,
    max_tokens: int | None = None,
    on_progress: ProgressFn | None = None,
) -> list[np.ndarray]:
    """Log-prob of every response token under ``model`` (teacher forcing), one array per row.

    Rows are processed in micro-batches of similar length (sorted), so padding stays small: at
    most ``micro_batch`` rows and, with ``max_tokens``, at most that many packed tokens each
    (``budget_micro_batches``).
    """
    was_training = model.training
    model.eval()
    out: list[np.ndarray | None] = [None] * len(response_ids)
    micros = scoring_micro_batches(prompt_ids, response_ids, micro_batch, max_tokens)
    for done, rows in enumerate(micros, 1):
        _, logp = forward_rows(model, prompt_ids, response_ids, rows, pad_id)
        for row, values in zip(rows, unpad(logp, [len(response_ids[i]) for i in rows])):
            out[row] = values
        if on_progress is not None:
            on_progress(done, len(micros), "scoring micro-batches")
    model.train(was_training)
    return out  # type: ignore[return-value]
