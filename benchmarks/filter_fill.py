"""Does the filtering loop fill the batch? Per iteration of a trained project: the groups trained on
against B, the draws it took, and how the buffered groups fared.

    make train                                        # in a fresh clone
    python benchmarks/filter_fill.py --project <that clone>

Reads the project's ``data/08_reporting/train_log.jsonl`` (what ``eurus-prime train`` logged) and
its parameters (B = ``prime.prompts_per_step``). The goal (issue 18): exactly B groups in at least
95% of the iterations of ``make train``; before the loop, one draw gave 28-52 of 64.
Results: ``benchmarks/results/filter_fill.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import ROOT, catalog_and_params, train_log, write_json, write_markdown  # noqa: E402

from eurus_prime.prime.config import PrimeConfig  # noqa: E402


def summarise(rows: list[dict], b: int) -> dict:
    selected = [int(r["filter/selected"]) for r in rows]
    draws = [int(r.get("draws", 1)) for r in rows]
    share = [r.get("filter/buffered_in_band_share") for r in rows]
    share = [s for s in share if s is not None and not math.isnan(s)]
    fresh_rate = []  # in-band share of the fresh prompts alone: all in band, less the buffered ones
    for r in rows:
        buffered, buffered_share = r.get("filter/buffered", 0), r.get("filter/buffered_in_band_share")
        if not buffered or buffered_share is None or math.isnan(buffered_share):
            continue
        in_band = r["filter/in_band_share"] * r["filter/drawn"] - buffered_share * buffered
        fresh_rate.append(in_band / max(r["filter/drawn"] - buffered, 1))
    return {
        "iterations": len(rows),
        "batch_B": b,
        "selected_per_iteration": selected,
        "full_batch_share": round(sum(s == b for s in selected) / len(rows), 4),
        "draws_per_iteration": draws,
        "draws_mean": round(sum(draws) / len(draws), 2),
        "prompts_drawn_per_iteration": [int(r["filter/drawn"]) for r in rows],
        "buffered_per_iteration": [int(r.get("filter/buffered", 0)) for r in rows],
        "buffered_in_band_share_mean": round(sum(share) / len(share), 3) if share else None,
        "fresh_in_band_share_mean": round(sum(fresh_rate) / len(fresh_rate), 3) if fresh_rate else None,
        "iteration_seconds": [round(float(r["seconds"]), 1) for r in rows],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, default=ROOT)
    ap.add_argument("--env", default=None)
    ap.add_argument("--label", default="make train")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/filter_fill")
    args = ap.parse_args()
    _, params = catalog_and_params(args.project, args.env)
    b = PrimeConfig.coerce(params["prime"]).prompts_per_step
    s = summarise(train_log(args.project), b)
    s["run"] = args.label
    write_json(args.out.with_suffix(".json"), s)
    lines = [
        "# Does the filtering loop fill the batch?",
        "",
        f"Run: {args.label} ({s['iterations']} iterations, B = {b}); `python benchmarks/filter_fill.py --project <it>`.",
        "",
        f"- Iterations that trained on exactly B groups: {100 * s['full_batch_share']:.0f}% (goal: >= 95%).",
        f"- Draws per iteration: mean {s['draws_mean']}, {s['draws_per_iteration']}.",
        f"- Buffered groups drawn first: {s['buffered_per_iteration']}; in band again: "
        f"{s['buffered_in_band_share_mean']} on average, against {s['fresh_in_band_share_mean']} of fresh prompts.",
        "",
        "```json",
        json.dumps(s, indent=1),
        "```",
    ]
    write_markdown(args.out.with_suffix(".md"), lines, echo=True)


if __name__ == "__main__":
    main()
