"""Between tables and tensors: token-id lists in, padded (rows, width) tensors out, and back.

Rollout tables store token ids and per-token values as list columns (ragged). A forward pass
needs them packed: prompts left-padded and responses right-padded, so that every row's response
starts at the same column. Packing happens per micro-batch, so padding follows the longest row of
the micro-batch, not of the whole step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from eurus_prime import monitor
from eurus_prime.engines.logprobs import sequence_logprobs


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


def pad_values(values: Sequence[Sequence[float]], width: int, dtype=torch.float32) -> torch.Tensor:
    """Ragged per-token values -> (rows, width), 0 beyond each row's length."""
    out = torch.zeros((len(values), width), dtype=dtype)
    for i, v in enumerate(values):
        v = np.asarray(v, dtype=np.float64)
        out[i, : len(v)] = torch.as_tensor(v[:width], dtype=dtype)
    return out


def pad_ragged(values: Sequence[Sequence[float]], dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Ragged per-token values -> ``(padded, mask, lengths)``, both (rows, longest); empty rows
    (zero-length responses) are all padding, and with no tokens at all the width is 0."""
    lengths = [len(v) for v in values]
    width = max(lengths, default=0)
    return pad_values(values, width, dtype), pad_values([np.ones(n) for n in lengths], width, dtype), lengths


def unpad(x: torch.Tensor, lengths: Sequence[int]) -> list[np.ndarray]:
    """(rows, width) -> one float32 array of ``lengths[i]`` values per row."""
    x = x.detach().to(torch.float32).numpy()
    return [x[i, : int(n)].copy() for i, n in enumerate(lengths)]


def micro_batches(indices: Sequence[int], size: int) -> list[list[int]]:
    indices = list(indices)
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def forward_rows(model, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]],
                 rows: Sequence[int], pad_id: int, grad: bool = False, return_entropy: bool = False):
    """Pack ``rows`` into one micro-batch and return ``(packed, logprobs)`` (and the entropies
    with ``return_entropy``); logprobs are (len(rows), packed.response_width)."""
    packed = pack([prompt_ids[i] for i in rows], [response_ids[i] for i in rows], pad_id)
    out = sequence_logprobs(model, packed.input_ids, packed.attention_mask, packed.response_width,
                            chunk_rows=len(rows), grad=grad, return_entropy=return_entropy)
    return (packed, *out) if return_entropy else (packed, out)


@torch.no_grad()
def score_responses(
    model,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    pad_id: int,
    micro_batch: int,
) -> list[np.ndarray]:
    """Log-prob of every response token under ``model`` (teacher forcing), one array per row.

    Rows are processed in micro-batches of similar length (sorted), so padding stays small.
    """
    was_training = model.training
    model.eval()
    order = sorted(range(len(response_ids)), key=lambda i: (len(prompt_ids[i]) + len(response_ids[i])))
    out: list[np.ndarray | None] = [None] * len(response_ids)
    for done, rows in enumerate(micro_batches(order, micro_batch), 1):
        _, logp = forward_rows(model, prompt_ids, response_ids, rows, pad_id)
        for row, values in zip(rows, unpad(logp, [len(response_ids[i]) for i in rows])):
            out[row] = values
        monitor.step(done, -(-len(order) // micro_batch), "scoring micro-batches")
    model.train(was_training)
    return out  # type: ignore[return-value]
