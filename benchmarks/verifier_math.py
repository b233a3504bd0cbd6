"""Math verifier throughput: ``grade_math`` checks per second on a realistic mix.

Mix: 80% simple answers (tiny-world word problems graded from the demonstrator's Eurus-style
traces, whose boxed integers are right or wrong, plus fraction/decimal answers), 20% symbolic LaTeX
answers (expressions, equations, intervals, sets, tuples, matrices, roots; right and wrong).
Measured in one process and with a ``ProcessPoolExecutor`` of 2 workers, each with the slow-check
result cache on (the default: RL samples the same prompt several times, so answers repeat) and
off (``SLOW_CACHE_SIZE = 0``: every symbolic pair pays math-verify/sympy; math-verify's own parse
caches still apply).

    .venv/bin/python benchmarks/verifier_math.py [--n 4000] [--workers 2]

Writes benchmarks/results/verifier_math.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import RESULTS, ROOT, write_json, write_markdown  # noqa: E402

sys.path.insert(0, str(ROOT / "src"))

SYMBOLIC = [
    ("\\frac{1}{2}x", "x/2"),
    ("2x", "x/2"),
    ("x^2+2x+1", "(x+1)^2"),
    ("x^2-1", "(x+1)^2"),
    ("(1,2)", "(1,2)"),
    ("(2,1)", "(1,2)"),
    ("[1,2)", "[1,2]"),
    ("(-\\infty,3]", "(-\\infty,3]"),
    ("\\{1,2,3\\}", "\\{3,2,1\\}"),
    ("\\{1,2\\}", "\\{1,3\\}"),
    ("y=2x+1", "y=1+2x"),
    ("y=2x-1", "y=2x+1"),
    ("\\frac{n(n+1)}{2}", "\\frac{n^2+n}{2}"),
    ("2(a+b)", "2a+2b"),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}"),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt{3}}{2}"),
    ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}"),
    ("3\\sqrt{2}", "\\sqrt{18}"),
    ("2\\pi", "\\pi"),
    ("a-b", "b-a"),
]


def build_mix(n: int, seed: int = 0) -> list[tuple[str, str]]:
    from eurus_prime.tasks.tinyworld.math_tasks import demonstrate_math, sample_math_task

    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []
    for _ in range(n):
        u = rng.random()
        if u < 0.65:  # tiny-world trace, right or wrong (misconceptions)
            task = sample_math_task(rng, rng.randint(1, 4))
            rows.append((demonstrate_math(task, rng, 0.6), str(task.answer)))
        elif u < 0.80:  # fractions / decimals / thousands / percentages
            p, q = rng.randint(1, 50), rng.randint(2, 60)
            pred = rng.choice(
                [
                    f"\\frac{{{p}}}{{{q}}}",
                    f"{p}/{q}",
                    f"{p / q:.4f}",
                    f"\\dfrac{{{p}}}{{{q}}}",
                    f"{p * 1000:,}",
                    f"{p}\\%",
                ]
            )
            truth = rng.choice([f"\\frac{{{p}}}{{{q}}}", f"{p * 1000}", f"{p}", f"\\frac{{{p + 1}}}{{{q}}}"])
            rows.append((f"Thus the result is \\boxed{{{pred}}}.", truth))
        else:
            pred, truth = rng.choice(SYMBOLIC)
            rows.append((f"[OUTPUT]\n\nThe answer is \\boxed{{{pred}}}", truth))
    return rows


def _unique_symbolic(rng: random.Random) -> tuple[str, str]:
    """A symbolic pair with fresh coefficients (no two rows alike, so no cache of any kind helps)."""
    a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(2, 9)
    off = rng.choice([0, 0, 1])  # a third of the pairs are wrong by one coefficient
    return rng.choice(
        [
            (f"{a}(x+{b})", f"{a}x+{a * b + off}"),
            (f"(x+{a})^2", f"x^2+{2 * a + off}x+{a * a}"),
            (f"\\frac{{x}}{{{a}}}", f"\\frac{{1}}{{{a + off}}}x"),
            (f"[{a},{a + b})", f"[{a},{a + b}{']' if off else ')'}"),
            (f"\\{{{a},{b},{c}\\}}", f"\\{{{c},{b + off},{a}\\}}"),
            (f"y={a}x+{b}", f"y={b + off}+{a}x"),
            (
                f"\\begin{{pmatrix}}{a}&{b}\\\\{c}&1\\end{{pmatrix}}",
                f"\\begin{{pmatrix}}{a}&{b}\\\\{c + off}&1\\end{{pmatrix}}",
            ),
            (f"{c}\\sqrt{{{b}}}", f"\\sqrt{{{c * c * b + off}}}"),
            (f"{a}a-{b}b", f"-{b}b+{a + off}a"),
        ]
    )


def build_unique_mix(n: int, seed: int = 1) -> list[tuple[str, str]]:
    """The same shares as :func:`build_mix`, but every symbolic pair has fresh coefficients."""
    rng = random.Random(seed)
    rows = build_mix(n, seed)
    for i, (response, _truth) in enumerate(rows):
        if response.startswith("[OUTPUT]\n\nThe answer is"):
            pred, truth = _unique_symbolic(rng)
            rows[i] = (f"[OUTPUT]\n\nThe answer is \\boxed{{{pred}}}", truth)
    return rows


def _set_cache(cache: bool) -> None:
    import eurus_prime.verifiers.math as vm

    if not cache:
        vm.SLOW_CACHE_SIZE = 0
        vm._CACHE.clear()  # noqa: SLF001


def _grade_chunk(rows, cache):
    from eurus_prime.verifiers.math import grade_math

    _set_cache(cache)
    return [grade_math(r, t).rule for r, t in rows]


def _warm(_=None):
    from eurus_prime.verifiers.math import grade_math

    grade_math("\\boxed{\\frac{1}{2}x}", "x/2")  # imports math-verify/sympy
    return os.getpid()


def run_single(rows, cache: bool) -> dict:
    _warm()
    import eurus_prime.verifiers.math as vm

    vm._CACHE.clear()  # noqa: SLF001 - start cold even with the cache on
    start = time.perf_counter()
    rules = _grade_chunk(rows, cache)
    wall = time.perf_counter() - start
    return {
        "mode": "single process",
        "cache": cache,
        "checks": len(rows),
        "wall_s": round(wall, 3),
        "checks_per_s": round(len(rows) / wall, 1),
        "rules": {r: rules.count(r) for r in sorted(set(rules))},
    }


def run_pool(rows, cache: bool, workers: int) -> dict:
    import multiprocessing

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
        list(pool.map(_warm, range(workers * 2)))
        chunks = [rows[i :: workers * 2] for i in range(workers * 2)]
        start = time.perf_counter()
        rules = [r for part in pool.map(_grade_chunk, chunks, [cache] * len(chunks)) for r in part]
        wall = time.perf_counter() - start
    return {
        "mode": f"ProcessPoolExecutor({workers})",
        "cache": cache,
        "checks": len(rows),
        "wall_s": round(wall, 3),
        "checks_per_s": round(len(rows) / wall, 1),
        "rules": {r: rules.count(r) for r in sorted(set(rules))},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    rows = build_mix(args.n)
    symbolic = sum(1 for r, _ in rows if r.startswith("[OUTPUT]\n\nThe answer is"))
    results = []
    for cache in (True, False):
        results.append(run_single(rows, cache))
        print(results[-1], flush=True)
        results.append(run_pool(rows, cache, args.workers))
        print(results[-1], flush=True)
    unique = build_unique_mix(args.n)
    for runner in (lambda: run_single(unique, False), lambda: run_pool(unique, False, args.workers)):
        results.append({**runner(), "mix": "unique"})  # every symbolic pair new: nothing to reuse
        print(results[-1], flush=True)
    from importlib.metadata import version

    import math_verify  # noqa: F401

    out = {
        "command": f".venv/bin/python benchmarks/verifier_math.py --n {args.n} --workers {args.workers}",
        "checks": len(rows),
        "symbolic_share": round(symbolic / len(rows), 3),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "math_verify": version("math-verify"),
        "goal_checks_per_s": 3000,
        "results": results,
    }
    write_json(RESULTS / "verifier_math.json", out, indent=2)
    lines = [
        "# Math verifier throughput (`grade_math`)",
        "",
        f"Command: `{out['command']}` ({out['cpu_count']} CPUs, Python {out['python']}, "
        f"math-verify {out['math_verify']}).",
        "",
        f"Mix: {len(rows)} checks, {out['symbolic_share']:.0%} symbolic LaTeX pairs, the rest tiny-world "
        "traces and fraction/decimal/percent answers. Goal: >= 3,000 uncached checks/s on 2 cores.",
        "",
        "Mix `unique`: the same, but every symbolic pair has fresh coefficients, so no cache of any "
        "kind (ours or math-verify's parse caches) can help: the uncached number.",
        "",
        "| mix | mode | slow-check cache | checks/s | wall s | rules |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.get('mix', 'repeating')} | {r['mode']} | {'on' if r['cache'] else 'off'} | "
            f"{r['checks_per_s']:,.0f} | {r['wall_s']} | {r['rules']} |"
        )
    write_markdown(RESULTS / "verifier_math.md", lines)


if __name__ == "__main__":
    main()
