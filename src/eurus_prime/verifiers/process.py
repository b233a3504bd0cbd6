"""Ground-truth process labels for the worlds that have them.

The outcome verifiers say whether a response is right; a process labeller says *where* it first
went wrong, by re-executing its steps. Only worlds whose steps can be re-executed have one (the
chains world: ``data_source`` ``chains_*``; the countdown world: ``countdown_*``); every other row gets no label. The labels feed the
oracle process reward (``prime.process_reward: oracle``) and the PRM's first-error localisation.
"""

from __future__ import annotations

from eurus_prime.tasks.chainworld import steps as chain_steps
from eurus_prime.tasks.countdown import steps as countdown_steps

#: data_source prefix -> labeller of (prompt text, response), each returning a tasks.steps.StepLabel
#: (first_wrong_step, n_steps, spans, wrong_span).
LABELLERS = {
    "chains_": lambda prompt, response: chain_steps.label_steps(chain_steps.parse_expression(prompt), response),
    "countdown_": lambda prompt, response: countdown_steps.label_steps(
        countdown_steps.parse_question(prompt), response
    ),
}


def label_process(data_source: str, prompt_text: str, response: str):
    """The process label of one rollout, or None when its world has no step checker."""
    for prefix, labeller in LABELLERS.items():
        if data_source.startswith(prefix):
            return labeller(prompt_text, response)
    return None


def process_columns(data_sources, prompt_texts, responses) -> dict[str, list]:
    """The outcomes table's process-label columns: ``first_wrong_step`` (-1: every step holds;
    None: no step checker for the row's world), ``n_steps``, ``step_spans`` (character
    ``[start, end)`` of each step the response wrote) and ``wrong_span`` (the characters the first
    wrong step is blamed on)."""
    labels = [label_process(d, p, r) for d, p, r in zip(data_sources, prompt_texts, responses)]
    return {
        "first_wrong_step": [None if lb is None else lb.first_wrong_step for lb in labels],
        "n_steps": [None if lb is None else lb.n_steps for lb in labels],
        "step_spans": [None if lb is None else [list(s) for s in lb.spans] for lb in labels],
        "wrong_span": [None if lb is None or lb.wrong_span is None else list(lb.wrong_span) for lb in labels],
    }
