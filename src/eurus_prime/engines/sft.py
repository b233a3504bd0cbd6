"""Supervised fine-tuning on demonstrations (masked loss on the assistant turn).

A plain single-process PyTorch loop, on purpose: the tiny world's SFT must *converge* (a decaying
learning rate, chosen on the validation curve), because an unconverged SFT checkpoint makes any
later update look like learning. The schedule is transformers' ``cosine_with_min_lr``: linear warm-up
from 0, then cosine decay to ``min_lr_ratio * lr``; the validation loss is measured every
``eval_every`` steps and the weights of the best measurement are the ones returned.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

IGNORE = -100


@dataclass(frozen=True)
class SFTConfig:
    """Hyperparameters of supervised fine-tuning."""

    lr: float = 4e-3
    """Peak learning rate (AdamW)."""
    min_lr_ratio: float = 0.02
    """Final learning rate as a fraction of ``lr`` (end of the cosine decay)."""
    warmup_fraction: float = 0.03
    """Share of the steps spent warming up linearly from 0."""
    epochs: float = 3.0
    """Passes over the training demonstrations (fractions allowed)."""
    batch_size: int = 16
    """Demonstrations per optimizer step."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Max global gradient norm."""
    val_fraction: float = 0.05
    """Share of the demonstrations held out for the validation curve."""
    eval_every: int = 250
    """Steps between validation-loss measurements."""
    patience: int = 0
    """Stop after this many measurements without improvement (0: never stop early)."""
    seed: int = 0
    """Seed of the shuffling and of the held-out split."""
    keep_best: bool = True
    """Load the weights of the best validation measurement at the end (False: the last weights,
    e.g. a continued-SFT control measured at fixed times)."""
    max_seconds: float | None = None
    """Stop after this much wall time (None: run all epochs). Makes a run time-bounded, e.g. a
    continued-SFT control as long as an RL run, at the price of step-exact reproducibility."""

    def __post_init__(self) -> None:
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"sft.max_seconds must be > 0 or null, got {self.max_seconds}")
        if self.lr <= 0:
            raise ValueError(f"sft.lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"sft.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"sft.warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.epochs <= 0:
            raise ValueError(f"sft.epochs must be > 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"sft.batch_size must be >= 1, got {self.batch_size}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"sft.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.eval_every < 1:
            raise ValueError(f"sft.eval_every must be >= 1, got {self.eval_every}")


@dataclass(frozen=True)
class Example:
    """One tokenized demonstration: ids of prompt + response + eos; labels -100 on the prompt."""

    input_ids: list[int]
    labels: list[int]


def tokenize_demonstrations(
    tokenizer, prompts: Sequence[str], responses: Sequence[str], max_length: int
) -> list[Example]:
    """Tokenize rendered prompts and their responses. The loss covers the response and the
    end-of-turn token only. Raises if a demonstration is longer than ``max_length``."""
    examples = []
    for i, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        r = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(p) + len(r) > max_length:
            raise ValueError(
                f"demonstration {i} has {len(p) + len(r)} tokens, more than the model's "
                f"max_position_embeddings={max_length}"
            )
        examples.append(Example(p + r, [IGNORE] * len(p) + r))
    return examples


def _collate(batch: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def length_bucketed_batches(
    n_items: int, lengths: Sequence[int], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Shuffle, sort by length within windows of 50 batches, then shuffle the batches: little
    padding, and still a random order of batches."""
    idx = list(range(n_items))
    rng.shuffle(idx)
    window = batch_size * 50
    batches = []
    for start in range(0, n_items, window):
        chunk = sorted(idx[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def warmup_steps(total: int, cfg: SFTConfig) -> int:
    """Steps of the linear warm-up: ``warmup_fraction`` of ``total``, at least one."""
    return max(1, int(cfg.warmup_fraction * total))


def lr_scheduler(optimizer: torch.optim.Optimizer, total: int, cfg: SFTConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """transformers' ``cosine_with_min_lr`` schedule: step ``s`` (from 0) trains at ``lr * s / warmup`` during
    the warm-up, then at ``lr * (m + (1 - m) * (1 + cos(pi * (s - warmup) / (total - warmup))) / 2)`` with
    ``m = min_lr_ratio``. Call ``.step()`` after each optimizer step."""
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    schedule: torch.optim.lr_scheduler.LambdaLR = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=warmup_steps(total, cfg), num_training_steps=total, min_lr_rate=cfg.min_lr_ratio
    )
    return schedule


@torch.no_grad()
def mean_loss(model, examples: Sequence[Example], pad_id: int, batch_size: int = 128) -> float:
    """Token-weighted mean cross-entropy over ``examples``' response tokens."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    for start in range(0, len(order), batch_size):
        batch = _collate([examples[i] for i in order[start : start + batch_size]], pad_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)).float(),
            labels.reshape(-1),
            ignore_index=IGNORE,
            reduction="sum",
        )
        total += loss.item()
        count += int((labels != IGNORE).sum())
    model.train(was_training)
    return total / max(count, 1)


def split_examples(examples: Sequence[Example], cfg: SFTConfig) -> tuple[list[Example], list[Example]]:
    """Seeded split into (train, validation) demonstrations."""
    idx = list(range(len(examples)))
    random.Random(cfg.seed).shuffle(idx)
    n_val = max(1, int(round(cfg.val_fraction * len(examples))))
    return [examples[i] for i in idx[n_val:]], [examples[i] for i in idx[:n_val]]


def train_sft(model, train: Sequence[Example], val: Sequence[Example], pad_id: int, cfg: SFTConfig) -> list[dict]:
    """Fine-tune ``model`` in place and (``keep_best``) load the weights of the best validation
    measurement.

    Returns:
        The training history: one dict per logged step, with ``step``, ``epoch``, ``lr``,
        ``train_loss`` (mean since the last log) and, at validation steps, ``val_loss``.
    """
    if not train:
        raise ValueError("SFT needs at least one training demonstration")
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    lengths = [len(e.input_ids) for e in train]
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = max(1, int(round(cfg.epochs * steps_per_epoch)))
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    schedule = lr_scheduler(optim, total, cfg)
    model.train()
    history: list[dict] = []
    best = (mean_loss(model, val, pad_id), 0, copy.deepcopy(model.state_dict()))
    history.append({"step": 0, "epoch": 0.0, "lr": 0.0, "train_loss": float("nan"), "val_loss": best[0]})
    since_best, running, n_running, step = 0, 0.0, 0, 0
    bar = tqdm(total=total, desc="sft", leave=False, disable=None)  # None: no bar without a terminal
    deadline = None if cfg.max_seconds is None else time.monotonic() + cfg.max_seconds
    while step < total:
        for batch_idx in length_bucketed_batches(len(train), lengths, cfg.batch_size, rng):
            if step >= total:
                break
            lr = optim.param_groups[0]["lr"]
            batch = _collate([train[i] for i in batch_idx], pad_id)
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optim.step()
            schedule.step()
            optim.zero_grad(set_to_none=True)
            step += 1
            running += loss.item()
            n_running += 1
            bar.update(1)
            if deadline is not None and time.monotonic() > deadline:
                log.info("sft: max_seconds=%s reached at step %d", cfg.max_seconds, step)
                total = step
            if step % cfg.eval_every == 0 or step == total:
                val_loss = mean_loss(model, val, pad_id)
                history.append(
                    {
                        "step": step,
                        "epoch": step / steps_per_epoch,
                        "lr": lr,  # the last step's
                        "train_loss": running / n_running,
                        "val_loss": val_loss,
                    }
                )
                bar.set_postfix(train=f"{running / n_running:.3f}", val=f"{val_loss:.3f}")
                log.info("sft step %d/%d train_loss %.4f val_loss %.4f", step, total, running / n_running, val_loss)
                running, n_running = 0.0, 0
                if val_loss < best[0]:
                    best, since_best = (val_loss, step, copy.deepcopy(model.state_dict())), 0
                else:
                    since_best += 1
                    if cfg.patience and since_best >= cfg.patience:
                        log.info("sft: validation loss flat for %d measurements; stopping at step %d", since_best, step)
                        step = total
                        break
    bar.close()
    if cfg.keep_best:
        model.load_state_dict(best[2])
        log.info("sft: kept the weights of step %d (val_loss %.4f)", best[1], best[0])
    return history
