"""Log-probabilities of given tokens under a causal LM, without a full-vocabulary tensor.

PRIME needs three of these passes per step (old policy, PRM, reference), and the policy update a
fourth with gradients. ``model(...).logits`` followed by ``log_softmax`` would materialise two
(rows, length, vocab) float tensors; at 7B scale (vocabulary 152k, 3k response tokens) that is
7 GB per row pair and the memory peak of the step. Here:

- rows go through the model in chunks of ``chunk_rows`` (the caller's micro-batch);
- for Llama/Qwen2-family models the transformer body runs without its output head, and the head
  is applied to a few response positions at a time (``chunk_logits`` logits per chunk: 341
  positions at a 49k vocabulary, the whole micro-batch at the tiny world's 512): each chunk's logits become a gather
  minus a log-sum-exp (and the entropy, when asked) and are freed before the next chunk. With
  gradients, each chunk is recomputed in the backward pass (activation checkpointing), so the
  backward pass holds one chunk's logits at a time as well;
- any other model falls back to ``model(...).logits``, one row chunk at a time.

The result is (rows, response_len): the only full-size output.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

#: Architectures whose logits are exactly ``lm_head(model.model(...).last_hidden_state)`` (no
#: soft-capping or logit scale), so the head can be applied by chunks.
HEAD_SPLIT_MODEL_TYPES = ("qwen2", "llama", "mistral", "qwen3")


def _body_and_head(model):
    """``(body, head)`` when the head can be applied separately, else None."""
    if getattr(getattr(model, "config", None), "model_type", None) not in HEAD_SPLIT_MODEL_TYPES:
        return None
    body, head = getattr(model, "model", None), getattr(model, "lm_head", None)
    if body is None or head is None:
        return None
    return body, head


def _chunk_stats(hidden: torch.Tensor, targets: torch.Tensor, head, want_entropy: bool):
    # ``head(...)``, not its weight: under ZeRO-3 the weight is gathered only inside a module call.
    logits = head(hidden).float()
    lse = logits.logsumexp(-1)
    logp = logits.gather(-1, targets[:, None]).squeeze(-1) - lse
    if not want_entropy:
        return logp, None
    entropy = lse - (logits.softmax(-1) * logits).sum(-1)
    return logp, entropy


def _head_logprobs(
    hidden: torch.Tensor, targets: torch.Tensor, head, chunk_tokens: int, grad: bool, want_entropy: bool
):
    """Token log-probs (and entropies) of ``targets`` (rows, T) from ``hidden`` (rows, T, H)."""
    rows, width = targets.shape
    flat_h, flat_t = hidden.reshape(rows * width, -1), targets.reshape(-1)
    logps, ents = [], []
    # One chunk: its saved tensors are freed by the backward that follows, as recomputing would.
    recompute = grad and flat_t.numel() > chunk_tokens
    for start in range(0, flat_t.numel(), chunk_tokens):
        h, t = flat_h[start : start + chunk_tokens], flat_t[start : start + chunk_tokens]
        if recompute:
            lp, ent = checkpoint(_chunk_stats, h, t, head, want_entropy, use_reentrant=False)
        else:
            lp, ent = _chunk_stats(h, t, head, want_entropy)
        logps.append(lp)
        ents.append(ent)
    logp = torch.cat(logps).view(rows, width)
    return logp, (torch.cat(ents).view(rows, width) if want_entropy else None)


def sequence_logprobs(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_len: int,
    chunk_rows: int = 16,
    grad: bool = False,
    return_entropy: bool = False,
    chunk_logits: int = 2**24,
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
        chunk_logits: logits per output-head chunk (positions x vocabulary; 2**24 floats is
            64 MB), so the positions per chunk shrink as the vocabulary grows (module docstring).
    Returns:
        (batch, response_len) log-probs (and entropies with ``return_entropy``); values on
        padding are meaningless, mask them.
    """
    outs, entropies = [], []
    # The model may sit on a GPU while the tables' tensors are on CPU: compute where the model
    # is, return where the inputs were (the losses are small tensors; ``.to`` keeps the graph).
    home = input_ids.device
    device = next(model.parameters()).device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    split = _body_and_head(model)
    with torch.set_grad_enabled(grad):
        for start in range(0, input_ids.size(0), chunk_rows):
            rows = slice(start, start + chunk_rows)
            targets = input_ids[rows, -response_len:]
            inputs = dict(
                input_ids=input_ids[rows], attention_mask=attention_mask[rows], position_ids=position_ids[rows]
            )
            if split is not None:
                body, head = split
                hidden = body(**inputs).last_hidden_state[:, -response_len - 1 : -1]
                chunk_tokens = max(1, chunk_logits // head.out_features)
                logp, ent = _head_logprobs(hidden, targets, head, chunk_tokens, grad, return_entropy)
            else:
                logits = model(**inputs).logits[:, -response_len - 1 : -1].float()
                logp = torch.log_softmax(logits, dim=-1)
                ent = -(logp.exp() * logp).sum(-1) if return_entropy else None
                logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            outs.append(logp)
            if return_entropy:
                entropies.append(ent)
    if return_entropy:
        return torch.cat(outs).to(home), torch.cat(entropies).to(home)
    return torch.cat(outs).to(home)
