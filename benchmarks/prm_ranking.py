"""How well does the implicit PRM rank best-of-N samples? Reads the latest `eval_suite_samples`.

Run `eurus-prime evaluate --checkpoint sft --checkpoint latest --best-of 8` first, then
`python benchmarks/prm_ranking.py [PROJECT]`. Per checkpoint and suite it prints the accuracy of the
answer picked by the PRM's summed score, by its per-token mean (a length-normalised variant) and by
the lowest score (a sanity floor), and, over the prompts whose N samples are part right, part
wrong, the share where the correct samples' mean PRM score is above the wrong ones' (0.5 = chance).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from eurus_prime.datasets.versions import latest_version


def ranking_report(samples: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (ckpt, suite), g in samples.groupby(["checkpoint", "suite"], sort=False):
        g = g.assign(per_token=g["prm_score"] / g["response_length"].clip(lower=1))
        pick = lambda col, how="idxmax": g.loc[getattr(g.groupby("index")[col], how)()]["correct"].mean()  # noqa: B023, E731
        mixed = g.groupby("index").filter(lambda x: 0 < x["correct"].mean() < 1)
        means = mixed.groupby(["index", "correct"])["prm_score"].mean().unstack()
        rows.append(
            {
                "checkpoint": ckpt,
                "suite": suite,
                "n_items": g["index"].nunique(),
                "prm_sum": pick("prm_score"),
                "prm_per_token": pick("per_token"),
                "prm_lowest": pick("prm_score", "idxmin"),
                "mixed_groups": len(means),
                "correct_scored_higher": float((means[True] > means[False]).mean()) if len(means) else float("nan"),
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    project = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    path = latest_version(project / "data/07_model_output/evaluation/eval_suite_samples.parquet")
    if path is None:
        sys.exit("no eval_suite_samples yet: run `eurus-prime evaluate --best-of 8` first")
    print(ranking_report(pd.read_parquet(path)).round(3).to_string(index=False))
