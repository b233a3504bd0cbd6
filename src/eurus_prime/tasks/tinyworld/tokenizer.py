"""A byte-level BPE tokenizer for the tiny world, built in-process.

Why byte-level BPE with Qwen2's pre-tokenizer: a tokenizer folder saved beside a ``qwen2`` model
config loads through ``AutoTokenizer`` as Qwen2's tokenizer class, which installs Qwen2's own
byte-level pre-tokenizer. Training our BPE on exactly that pre-tokenization makes the swap a no-op,
so text (spaces included) round-trips. Qwen2's split puts every digit in its own token, which is
also what a small model needs to learn column arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

#: Qwen2's pre-tokenization pattern (digits one by one, letters in runs, punctuation runs).
QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"

#: Qwen2.5's chat template, reduced to plain system/user/assistant turns (no tools). It renders
#: those turns exactly as Qwen2.5's template does.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class TokenizerConfig:
    """Tokenizer built for the tiny world."""

    vocab_size: int = 512
    """Target BPE vocabulary size, special tokens included."""

    def __post_init__(self) -> None:
        if self.vocab_size < 300:
            raise ValueError(
                f"tokenizer.vocab_size must be >= 300 (256 bytes + specials + merges), got {self.vocab_size}"
            )


def build_tokenizer(corpus: Iterable[str], cfg: TokenizerConfig) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``corpus`` and wrap it as a HF fast tokenizer with Qwen2.5's
    special tokens and chat template. ``eos`` is ``<|im_end|>`` (end of an assistant turn)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        special_tokens=[PAD, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=IM_END, pad_token=PAD, padding_side="left")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def chat_text(messages: list[dict], response: str | None = None) -> str:
    """Render messages (and an assistant response) as ``CHAT_TEMPLATE`` does, without needing a
    tokenizer: the BPE is trained on exactly the text the model will read."""
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    text += f"{IM_START}assistant\n"
    return text if response is None else text + response + IM_END
