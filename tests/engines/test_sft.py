import math
import random

import pytest
import torch

from eurus_prime.engines.sft import (
    IGNORE,
    SFTConfig,
    length_bucketed_batches,
    lr_scheduler,
    mean_loss,
    split_examples,
    tokenize_demonstrations,
    train_sft,
    warmup_steps,
)
from eurus_prime.tasks.prompting import render_prompt


def _examples(world, tok, n=120):
    _, demos = world
    demos = demos.head(n)
    prompts = [render_prompt(tok, list(p)) for p in demos["prompt"]]
    return tokenize_demonstrations(tok, prompts, demos["response"].tolist(), 512)


def test_loss_mask_covers_response_and_eos_only(small_world, tiny_tokenizer):
    ex = _examples(small_world, tiny_tokenizer, 3)[0]
    labelled = [t for t, lab in zip(ex.input_ids, ex.labels) if lab != IGNORE]
    assert labelled[-1] == tiny_tokenizer.eos_token_id
    text = tiny_tokenizer.decode(labelled[:-1])
    assert text.startswith("[ASSESS]") and "<|im_start|>" not in text


def test_too_long_demonstration_is_named(small_world, tiny_tokenizer):
    with pytest.raises(ValueError, match="demonstration 0 has .* tokens"):
        tokenize_demonstrations(tiny_tokenizer, ["x" * 50], ["y"], max_length=8)


def test_sft_lowers_loss_and_changes_every_parameter(small_world, tiny_tokenizer, tiny_model):
    train, val = split_examples(_examples(small_world, tiny_tokenizer), SFTConfig(val_fraction=0.2))
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    loss_before = mean_loss(tiny_model, val, tiny_tokenizer.pad_token_id)
    cfg = SFTConfig(lr=1e-2, epochs=4, batch_size=16, eval_every=5, val_fraction=0.2)
    history = train_sft(tiny_model, train, val, tiny_tokenizer.pad_token_id, cfg)
    loss_after = mean_loss(tiny_model, val, tiny_tokenizer.pad_token_id)
    assert loss_after < loss_before - 0.5
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    for name, p in tiny_model.named_parameters():
        assert not torch.equal(before[name], p), f"{name} did not change"


def _schedule(total: int, cfg: SFTConfig) -> list[float]:
    """The learning rate of each of ``total`` optimizer steps under ``lr_scheduler``."""
    optim = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    schedule = lr_scheduler(optim, total, cfg)
    lrs = []
    for _ in range(total):
        lrs.append(optim.param_groups[0]["lr"])
        optim.step()
        schedule.step()
    return lrs


def _old_lr_at(step: int, total: int, cfg: SFTConfig) -> float:
    """The hand-written schedule this module had before it used transformers' (the reference)."""
    warmup = max(1, int(cfg.warmup_fraction * total))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = cfg.min_lr_ratio
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def test_lr_schedule_warms_up_from_zero_then_decays_to_floor():
    cfg = SFTConfig(lr=1.0, min_lr_ratio=0.1, warmup_fraction=0.1)
    lrs = _schedule(100, cfg)
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == 1.0 == max(lrs)
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3) and min(lrs[10:]) > 0.1
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


@pytest.mark.parametrize(
    ("total", "warmup_fraction", "min_lr_ratio", "lr"),
    [
        (100, 0.1, 0.1, 1.0),
        (3564, 0.03, 0.02, 4e-3),
        (37, 0.03, 0.02, 4e-3),
        (250, 0.2, 0.0, 1e-2),
        (10, 0.0, 1.0, 3e-4),
    ],
)
def test_lr_schedule_is_the_old_formula_after_warmup_and_one_step_late_during_it(
    total, warmup_fraction, min_lr_ratio, lr
):
    """transformers' schedule against the hand-written one it replaced: the same decay to the bit; the
    warm-up is one step later (step s trains at s/W of lr instead of (s+1)/W, so step 0 trains at 0)."""
    cfg = SFTConfig(lr=lr, min_lr_ratio=min_lr_ratio, warmup_fraction=warmup_fraction)
    new, warmup = _schedule(total, cfg), warmup_steps(total, cfg)
    old = [_old_lr_at(s, total, cfg) for s in range(total)]
    for s in range(warmup, total):
        assert new[s] == pytest.approx(old[s], rel=1e-12, abs=0), s
    for s in range(warmup):
        assert new[s] == pytest.approx(old[s] - lr / warmup, rel=1e-12, abs=1e-300), s
        assert new[s] == pytest.approx(lr * s / warmup, rel=1e-12, abs=1e-300), s


def test_history_logs_the_learning_rate_each_step_trained_at(small_world, tiny_tokenizer, tiny_model):
    train, val = split_examples(_examples(small_world, tiny_tokenizer, 40), SFTConfig(val_fraction=0.2))
    cfg = SFTConfig(lr=1e-2, epochs=1, batch_size=4, eval_every=1, val_fraction=0.2, warmup_fraction=0.25)
    history = train_sft(tiny_model, train, val, tiny_tokenizer.pad_token_id, cfg)
    lrs = _schedule(len(history) - 1, cfg)
    assert [h["lr"] for h in history[1:]] == lrs and lrs[0] == 0.0


def test_buckets_cover_every_item_once():
    lengths = [random.Random(i).randint(1, 50) for i in range(1000)]
    batches = length_bucketed_batches(1000, lengths, 16, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(1000))


@pytest.mark.parametrize(
    "kwargs", [{"lr": 0}, {"epochs": 0}, {"batch_size": 0}, {"val_fraction": 1.0}, {"min_lr_ratio": 2}]
)
def test_sft_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SFTConfig(**kwargs)
