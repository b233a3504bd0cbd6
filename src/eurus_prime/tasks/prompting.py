"""The Eurus-2 prompt format, shared by both worlds.

Eurus-2 (and so PRIME's released model) answers with "action" traces: a system message lists the
actions ([ASSESS], [ADVANCE], ...) and the format of a step, and the user message is the question
plus an ability-specific suffix. Everything that turns a question into model input goes through
``build_messages`` and ``render_prompt``, so the tiny world and the Eurus-2 world share one code
path and differ only in which system message they pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: The exact Eurus-2 action prompt (PRIME_REFERENCE.md, "Prompting"). Starts and ends with "\n".
EURUS2_SYSTEM_PROMPT = (
    "\nWhen tackling complex reasoning tasks, you have access to the following actions. "
    "Use them as needed to progress through your thought process.\n\n"
    "[ASSESS]\n\n[ADVANCE]\n\n[VERIFY]\n\n[SIMPLIFY]\n\n[SYNTHESIZE]\n\n[PIVOT]\n\n[OUTPUT]\n\n"
    "You should strictly follow the format below:\n\n"
    "[ACTION NAME]\n\n# Your action step 1\n\n# Your action step 2\n\n# Your action step 3\n\n"
    "...\n\nNext action: [NEXT ACTION NAME]\n"
)

#: The tiny world's system message: the same structure (action list, then the step format,
#: starting and ending with "\n") at a fraction of the length, because on a 1M-parameter model
#: every prompt token is paid for in every forward pass of every stage.
TINY_SYSTEM_PROMPT = "\nActions: [ASSESS] [ADVANCE] [OUTPUT]\nFormat: [ACTION]\n# step\nNext action: [NEXT]\n"

SYSTEM_PROMPTS = {"eurus2": EURUS2_SYSTEM_PROMPT, "tiny": TINY_SYSTEM_PROMPT}

MATH_SUFFIX = "\n\nPresent the answer in LaTex format: \\boxed{Your answer}"
CODE_SUFFIX = "\n\nWrite Python code to solve the problem. Present the code in \n```python\nYour code\n```\nat the end."
COUNTDOWN_SUFFIX = "\n\nOne move per line, then \\boxed{the last number}"
USER_SUFFIXES = {"math": MATH_SUFFIX, "code": CODE_SUFFIX, "countdown": COUNTDOWN_SUFFIX}

#: The actions a response may use, in the order the Eurus-2 prompt lists them.
ACTIONS = ("ASSESS", "ADVANCE", "VERIFY", "SIMPLIFY", "SYNTHESIZE", "PIVOT", "OUTPUT")


def system_prompt(name: str) -> str:
    """Return the system prompt called ``name`` (``eurus2`` or ``tiny``)."""
    try:
        return SYSTEM_PROMPTS[name]
    except KeyError:
        raise ValueError(f"unknown system prompt {name!r}; valid names: {sorted(SYSTEM_PROMPTS)}") from None


def build_messages(question: str, ability: str, system: str) -> list[dict[str, str]]:
    """Chat messages for one question: the system action prompt, then question + suffix."""
    if ability not in USER_SUFFIXES:
        raise ValueError(f"unknown ability {ability!r}; valid: {sorted(USER_SUFFIXES)}")
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": question + USER_SUFFIXES[ability]},
    ]


def render_prompt(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """Render chat messages with the tokenizer's own chat template, generation prompt on.

    transformers 5 returns a dict from ``apply_chat_template`` unless ``tokenize=False``, so we
    always render text and tokenize separately.
    """
    return tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False, add_generation_prompt=True)
