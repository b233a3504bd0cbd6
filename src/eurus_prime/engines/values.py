"""A value model's estimates for given responses: the critic of PPO with GAE.

A critic is a ``*ForTokenClassification`` model with one label (verl's critic: the policy's body
with a scalar head); its output at a position is the value of the state that position closes.
"""

from __future__ import annotations

import torch


def sequence_values(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_len: int, grad: bool = False
) -> torch.Tensor:
    """``V`` of the state before each of the last ``response_len`` tokens (the prompt and the
    response so far), as verl reads a critic: the output at the position before the token.

    Args:
        input_ids: (batch, prompt_len + response_len), prompts left-padded, responses
            right-padded, so every row's response starts at column ``prompt_len``.
        attention_mask: (batch, prompt_len + response_len).
        response_len: number of response columns.
        grad: keep the graph (for the value loss), else run under ``torch.no_grad``.
    Returns:
        (batch, response_len) float32 values; values on padding are meaningless, mask them.
    """
    home = input_ids.device
    device = next(model.parameters()).device
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.set_grad_enabled(grad):
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
        if out.shape[-1] != 1:
            raise ValueError(f"a critic has one output per position; this model has {out.shape[-1]}")
        return out[:, -response_len - 1 : -1, 0].float().to(home)


def value_model_from(causal_lm_folder: str, **load_args):
    """A critic initialised from a causal LM checkpoint: its body, and a new one-output head set to
    0 (every value starts at 0, so the first GAE advantages are the returns themselves, and the
    start is deterministic)."""
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(causal_lm_folder, num_labels=1, **load_args)
    head = getattr(model, "score", None) or getattr(model, "classifier", None)
    if head is None:
        raise ValueError(f"{type(model).__name__} has no score/classifier head to reset")
    with torch.no_grad():
        head.weight.zero_()
        if head.bias is not None:
            head.bias.zero_()
    return model
