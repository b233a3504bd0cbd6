"""A small Qwen2 causal LM for the tiny world, built from a config (no weights downloaded)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the tiny policy (the same Qwen2 architecture as Eurus-2-7B)."""

    hidden_size: int = 96
    """Width of the residual stream."""
    num_hidden_layers: int = 4
    """Number of transformer blocks."""
    num_attention_heads: int = 4
    """Query heads per block."""
    num_key_value_heads: int = 2
    """Key/value heads per block (grouped-query attention, as in Qwen2)."""
    intermediate_size: int = 256
    """Width of the SwiGLU MLP."""
    max_position_embeddings: int = 512
    """Longest sequence (prompt + response) the model accepts."""
    seed: int = 0
    """Seed of the weight initialisation."""

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"model.hidden_size ({self.hidden_size}) must be divisible by "
                f"model.num_attention_heads ({self.num_attention_heads})"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"model.num_attention_heads ({self.num_attention_heads}) must be divisible by "
                f"model.num_key_value_heads ({self.num_key_value_heads})"
            )


def build_model(cfg: ModelConfig, tokenizer) -> Qwen2ForCausalLM:
    """A randomly initialised ``Qwen2ForCausalLM`` sized for ``tokenizer``'s vocabulary."""
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(cfg.seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    return model
