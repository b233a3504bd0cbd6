"""Memory-aware micro-batching: peak memory and time of a scoring pass, rows-only vs a token cap.

    python benchmarks/micro_batching.py        # ~2 minutes

PRIME's responses are of very different lengths (Eurus-2: from a few hundred tokens to the 3,072
limit), and a forward pass's memory follows its packed tokens, rows x (longest prompt + longest
response). A row count alone must be set for the longest rows, which leaves the short ones going
through a few at a time. ``prime.micro_batch_tokens`` caps the tokens as well, so one setting is
safe for long rows and fast for short ones (``prime.batch.budget_micro_batches``).

A random 4-layer Qwen2 with SmolLM2's vocabulary scores (``prime.batch.score_responses``, no
gradients, as the old-policy, PRM and reference passes do) 96 responses with lognormal lengths
(median ~200, capped at 1,536 tokens) after 64-token prompts, each variant in a fresh process
(peak RSS is per process):

- ``rows-16``: 16 rows per pass, no cap: fast, and the peak of 16 longest rows;
- ``rows-4``: 4 rows per pass, what a row count must be for 4 longest rows to fit;
- ``rows-16+tokens``: 16 rows, capped at 4 x the longest sequence's tokens.

The log-probs of all three are compared (they must agree). Results:
``benchmarks/results/micro_batching.{json,md}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import RESULTS, PeakRSS, random_qwen2, run_child, write_json, write_markdown  # noqa: E402

ROWS, PROMPT, LONGEST, VOCAB = 96, 64, 1536, 49152
VARIANTS = {"rows-16": (16, None), "rows-4": (4, None), "rows-16+tokens": (16, 4 * (PROMPT + LONGEST))}


def _lengths() -> list[int]:
    import numpy as np

    rng = np.random.default_rng(0)
    return [int(x) for x in np.clip(rng.lognormal(np.log(200), 0.9, ROWS), 16, LONGEST)]


def _child(variant: str, out_path: str) -> None:
    import numpy as np
    import torch

    from eurus_prime.prime.batch import budget_micro_batches, score_responses

    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = random_qwen2(vocab=VOCAB, hidden=256, mlp=768, layers=4, heads=8, kv_heads=2, max_len=2048)
    lengths = _lengths()
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(1, VOCAB, (PROMPT,), generator=gen).tolist() for _ in lengths]
    responses = [torch.randint(1, VOCAB, (n,), generator=gen).tolist() for n in lengths]
    rows, tokens = VARIANTS[variant]
    order = sorted(range(ROWS), key=lambda i: len(prompts[i]) + len(responses[i]))
    passes = len(budget_micro_batches(order, prompts, responses, rows, tokens))
    with PeakRSS() as used:
        out = score_responses(model, prompts, responses, pad_id=0, micro_batch=rows, max_tokens=tokens)
    np.save(out_path, np.concatenate(out))
    print(json.dumps({"variant": variant, "rows": rows, "max_tokens": tokens, "passes": passes, **used.as_dict()}))


def main() -> None:
    import tempfile

    import numpy as np

    results, logps = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in VARIANTS:
            path = f"{tmp}/{variant}.npy"
            results.append(run_child(__file__, variant, path))
            logps[variant] = np.load(path)
            print(results[-1], flush=True)
    ref = logps["rows-16"]
    for r in results:
        r["max_abs_logp_diff_vs_rows16"] = float(np.abs(logps[r["variant"]] - ref).max())
    lengths = _lengths()
    summary = {
        "rows": ROWS,
        "prompt_tokens": PROMPT,
        "response_tokens": {"median": float(np.median(lengths)), "max": max(lengths), "mean": float(np.mean(lengths))},
        "results": results,
    }
    write_json(RESULTS / "micro_batching.json", summary, indent=2)
    lines = [
        "# Memory-aware micro-batching (`python benchmarks/micro_batching.py`)",
        "",
        f"{ROWS} responses (median {np.median(lengths):.0f}, max {max(lengths)} tokens) after {PROMPT}-token "
        "prompts, scored without gradients by a random 4-layer Qwen2 (hidden 256, vocabulary 49,152); one "
        "fresh process per variant.",
        "",
        "| variant | rows cap | token cap | passes | seconds | added peak RSS (MB) | max abs log-prob diff |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['variant']} | {r['rows']} | {r['max_tokens'] or '-'} | {r['passes']} | {r['seconds']:.2f} | "
            f"{r['added_mb']:.0f} | {r['max_abs_logp_diff_vs_rows16']:.1e} |"
        )
    write_markdown(RESULTS / "micro_batching.md", lines, echo=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
    else:
        main()
