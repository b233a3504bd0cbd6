"""bootstrap (tiny, chains and countdown worlds): tasks -> tokenizer -> model -> SFT checkpoint."""

from __future__ import annotations

import logging
import time

import pandas as pd

from eurus_prime.datasets import Checkpoint
from eurus_prime.engines.sft import SFTConfig, split_examples, tokenize_demonstrations, train_sft
from eurus_prime.tasks.chainworld.world import ChainWorldConfig, generate_chain_world
from eurus_prime.tasks.countdown.world import CountdownWorldConfig, generate_countdown_world
from eurus_prime.tasks.prompting import render_prompt
from eurus_prime.tasks.tinyworld.model import ModelConfig, build_model
from eurus_prime.tasks.tinyworld.tokenizer import TokenizerConfig, build_tokenizer, chat_text
from eurus_prime.tasks.tinyworld.world import TinyWorldConfig, generate_world

log = logging.getLogger(__name__)


#: ``params:world`` -> the generator of that world's prompts and demonstrations.
WORLDS = ("tiny", "chains", "countdown")


def make_world(
    world: str, tinyworld: TinyWorldConfig, chainworld: ChainWorldConfig, countdownworld: CountdownWorldConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate the prompts (train/val/test) and SFT demonstrations of the world named by
    ``params:world``: ``tiny`` (``params:tinyworld``), ``chains`` (``params:chainworld``) or
    ``countdown`` (``params:countdownworld``)."""
    if world == "tiny":
        return generate_world(tinyworld)
    if world == "chains":
        return generate_chain_world(chainworld)
    if world == "countdown":
        return generate_countdown_world(countdownworld)
    raise ValueError(f"params:world = {world!r} is invalid: valid worlds are {list(WORLDS)}")


def build_tiny_tokenizer(sft_demonstrations: pd.DataFrame, tokenizer: TokenizerConfig):
    """Train the byte-level BPE on the demonstrations, rendered exactly as the model sees them."""
    corpus = [chat_text(list(p), r) for p, r in zip(sft_demonstrations["prompt"], sft_demonstrations["response"])]
    return build_tokenizer(corpus, tokenizer)


def build_initial_model(tokenizer, model: ModelConfig) -> Checkpoint:
    """A randomly initialised Qwen2 causal LM for this tokenizer."""
    built = build_model(model, tokenizer)
    log.info("tiny model: %d parameters", sum(p.numel() for p in built.parameters()))
    return Checkpoint(model=built, tokenizer=tokenizer)


def supervised_finetune(
    initial_model: Checkpoint, sft_demonstrations: pd.DataFrame, sft: SFTConfig
) -> tuple[Checkpoint, pd.DataFrame, dict]:
    """SFT with a masked loss on the assistant turn; keeps the best validation weights.

    Returns:
        ``sft_model``, ``sft_history`` (one row per validation measurement) and MLflow metrics.
    """
    model, tok = initial_model.model, initial_model.tokenizer
    prompts = [render_prompt(tok, list(p)) for p in sft_demonstrations["prompt"]]
    examples = tokenize_demonstrations(
        tok, prompts, sft_demonstrations["response"].tolist(), model.config.max_position_embeddings
    )
    train, val = split_examples(examples, sft)
    start = time.perf_counter()
    history = pd.DataFrame(train_sft(model, train, val, tok.pad_token_id, sft))
    seconds = time.perf_counter() - start
    metrics = {
        "sft/train_loss": [
            {"value": float(v), "step": int(s)} for s, v in zip(history.step, history.train_loss) if v == v
        ],
        "sft/val_loss": [{"value": float(v), "step": int(s)} for s, v in zip(history.step, history.val_loss)],
        "sft/best_val_loss": {"value": float(history.val_loss.min()), "step": 0},
        "timing/sft_seconds": {"value": seconds, "step": 0},
    }
    return Checkpoint(model=model, tokenizer=tok), history, metrics
