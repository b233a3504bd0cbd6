"""Is the math grader exact where it should be, and how far does it depart from plain math-verify?

    python benchmarks/verifier_exactness.py                                   # the generated corpus
    python benchmarks/verifier_exactness.py --rollouts 'data/05_rollouts/iter_*/rollouts.parquet'

1. The generated near-miss corpus (``eurus_prime.verifiers.near_miss``): near misses accepted and
   equivalents missed, by kind, for our grader (``grade_math``) and for plain
   ``math_verify.verify(parse(gold), parse(answer))`` on the same extracted answers.
2. With ``--rollouts``: every math row of those rollout tables (``response``, ``ground_truth``),
   graded both ways: how often the two agree, and the disagreements by kind.

Writes ``benchmarks/results/verifier_exactness.{json,md}``.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import ROOT, write_json, write_markdown  # noqa: E402

sys.path.insert(0, str(ROOT / "src"))

from eurus_prime.verifiers.math import extract_answer, grade_math  # noqa: E402
from eurus_prime.verifiers.near_miss import near_miss_corpus  # noqa: E402


def plain_math_verify(answer: str, truth: str) -> bool:
    """math-verify as its README calls it, on the answer we extracted (so only equivalence differs)."""
    from math_verify import parse, verify

    try:
        return bool(verify(parse(f"${truth}$"), parse(f"${answer}$")))
    except Exception:  # noqa: BLE001 - a parse or timeout failure grades wrong, as in math-verify's own use
        return False


def corpus_report(rows) -> dict:
    out = {
        "rows": len(rows),
        "near_misses": sum(not e for *_, e, _ in rows),
        "equivalents": sum(e for *_, e, _ in rows),
    }
    for name, grade in (
        ("ours", lambda a, t: grade_math(f"\\boxed{{{a}}}", t).correct),
        ("math_verify", plain_math_verify),
    ):
        t0 = time.perf_counter()
        wrong: Counter = Counter()
        examples = {}
        for answer, truth, expected, kind in rows:
            if grade(answer, truth) is not expected:
                key = f"{'accepted near miss' if not expected else 'missed equivalent'}: {kind}"
                wrong[key] += 1
                examples.setdefault(key, [answer, truth])
        out[name] = {
            "near_misses_accepted": sum(v for k, v in wrong.items() if k.startswith("accepted")),
            "equivalents_missed": sum(v for k, v in wrong.items() if k.startswith("missed")),
            "by_kind": dict(wrong.most_common()),
            "examples": examples,
            "seconds": round(time.perf_counter() - t0, 2),
        }
    agree = sum(grade_math(f"\\boxed{{{a}}}", t).correct == plain_math_verify(a, t) for a, t, _, _ in rows)
    out["agreement_with_math_verify"] = round(agree / len(rows), 4)
    return out


def rollouts_report(pattern: str) -> dict:
    import pandas as pd

    files = sorted(glob.glob(pattern))
    if not files:
        raise SystemExit(f"--rollouts {pattern!r}: no file matches")
    frame = pd.concat([pd.read_parquet(f, columns=["ability", "response", "ground_truth"]) for f in files])
    frame = frame[frame["ability"] == "math"]
    agree, both = 0, Counter()
    examples: dict = {}
    for response, truth in zip(frame["response"], frame["ground_truth"]):
        ours = grade_math(response, truth)
        answer = extract_answer(response)
        theirs = plain_math_verify(answer, truth) if answer else False
        agree += ours.correct == theirs
        key = f"ours {'correct' if ours.correct else 'wrong'}, math-verify {'correct' if theirs else 'wrong'}"
        both[key] += 1
        if ours.correct != theirs:
            examples.setdefault(key, []).append([answer, truth]) if len(examples.get(key, [])) < 5 else None
    return {
        "files": len(files),
        "pattern": pattern,
        "math_rows": len(frame),
        "agreement_with_math_verify": round(agree / max(len(frame), 1), 4),
        "outcomes": dict(both),
        "disagreement_examples": examples,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-magnitude", type=int, default=3)
    ap.add_argument(
        "--rollouts",
        action="append",
        default=[],
        metavar="GLOB",
        help="rollout tables (parquet) to grade both ways; repeatable, e.g. one per world",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/verifier_exactness")
    args = ap.parse_args()
    report = {
        "command": "python benchmarks/verifier_exactness.py " + " ".join(sys.argv[1:]),
        "corpus": corpus_report(near_miss_corpus(args.seed, args.per_magnitude)),
        "rollouts": [rollouts_report(p) for p in args.rollouts],
    }
    write_json(args.out.with_suffix(".json"), report)
    c = report["corpus"]
    lines = [
        "# Math grader exactness",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Generated corpus: {c['rows']} rows ({c['near_misses']} near misses, {c['equivalents']} equivalents), "
        "magnitudes 1 to 10^15, integers and fractions (`eurus_prime.verifiers.near_miss`).",
        "",
        "| grader | near misses accepted | equivalents missed | seconds |",
        "|---|---|---|---|",
    ]
    for name in ("ours", "math_verify"):
        lines.append(
            f"| {name} | {c[name]['near_misses_accepted']} | {c[name]['equivalents_missed']} | {c[name]['seconds']} |"
        )
    lines += [
        "",
        f"Agreement of our grader with plain `math_verify.verify` on the corpus: "
        f"{100 * c['agreement_with_math_verify']:.1f}%.",
        "",
        "math-verify's misgradings by kind:",
        "",
    ]
    lines += [
        f"- {k}: {v} (e.g. `{c['math_verify']['examples'][k][0]}` vs `{c['math_verify']['examples'][k][1]}`)"
        for k, v in c["math_verify"]["by_kind"].items()
    ] or ["- none"]
    for r in report["rollouts"]:
        lines += [
            "",
            f"Rollouts `{r['pattern']}` ({r['files']} files, {r['math_rows']} math rows): agreement with "
            f"plain math-verify {100 * r['agreement_with_math_verify']:.2f}%; "
            + ", ".join(f"{k}: {v}" for k, v in r["outcomes"].items()),
        ]
        for k, ex in r["disagreement_examples"].items():
            lines.append(f"- {k}, e.g. " + "; ".join(f"`{a}` vs `{t}`" for a, t in ex))
    write_markdown(args.out.with_suffix(".md"), lines, echo=True)


if __name__ == "__main__":
    main()
