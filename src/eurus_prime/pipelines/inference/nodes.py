"""inference: answer a file of questions with a checkpoint, the Eurus-2 prompt, optionally best-of-N."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from eurus_prime.engines.rollout import ENGINES, generate
from eurus_prime.eval import inference as infer
from eurus_prime.eval.checkpoints import current_project, load_each, resolve
from eurus_prime.tasks.contract import ABILITIES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceConfig:
    """The ``inference`` pipeline (``params:inference``)."""

    model: str = "latest"
    """A checkpoint name or folder (``eurus_prime.eval.checkpoints``)."""
    system_prompt: str = "eurus2"
    ability: str = "math"
    """For questions without an ``ability`` column."""
    max_new_tokens: int = 1024
    temperature: float = 0.0
    batch_size: int = 32
    best_of: int = 0
    """N > 0: sample N answers (at ``sample_temperature``) and keep the one the PRM scores highest."""
    sample_temperature: float = 1.0
    prm: str = "prm:latest"
    reference: str = "sft"
    beta: float = 0.05
    seed: int = 0
    engine: str = "fast"
    """Generation engine: ``fast`` or ``hf`` (``eurus_prime.engines.rollout.base.ENGINES``)."""

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"inference.engine = {self.engine!r} is invalid: valid values are {list(ENGINES)}")
        if self.ability not in ABILITIES:
            raise ValueError(f"inference.ability must be one of {list(ABILITIES)}, got {self.ability!r}")
        if self.max_new_tokens < 1 or self.batch_size < 1 or self.best_of < 0:
            raise ValueError("inference.max_new_tokens and batch_size must be >= 1, best_of >= 0")


def _questions(frame: pd.DataFrame, default_ability: str) -> pd.DataFrame:
    """Check the question file: a non-empty ``question`` per row, a known ``ability`` if given."""
    source = frame.attrs.get("source", "inference_questions")
    if "question" not in frame.columns:
        raise ValueError(f"{source}: no `question` column (columns: {list(frame.columns)})")
    abilities = pd.Series(default_ability, index=frame.index)
    if "ability" in frame.columns:  # a row without one (null in a JSONL file) takes the default
        abilities = frame["ability"].where(frame["ability"].notna(), default_ability)
    for row, (q, a) in enumerate(zip(frame["question"], abilities)):
        if not isinstance(q, str) or not q.strip():
            raise ValueError(f"{source} row {row}: field `question` must be non-empty text, got {q!r}")
        if a not in ABILITIES:
            raise ValueError(f"{source} row {row}: field `ability` must be one of {list(ABILITIES)}, got {a!r}")
    position = pd.Series([str(i) for i in range(len(frame))], index=frame.index)
    ids = (
        position
        if "id" not in frame.columns
        else frame["id"].map(lambda v: None if pd.isna(v) else str(v)).fillna(position)
    )  # a row without an id: its position
    return pd.DataFrame(
        {"id": ids.to_numpy(), "question": frame["question"].to_numpy(), "ability": abilities.to_numpy()}
    )


def answer_questions(inference_questions: pd.DataFrame, inference: InferenceConfig) -> pd.DataFrame:
    """One row per question: the model's response, its action steps and final answer; with
    ``best_of`` the chosen candidate, its PRM score and every candidate with its score."""
    cfg = inference
    questions = _questions(inference_questions, cfg.ability)
    project = current_project()
    specs = [cfg.model, cfg.prm, cfg.reference] if cfg.best_of else [cfg.model]
    model, *scorers = load_each([resolve(spec, project) for spec in specs])
    tok = model.tokenizer
    texts = [
        infer.chat_prompt(tok, q, a, cfg.system_prompt) for q, a in zip(questions["question"], questions["ability"])
    ]
    out = questions.assign(model=model.version, prompt_text=texts)
    if not cfg.best_of:
        gens = generate(
            model.model,
            tok,
            texts,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            engine=cfg.engine,
        )
        parsed = [infer.parse_response(g.text, a).as_row() for g, a in zip(gens, questions["ability"])]
        return out.assign(
            response=[g.text for g in gens],
            finish_reason=[g.finish_reason for g in gens],
            response_length=[len(g.token_ids) for g in gens],
            **pd.DataFrame(parsed).to_dict("list"),
        )
    cands = infer.best_of_n(
        model,
        *scorers,
        texts,
        list(questions["ability"]),
        n=cfg.best_of,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.sample_temperature,
        beta=cfg.beta,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        engine=cfg.engine,
    )
    best = [max(group, key=lambda c: c.score) for group in cands]
    return out.assign(
        response=[c.generation.text for c in best],
        finish_reason=[c.generation.finish_reason for c in best],
        response_length=[len(c.generation.token_ids) for c in best],
        **pd.DataFrame([c.parsed.as_row() for c in best]).to_dict("list"),
        prm_score=[c.score for c in best],
        candidates=[
            [{"response": c.generation.text, "answer": c.parsed.answer or "", "prm_score": c.score} for c in group]
            for group in cands
        ],
    )
