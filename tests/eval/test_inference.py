"""Inference: the Eurus-2 prompt, streaming, action-step parsing, majority vote and PRM-ranked best-of-N."""

import copy

import numpy as np
import pytest
import torch

from eurus_prime.datasets import Checkpoint
from eurus_prime.engines.rollout import generate
from eurus_prime.eval import inference
from eurus_prime.tasks.prompting import CODE_SUFFIX, EURUS2_SYSTEM_PROMPT, MATH_SUFFIX

TINY_RESPONSE = (
    "[ASSESS]\n\nStart: 3. Steps: /3.\n\nNext action: [ADVANCE]\n\n[ADVANCE]\n\n3 / 3 = 1\n\n"
    "Next action: [OUTPUT]\n\n[OUTPUT]\n\nThe answer is \\boxed{1}"
)


def test_parse_response_splits_action_steps_and_finds_the_boxed_answer():
    parsed = inference.parse_response(TINY_RESPONSE, "math")
    assert [s.action for s in parsed.steps] == ["ASSESS", "ADVANCE", "OUTPUT"]
    assert [s.next_action for s in parsed.steps] == ["ADVANCE", "OUTPUT", None]
    assert parsed.steps[1].text == "3 / 3 = 1"
    assert parsed.answer == "1" and parsed.unknown_actions == [] and parsed.preamble == ""
    row = parsed.as_row()
    assert row["actions"] == ["ASSESS", "ADVANCE", "OUTPUT"] and row["steps"][0]["next_action"] == "ADVANCE"


def test_parse_response_ignores_headers_inside_code_and_reports_unknown_actions():
    text = (
        "Let me think.\n[ASSESS]\n\nRead it.\n\nNext action: [GUESS]\n\n[GUESS]\n\nhm\n\n[OUTPUT]\n\n"
        "```python\nx = 1\n[ADVANCE]\nprint(x)\n```"
    )
    parsed = inference.parse_response(text, "code")
    assert [s.action for s in parsed.steps] == ["ASSESS", "GUESS", "OUTPUT"]
    assert parsed.unknown_actions == ["GUESS"] and parsed.preamble == "Let me think."
    assert parsed.answer == "x = 1\n[ADVANCE]\nprint(x)\n"
    assert inference.parse_response("no format at all", "code").answer is None
    assert inference.parse_response("no format at all", "math").steps == []
    with pytest.raises(ValueError, match="unknown ability 'poetry'"):
        inference.parse_response("x", "poetry")


def test_chat_prompt_uses_the_exact_eurus2_system_prompt_and_suffixes(tiny_tokenizer):
    math = inference.chat_prompt(tiny_tokenizer, "What is 2+2?", "math")
    assert EURUS2_SYSTEM_PROMPT in math and "What is 2+2?" + MATH_SUFFIX in math
    code = inference.chat_prompt(tiny_tokenizer, "Add two numbers.", "code")
    assert "Add two numbers." + CODE_SUFFIX in code
    assert math.endswith("<|im_start|>assistant\n")


def test_majority_vote_and_answer_keys():
    keys = [inference.answer_key(a, "math") for a in ["1/2", "0.5", "\\frac{1}{2}", "3", None]]
    assert keys[3] == "3" and keys[4] is None
    assert inference.majority_index(["a", "b", "b", None]) == 1
    assert inference.majority_index(["a", "b", None], tie_break=[0.1, 0.9, 5.0]) == 1  # tie -> higher score
    assert inference.majority_index([None, None]) == 0
    code = inference.answer_key("def f():\n    return 1   \n\n", "code")
    assert code == inference.answer_key("def f():\n    return 1", "code")


def _checkpoint(model, tok) -> Checkpoint:
    return Checkpoint(model=model, tokenizer=tok, version="test")


def test_stream_generate_streams_exactly_the_greedy_generation(tiny_model, tiny_tokenizer):
    ckpt = _checkpoint(tiny_model, tiny_tokenizer)
    prompt = inference.chat_prompt(tiny_tokenizer, "Zoe has 3 toys.", "math", "tiny")
    pieces: list[str] = []
    gen = inference.stream_generate(ckpt, prompt, max_new_tokens=20, on_text=pieces.append)
    assert len(pieces) > 1 and "".join(pieces) == gen.text
    batched = generate(tiny_model, tiny_tokenizer, [prompt], max_new_tokens=20, progress=False)[0]
    assert gen.token_ids == batched.token_ids and gen.finish_reason == batched.finish_reason


