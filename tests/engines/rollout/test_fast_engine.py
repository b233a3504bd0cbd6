"""The ``fast`` rollout engine against Hugging Face ``generate`` and a teacher-forced forward pass."""

import dataclasses
import logging

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from eurus_prime.engines.rollout import fast, generate
from eurus_prime.prime.batch import score_responses
from eurus_prime.tasks.prompting import render_prompt
from eurus_prime.tasks.tinyworld.model import build_model
from tests.conftest import SMALL_MODEL

#: Teacher-forced and cached-decode log-probs of the same float32 weights agree to float rounding.
LOGPROB_TOL = 1e-4


@pytest.fixture(scope="module")
def model(tiny_tokenizer):
    """A tiny Qwen2 with 2 layers and GQA (4 query heads over 2 KV heads), random weights."""
    cfg = dataclasses.replace(SMALL_MODEL, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, seed=1)
    return build_model(cfg, tiny_tokenizer).eval()


@pytest.fixture(scope="module")
def prompts(small_world, tiny_tokenizer):
    """24 chat prompts of varied lengths (so batches are left-padded)."""
    table, _ = small_world
    return [render_prompt(tiny_tokenizer, list(p)) for p in table["prompt"].head(24)]


def _ids(tok, texts):
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


@pytest.mark.parametrize("batch_size,n_prompts", [(1, 4), (5, 24), (24, 24)])  # 1: no padding
def test_greedy_equals_hf_generate(model, tiny_tokenizer, prompts, batch_size, n_prompts):
    prompts = prompts[:n_prompts]
    hf = generate(model, tiny_tokenizer, prompts, max_new_tokens=24, temperature=0, batch_size=batch_size, engine="hf")
    ours = generate(
        model, tiny_tokenizer, prompts, max_new_tokens=24, temperature=0, batch_size=batch_size, engine="fast"
    )
    assert len({len(x) for x in _ids(tiny_tokenizer, prompts)}) > 2  # the batches really are padded
    assert [g.token_ids for g in ours] == [g.token_ids for g in hf]
    assert [g.text for g in ours] == [g.text for g in hf]
    assert [g.finish_reason for g in ours] == [g.finish_reason for g in hf]


def test_greedy_equals_hf_generate_for_llama_without_biases(tiny_tokenizer, prompts):
    """Llama layout (no q/k/v bias, explicit head_dim, untied head, rope_theta 1e5) as SmolLM2."""
    cfg = LlamaConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        rope_theta=100000.0,
        tie_word_embeddings=False,
        eos_token_id=tiny_tokenizer.eos_token_id,
        pad_token_id=tiny_tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    llama = LlamaForCausalLM(cfg).eval()
    assert fast.unsupported_reason(llama) is None
    hf = generate(llama, tiny_tokenizer, prompts[:8], max_new_tokens=16, temperature=0, batch_size=8, engine="hf")
    ours = generate(llama, tiny_tokenizer, prompts[:8], max_new_tokens=16, temperature=0, batch_size=8)
    assert [g.token_ids for g in ours] == [g.token_ids for g in hf]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampling_logprobs_match_a_teacher_forced_pass(model, tiny_tokenizer, prompts, temperature):
    gens = generate(model, tiny_tokenizer, prompts, max_new_tokens=32, temperature=temperature, batch_size=7, seed=3)
    assert all(len(g.logprobs) == len(g.token_ids) > 0 for g in gens)
    forced = score_responses(
        model, _ids(tiny_tokenizer, prompts), [g.token_ids for g in gens], tiny_tokenizer.pad_token_id, micro_batch=8
    )
    if temperature == 1.0:
        worst = max(float(np.abs(f - g.logprobs).max()) for f, g in zip(forced, gens))
        assert worst < LOGPROB_TOL
    else:  # sampled from logits / T: not the policy's own log-probs, so they must differ
        assert max(float(np.abs(f - g.logprobs).max()) for f, g in zip(forced, gens)) > 1e-2


def test_seeds_make_samples_reproducible(model, tiny_tokenizer, prompts):
    def run(seed):
        gens = generate(model, tiny_tokenizer, prompts, max_new_tokens=16, temperature=1.0, batch_size=8, seed=seed)
        return [g.token_ids for g in gens]

    torch.manual_seed(123)
    a = run(0)
    torch.manual_seed(456)  # the global RNG does not matter: the engine seeds its own generator
    assert run(0) == a
    assert run(1) != a


@pytest.fixture(scope="module")
def sharp_model(tiny_tokenizer):
    """Random weights x6: greedy continuations that differ between prompts (at the default scale a
    random model repeats one token)."""
    cfg = dataclasses.replace(SMALL_MODEL, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, seed=1)
    sharp = build_model(cfg, tiny_tokenizer).eval()
    with torch.no_grad():
        for p in sharp.parameters():
            if p.dim() == 2:
                p.mul_(6)
    return sharp


