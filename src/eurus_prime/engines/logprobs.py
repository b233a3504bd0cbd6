"""Log-probabilities of given tokens under a causal LM, without a full-vocabulary tensor.

PRIME needs three of these passes per step (old policy, PRM, reference). ``log_softmax`` over the
whole batch would materialise a (batch, length, vocab) float tensor; at 7B scale that is the
memory peak. Here the gather runs over chunks of rows: only (chunk, length, vocab) logits exist
at once, and the result is (batch, response_len).
"""

from __future__ import annotations

import torch


def sequence_logprobs(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_len: int,
    chunk_rows: int = 16,
    grad: bool = False,
    return_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each of the last ``response_len`` tokens given everything before it.

    Args:
        input_ids: (batch, prompt_len + response_len), prompts left-padded, responses
            right-padded, so every row's response starts at column ``prompt_len``.
        attention_mask: (batch, prompt_len + response_len).
        response_len: number of response columns.
        chunk_rows: rows per forward pass.
        grad: keep the graph (for a loss), else run under ``torch.no_grad``.
        return_entropy: also return the entropy of each predicted distribution.
    Returns:
        (batch, response_len) log-probs (and entropies with ``return_entropy``); values on
        padding are meaningless, mask them.
    """
    outs, entropies = [], []
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.set_grad_enabled(grad):
        for start in range(0, input_ids.size(0), chunk_rows):
            rows = slice(start, start + chunk_rows)
            logits = model(
                input_ids=input_ids[rows],
                attention_mask=attention_mask[rows],
                position_ids=position_ids[rows],
            ).logits[:, -response_len - 1 : -1]
            targets = input_ids[rows, -response_len:]
            logp = torch.log_softmax(logits.float(), dim=-1)
            outs.append(logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1))
            if return_entropy:
                entropies.append(-(logp.exp() * logp).sum(-1))
    if return_entropy:
        return torch.cat(outs), torch.cat(entropies)
    return torch.cat(outs)
