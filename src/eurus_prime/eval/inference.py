"""Use a checkpoint: the Eurus-2 prompt, streamed answers, action-step parsing, PRM-ranked best-of-N.

The seed model card runs Eurus-2-7B-PRIME with the Eurus-2 action prompt (system message listing
[ASSESS], [ADVANCE], ...; user message = question + an ability suffix). Everything here goes
through ``eurus_prime.tasks.prompting``, so the training loop, the evaluation and a user's chat see the
same text.

Best-of-N with the implicit PRM: PRIME's PRM is a causal LM whose log-ratio to the reference model
is a reward, ``r(y) = beta * sum_t [log pi_prm(y_t | y_<t) - log pi_ref(y_t | y_<t)]``. Sample N
answers, score each by ``r(y)`` and return the best: the PRM a run trained becomes a reusable
verifier with no extra head and no labels at inference time.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import TextStreamer

from eurus_prime.core.rewards import implicit_reward
from eurus_prime.engines.rollout import Generation, generate
from eurus_prime.engines.rollout.hf import finish, sampling_kwargs
from eurus_prime.prime.batch import score_responses
from eurus_prime.tasks.countdown.steps import answer_text as countdown_answer
from eurus_prime.tasks.prompting import ACTIONS, build_messages, render_prompt, system_prompt
from eurus_prime.verifiers.code import extract_code
from eurus_prime.verifiers.math import extract_answer, normalize

_HEADER = re.compile(r"^\[([A-Z][A-Z ]*)\][ \t]*$", re.MULTILINE)
_NEXT = re.compile(r"\n?[ \t]*Next action:[ \t]*\[([A-Z][A-Z ]*)\][ \t]*$")
_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n.*?```", re.DOTALL)


@dataclass(frozen=True)
class Step:
    """One action step: its action name (``ASSESS``, ...), its text, and the action it announces next."""

    action: str
    text: str
    next_action: str | None = None


@dataclass(frozen=True)
class ParsedResponse:
    """A response split into its action steps and its final answer.

    ``preamble`` is any text before the first action header; ``answer`` is the last ``\\boxed{}``
    (math) or the last fenced Python block (code), None when there is none; ``unknown_actions``
    lists headers that are not among the Eurus-2 actions (a sign the model drifted off format).
    """

    steps: list[Step]
    answer: str | None
    preamble: str = ""
    unknown_actions: list[str] = field(default_factory=list)

    def as_row(self) -> dict:
        return {
            "steps": [{"action": s.action, "text": s.text, "next_action": s.next_action or ""} for s in self.steps],
            "actions": [s.action for s in self.steps],
            "answer": self.answer,
        }


def parse_response(text: str, ability: str) -> ParsedResponse:
    """Split a Eurus-2 style response into action steps and extract its final answer."""
    # A header inside a code block is code, not an action: mask fenced blocks while searching.
    masked = _FENCE.sub(lambda m: " " * len(m.group(0)), text)
    headers = list(_HEADER.finditer(masked))
    steps = []
    for k, h in enumerate(headers):
        end = headers[k + 1].start() if k + 1 < len(headers) else len(text)
        body = text[h.end() : end].strip("\n")
        nxt = _NEXT.search(body.rstrip())
        if nxt:
            body = body.rstrip()[: nxt.start()].rstrip()
        steps.append(Step(action=h.group(1), text=body.strip(), next_action=nxt.group(1) if nxt else None))
    preamble = text[: headers[0].start()].strip() if headers else text.strip()
    if ability == "code":
        answer = extract_code(text) if "```" in text else None
    elif ability == "math":
        answer = extract_answer(text)
    elif ability == "countdown":
        answer = countdown_answer(text)
    else:
        raise ValueError(f"unknown ability {ability!r}; valid: ['code', 'countdown', 'math']")
    unknown = [s.action for s in steps if s.action not in ACTIONS]
    return ParsedResponse(steps=steps, answer=answer, preamble=preamble, unknown_actions=unknown)


def chat_prompt(tokenizer, question: str, ability: str = "math", system: str = "eurus2") -> str:
    """The model input for one question: the named system prompt, question + ability suffix,
    rendered with the tokenizer's chat template (generation prompt on)."""
    return render_prompt(tokenizer, build_messages(question, ability, system_prompt(system)))


class _CallbackStreamer(TextStreamer):
    """transformers' ``TextStreamer`` (prompt skipped, special tokens dropped) that hands each new piece
    of text to ``on_text`` instead of printing it.

    ``TextStreamer`` decodes the tokens since the last line break (keeping the token before it as
    context) and holds a piece back until it is stable: letters and digits go at once, anything
    else (an incomplete UTF-8 character, a symbol that may start formatting) waits for the next
    space, line break or the end, so the pieces add up to the decoded response.
    """

    def __init__(self, tokenizer, on_text: Callable[[str], None]) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.on_text = on_text

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:  # TextStreamer also reports the empty pieces of held-back tokens
            self.on_text(text)


