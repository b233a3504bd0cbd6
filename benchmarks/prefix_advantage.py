"""Which way do the advantages push the correct prefix a group's samples share?

    python benchmarks/prefix_advantage.py /tmp/ca/rloo_s0 /tmp/ca/oracle_s0 /tmp/ca/prime_s0

For each trained chains-world project (``benchmarks/credit_assignment.py --workdir``), in
iterations 3, 6, 9, 12 and 15: every selected prompt group with at least one right and one wrong
sample; its *correct prefix*, the tokens before the earliest first-wrong step of its wrong samples;
the advantages of the group's samples summed per prefix token, then averaged. Outcome-only RLOO
gives about 0 there by construction (the leave-one-out baselines cancel on tokens every sample
shares); a positive value reinforces the correct prefix, a negative one unlearns it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from eurus_prime.datasets.versions import latest_version
from eurus_prime.tasks.chainworld.steps import span_tokens
from eurus_prime.tasks.tokens import token_pieces

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import iteration_table  # noqa: E402

ITERATIONS = (3, 6, 9, 12, 15)
KEY = ["prompt_id", "sample_idx"]


def prefix_advantage(project: Path) -> tuple[float, int]:
    """(mean summed advantage per correct-prefix token, groups measured)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(latest_version(project / "data/06_models/sft_model"))
    values = []
    for it in ITERATIONS:
        rows = (
            iteration_table(project, it, "advantages")
            .merge(iteration_table(project, it, "rollouts")[KEY + ["response_ids"]], on=KEY)
            .merge(iteration_table(project, it, "outcomes")[KEY + ["first_wrong_step", "step_spans"]], on=KEY)
        )
        for _, group in rows.groupby("prompt_id", sort=False):
            if not ((group["outcome"] >= 1).any() and (group["first_wrong_step"] >= 0).any()):
                continue
            starts = []
            for row in group[group["first_wrong_step"] >= 0].itertuples():
                k = int(row.first_wrong_step)
                blamed = (
                    span_tokens(token_pieces(tok, row.response_ids), tuple(row.step_spans[k]))
                    if k < len(row.step_spans)
                    else []
                )
                starts.append(blamed[0] if blamed else len(row.response_ids))
            cut = min(min(starts), *(len(a) for a in group["advantages"]))
            if cut >= 2:
                values.append(float(np.sum([np.asarray(a[:cut]) for a in group["advantages"]], axis=0).mean()))
    return float(np.mean(values)), len(values)


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        mean, n = prefix_advantage(Path(folder))
        print(f"{folder}: {mean:+.3f} summed advantage per correct-prefix token ({n} groups)")