@pytest.mark.parametrize(
    "text",
    [
        TINY_RESPONSE,
        "Schritt 1: 3 \u00b7 4 = 12 \u2713\n\n\u8ba1\u7b97 \U0001f600 caf\u00e9\n  indented\n\\boxed{12}",
        "no_spaces_at_all_\u00e9\u00e9\u00e9",
    ],
)
def test_callback_streamer_pieces_add_up_to_the_decoded_response(tiny_tokenizer, text):
    """Token by token, as ``generate`` feeds it (the prompt first, the end-of-turn token last): every
    piece is non-empty, and byte-level pieces of multi-byte characters never leak half a character."""
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"] + [tiny_tokenizer.eos_token_id]
    pieces: list[str] = []
    streamer = inference._CallbackStreamer(tiny_tokenizer, pieces.append)
    streamer.put(torch.tensor([[1, 2, 3]]))  # the prompt: skipped
    for t in ids:
        streamer.put(torch.tensor([t]))
    streamer.end()
    assert "".join(pieces) == tiny_tokenizer.decode(ids, skip_special_tokens=True) == text
    assert len(pieces) > 1 and all(pieces) and "\ufffd" not in "".join(pieces)


def test_prm_scores_are_beta_times_the_log_ratio(tiny_model, tiny_tokenizer):
    ref = _checkpoint(tiny_model, tiny_tokenizer)
    prm_model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for p in prm_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    prm = _checkpoint(prm_model, tiny_tokenizer)
    prompt = tiny_tokenizer("<|im_start|>user\nhi<|im_end|>\n", add_special_tokens=False)["input_ids"]
    responses = [[5, 6, 7], [8, 9], []]
    same = inference.prm_sequence_scores(ref, ref, [prompt] * 3, responses, beta=0.05)
    assert all(np.all(s == 0) for s in same) and [len(s) for s in same] == [3, 2, 0]
    scores = inference.prm_sequence_scores(prm, ref, [prompt] * 3, responses, beta=0.5)
    ids = torch.tensor([prompt + responses[0]])
    with torch.no_grad():
        lp = {
            name: torch.log_softmax(m(ids).logits[0, len(prompt) - 1 : -1], -1).gather(-1, ids[0, len(prompt) :, None])[
                :, 0
            ]
            for name, m in (("prm", prm_model), ("ref", tiny_model))
        }
    np.testing.assert_allclose(scores[0], 0.5 * (lp["prm"] - lp["ref"]).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="beta must be > 0"):
        inference.prm_sequence_scores(prm, ref, [prompt], [[5]], beta=0)


def test_best_of_n_returns_n_scored_candidates_per_prompt(tiny_model, tiny_tokenizer):
    ckpt = _checkpoint(tiny_model, tiny_tokenizer)
    prompts = [inference.chat_prompt(tiny_tokenizer, q, "math", "tiny") for q in ("Zoe has 3 toys.", "Add 2 and 2.")]
    cands = inference.best_of_n(ckpt, ckpt, ckpt, prompts, ["math", "math"], n=3, max_new_tokens=8)
    assert [len(c) for c in cands] == [3, 3]
    assert all(c.score == 0.0 and len(c.token_rewards) == len(c.generation.token_ids) for g in cands for c in g)
    with pytest.raises(ValueError, match="n >= 1"):
        inference.best_of_n(ckpt, ckpt, ckpt, prompts, ["math", "math"], n=0, max_new_tokens=8)


def test_best_of_n_refuses_a_prm_with_another_tokenizer(tiny_model, tiny_tokenizer, small_world):
    from eurus_prime.tasks.tinyworld.tokenizer import TokenizerConfig, build_tokenizer, chat_text

    _, demos = small_world
    corpus = [chat_text(list(p), r) for p, r in zip(demos["prompt"][:50], demos["response"][:50])]
    other = build_tokenizer(corpus, TokenizerConfig(vocab_size=400))
    ckpt = _checkpoint(tiny_model, tiny_tokenizer)
    alien = _checkpoint(tiny_model, other)
    with pytest.raises(ValueError, match="the PRM has another tokenizer"):
        inference.best_of_n(ckpt, alien, ckpt, ["x"], ["math"], n=2, max_new_tokens=4)


def test_question_files_get_defaults_and_bad_rows_name_file_row_and_field():
    import pandas as pd

    from eurus_prime.pipelines.inference.nodes import _questions

    frame = pd.DataFrame({"question": ["a", "b"], "id": ["x", None], "ability": [None, "code"]})
    frame.attrs["source"] = "data/01_raw/questions.jsonl"
    q = _questions(frame, "math")
    assert list(q["id"]) == ["x", "1"] and list(q["ability"]) == ["math", "code"]
    bad = pd.DataFrame({"question": ["a", " "]})
    bad.attrs["source"] = "data/01_raw/questions.jsonl"
    with pytest.raises(ValueError, match=r"questions.jsonl row 1: field `question` must be non-empty"):
        _questions(bad, "math")
    with pytest.raises(
        ValueError, match=r"row 0: field `ability` must be one of \['math', 'code', 'countdown'\], got 'poetry'"
    ):
        _questions(pd.DataFrame({"question": ["a"], "ability": ["poetry"]}), "math")
    with pytest.raises(ValueError, match="no `question` column"):
        _questions(pd.DataFrame({"text": ["a"]}), "math")
