"""The tiny world's imitation ceiling: the accuracy of a *perfect* imitator of the demonstrator.

With ``misconception_rate`` > 0.5, the most likely demonstration of a misconceived step is the
wrong one, so a perfect greedy imitator applies every misconception. This script grades exactly
those demonstrations (no model involved) on fresh tasks of each data source. The gap between
this ceiling and 100% is what only an outcome reward can unlock; SFT alone cannot pass it.

    python benchmarks/imitation_ceiling.py [--n 500]   # seconds; writes benchmarks/results/
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import yaml

from eurus_prime.tasks.tinyworld.code_tasks import TEMPLATES, demonstrate_code, sample_code_task
from eurus_prime.tasks.tinyworld.math_tasks import demonstrate_math, sample_math_task
from eurus_prime.tasks.tinyworld.world import TinyWorldConfig
from eurus_prime.verifiers import verify_all

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import RESULTS, ROOT, write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500, help="tasks per data source")
    ap.add_argument("--seed", type=int, default=123)
    args = ap.parse_args()
    params = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text())["tinyworld"]
    cfg = TinyWorldConfig(**params)
    rng = random.Random(args.seed)
    result = {}
    for d in cfg.math_difficulties:
        tasks = [sample_math_task(rng, d, cfg.math_max_value, cfg.math_max_operand) for _ in range(args.n)]
        verdicts = verify_all(
            ["math"] * args.n, [demonstrate_math(t, rng, 1.0) for t in tasks], [str(t.answer) for t in tasks]
        )
        result[f"tiny_math_d{d}"] = sum(v.correct for v in verdicts) / args.n
    for d in sorted({t.difficulty for t in TEMPLATES}):
        templates = [t for t in TEMPLATES if t.difficulty == d]
        tasks = [sample_code_task(rng, rng.choice(templates)) for _ in range(args.n)]
        verdicts = verify_all(
            ["code"] * args.n, [demonstrate_code(t, rng, 1.0) for t in tasks], [t.ground_truth for t in tasks]
        )
        result[f"tiny_code_d{d}"] = sum(v.correct for v in verdicts) / args.n
    write_json(RESULTS / "imitation_ceiling.json", {"n_per_source": args.n, "ceiling": result})
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