@torch.no_grad()
def stream_generate(
    checkpoint,
    prompt_text: str,
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    on_text: Callable[[str], None] | None = None,
) -> Generation:
    """Generate one response, calling ``on_text`` with each new piece of text as it is produced.

    Returns the same ``Generation`` as the batched engine (text, token ids incl. the end-of-turn
    token when it stopped, finish reason).
    """
    model, tok = checkpoint.model, checkpoint.tokenizer
    model.eval()
    ids = torch.tensor([tok(prompt_text, add_special_tokens=False)["input_ids"]])
    streamer = _CallbackStreamer(tok, on_text or (lambda _: None))
    torch.manual_seed(seed)
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_new_tokens,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        streamer=streamer,
        **sampling_kwargs(temperature, top_p),
    )
    return finish(tok, out[0, ids.shape[1] :].tolist())


def check_same_tokenizer(a, b, what: str) -> None:
    """Scoring reuses the sampled token ids, so the PRM and reference must share the policy's
    vocabulary; ValueError otherwise (re-tokenising text would score other tokens)."""
    if len(a) != len(b) or a.convert_ids_to_tokens(list(range(min(len(a), 1000)))) != b.convert_ids_to_tokens(
        list(range(min(len(b), 1000)))
    ):
        raise ValueError(
            f"{what} has another tokenizer than the sampling model ({len(b)} vs {len(a)} tokens); "
            "the implicit PRM scores the sampled token ids, so they must share one"
        )


def prm_sequence_scores(
    prm,
    reference,
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    *,
    beta: float,
    micro_batch: int = 32,
) -> list[np.ndarray]:
    """Per-token implicit rewards ``beta * (log pi_prm - log pi_ref)`` of each response.

    Returns one array per response (its sum is the sequence score used for ranking).
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    pad = prm.tokenizer.pad_token_id
    prm_lp = score_responses(prm.model, prompt_ids, response_ids, pad, micro_batch)
    ref_lp = score_responses(reference.model, prompt_ids, response_ids, pad, micro_batch)
    return [implicit_reward(a, b, beta) for a, b in zip(prm_lp, ref_lp)]


def answer_key(answer: str | None, ability: str) -> str | None:
    """What majority voting compares: the normalised math answer, or the code with blank lines
    and trailing spaces removed (identical programs vote together; there is no execution)."""
    if answer is None:
        return None
    if ability == "math":
        return normalize(answer)
    if ability == "countdown":  # the moves and the box (countdown_answer): same solution, same vote
        return answer
    return "\n".join(line.rstrip() for line in answer.strip().splitlines() if line.strip())


def majority_index(keys: Sequence[str | None], tie_break: Sequence[float] | None = None) -> int:
    """Index of a candidate whose answer is the most common; ties go to the higher ``tie_break``
    (e.g. the PRM score) then to the earlier sample; candidates with no answer vote for nothing."""
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return 0
    top = max(counts.values())
    winners = [i for i, k in enumerate(keys) if k is not None and counts[k] == top]
    if tie_break is None:
        return winners[0]
    return max(winners, key=lambda i: (tie_break[i], -i))


@dataclass(frozen=True)
class Candidate:
    """One of N sampled answers with its implicit-PRM sequence score."""

    generation: Generation
    score: float
    token_rewards: np.ndarray
    parsed: ParsedResponse


def best_of_n(
    policy,
    prm,
    reference,
    prompt_texts: Sequence[str],
    abilities: Sequence[str],
    *,
    n: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    beta: float = 0.05,
    seed: int = 0,
    batch_size: int = 64,
    micro_batch: int = 32,
    progress: bool = True,
    engine: str = "fast",
) -> list[list[Candidate]]:
    """Sample ``n`` answers per prompt and score each with the implicit PRM.

    Returns, per prompt, its ``n`` candidates in sampling order (``sorted(..., key=score)`` ranks
    them); the ranking, majority vote and oracle are the caller's choice.
    """
    if n < 1:
        raise ValueError(f"best-of-N needs n >= 1, got {n}")
    tok = policy.tokenizer
    check_same_tokenizer(tok, prm.tokenizer, "the PRM")
    check_same_tokenizer(tok, reference.tokenizer, "the reference model")
    rep = [i for i in range(len(prompt_texts)) for _ in range(n)]
    gens = generate(
        policy.model,
        tok,
        [prompt_texts[i] for i in rep],
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
        engine=engine,
    )
    p_ids = [tok(prompt_texts[i], add_special_tokens=False)["input_ids"] for i in rep]
    rewards = prm_sequence_scores(
        prm, reference, p_ids, [g.token_ids for g in gens], beta=beta, micro_batch=micro_batch
    )
    out: list[list[Candidate]] = [[] for _ in prompt_texts]
    for i, g, r in zip(rep, gens, rewards):
        out[i].append(
            Candidate(generation=g, score=float(r.sum()), token_rewards=r, parsed=parse_response(g.text, abilities[i]))
        )
    return out
