import random

import pytest
import torch

from eurus_prime.engines.sft import (
    IGNORE,
    SFTConfig,
    length_bucketed_batches,
    lr_at,
    mean_loss,
    split_examples,
    tokenize_demonstrations,
    train_sft,
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


def test_lr_schedule_warms_up_then_decays_to_floor():
    cfg = SFTConfig(lr=1.0, min_lr_ratio=0.1, warmup_fraction=0.1)
    lrs = [lr_at(s, 100, cfg) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and max(lrs) == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


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