def test_dropping_finished_rows_changes_nothing(sharp_model, tiny_tokenizer, prompts):
    model = sharp_model
    # Greedy: sampling draws one random number per row still in the batch, so a compacted batch
    # draws a different (equally valid) stream; its log-probs are checked against teacher forcing above.
    ids = _ids(tiny_tokenizer, prompts)
    common = dict(max_new_tokens=40, pad_token_id=tiny_tokenizer.pad_token_id, temperature=0.0, batch_size=24)
    # A random model rarely ends a turn: stop instead at a token that some greedy rows write.
    free = fast.sample(model, ids, eos_token_id=None, **common)
    counts = np.bincount([t for s in free for t in set(s.token_ids)])
    common["eos_token_id"] = int(np.argmin(np.abs(counts - len(ids) / 2)))
    never = fast.sample(model, ids, compact_ratio=0.0, **common)
    always = fast.sample(model, ids, compact_ratio=1.0, **common)
    assert {s.finish_reason for s in never} == {"stop", "length"}  # some rows really finish early
    assert [s.token_ids for s in never] == [s.token_ids for s in always]
    for a, b in zip(never, always):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_a_stopped_row_ends_with_its_end_of_turn_token(model, tiny_tokenizer, prompts):
    eos = tiny_tokenizer.eos_token_id
    for s in fast.sample(
        model,
        _ids(tiny_tokenizer, prompts),
        max_new_tokens=40,
        eos_token_id=eos,
        pad_token_id=tiny_tokenizer.pad_token_id,
        temperature=1.0,
        batch_size=24,
        seed=5,
    ):
        assert (s.finish_reason == "stop") == (eos in s.token_ids)
        if s.finish_reason == "stop":
            assert s.token_ids.index(eos) == len(s.token_ids) - 1
        else:
            assert len(s.token_ids) == 40


@pytest.mark.parametrize("temperature", [0.5, 0.2])  # 6 and 9 tokens above 2% for this prompt
def test_samples_follow_the_model_distribution(sharp_model, tiny_tokenizer, prompts, temperature):
    """First-token frequencies over 4000 samples of one prompt against softmax(logits / T)."""
    model = sharp_model
    ids = _ids(tiny_tokenizer, prompts[:1])
    n = 4000
    with torch.no_grad():
        probs = (model(torch.tensor(ids)).logits[0, -1] / temperature).softmax(-1).numpy()
    samples = fast.sample(
        model,
        ids * n,
        max_new_tokens=1,
        eos_token_id=None,
        pad_token_id=tiny_tokenizer.pad_token_id,
        temperature=temperature,
        batch_size=n,
        seed=0,
    )
    freq = np.bincount([s.token_ids[0] for s in samples], minlength=len(probs)) / n
    likely = probs > 0.02
    assert likely.sum() >= 2
    bound = 4.5 * np.sqrt(probs * (1 - probs) / n)
    assert (np.abs(freq - probs)[likely] < bound[likely]).all()
    assert freq[probs < 1e-4].sum() < 0.01


def test_top_p_keeps_the_nucleus(model, tiny_tokenizer, prompts):
    greedy = generate(model, tiny_tokenizer, prompts, max_new_tokens=12, temperature=0, batch_size=8)
    nucleus_of_one = generate(
        model, tiny_tokenizer, prompts, max_new_tokens=12, temperature=1.0, top_p=1e-6, batch_size=8
    )
    assert [g.token_ids for g in nucleus_of_one] == [g.token_ids for g in greedy]
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    kept = torch.isfinite(fast._top_p_filter(logits, 0.8))[0].tolist()
    assert kept == [True, True, False, False]  # p = .64, .24, .09, .03: .64 < .8 <= .88


def test_unsupported_models_fall_back_to_hf_generate(tiny_tokenizer, prompts, caplog):
    gpt2 = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tiny_tokenizer),
            n_embd=32,
            n_layer=1,
            n_head=2,
            eos_token_id=tiny_tokenizer.eos_token_id,
            bos_token_id=None,
            pad_token_id=tiny_tokenizer.pad_token_id,
        )
    ).eval()
    assert "gpt2" in fast.unsupported_reason(gpt2)
    with caplog.at_level(logging.WARNING):
        out = generate(gpt2, tiny_tokenizer, prompts[:3], max_new_tokens=4, temperature=0, engine="fast")
    assert "using engine 'hf'" in caplog.text
    hf = generate(gpt2, tiny_tokenizer, prompts[:3], max_new_tokens=4, temperature=0, engine="hf")
    assert [g.token_ids for g in out] == [g.token_ids for g in hf] and out[0].logprobs is None
    with pytest.raises(ValueError, match="fast engine cannot run this model: model_type 'gpt2'"):
        fast.sample(gpt2, [[1, 2]], max_new_tokens=2, eos_token_id=None, pad_token_id=0)
    with pytest.raises(ValueError, match="engine 'sglang' is not one of"):
        generate(gpt2, tiny_tokenizer, prompts[:1], max_new_tokens=2, engine="sglang")
