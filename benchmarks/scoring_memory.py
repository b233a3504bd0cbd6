"""Peak memory and time of one scoring micro-batch: output head by token chunks vs full logits.

    python benchmarks/scoring_memory.py        # ~1 minute

A real vocabulary makes the output head the memory peak of a log-prob pass: (rows, length, vocab)
float logits, and as many again for ``log_softmax``. This builds a random one-layer Qwen2 with
SmolLM2's vocabulary (49,152) and scores one micro-batch of 16 rows x (64 prompt + 512 response)
tokens with ``engines.logprobs.sequence_logprobs``, each variant in a fresh process (peak RSS is
per process):

- ``chunked``: the default, the head applied to 2**24 logits (341 positions) at a time;
- ``full``: the model's own ``.logits`` + ``log_softmax`` (the fallback for other architectures);

without gradients (the old-policy / PRM / reference passes) and with them (the PRM and policy
updates: backward included). Results: ``benchmarks/results/scoring_memory.{json,md}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import RESULTS, PeakRSS, random_qwen2, run_child, write_json, write_markdown  # noqa: E402

ROWS, PROMPT, RESPONSE, VOCAB = 16, 64, 512, 49152


def _child(variant: str, grad: bool) -> None:
    import torch

    from eurus_prime.engines import logprobs

    torch.manual_seed(0)
    model = random_qwen2(vocab=VOCAB, hidden=64, mlp=128, layers=1, heads=4, kv_heads=2, max_len=1024)
    ids = torch.randint(0, VOCAB, (ROWS, PROMPT + RESPONSE))
    mask = torch.ones_like(ids)
    if variant == "full":
        logprobs._body_and_head = lambda m: None
    with PeakRSS() as used:
        out = logprobs.sequence_logprobs(model, ids, mask, RESPONSE, chunk_rows=ROWS, grad=grad)
        if grad:
            out.sum().backward()
    print(json.dumps({"variant": variant, "grad": grad, **used.as_dict()}))


def main() -> None:
    rows = []
    for grad in (False, True):
        for variant in ("chunked", "full"):
            rows.append(run_child(__file__, variant, str(int(grad))))
            print(rows[-1], flush=True)
    logits_mb = ROWS * RESPONSE * VOCAB * 4 / 2**20
    lines = [
        "# Scoring memory: output head by chunks vs full logits",
        "",
        "Command: `python benchmarks/scoring_memory.py`",
        "",
        f"One micro-batch of {ROWS} rows x ({PROMPT} + {RESPONSE}) tokens, vocabulary {VOCAB} (one float32 "
        f"logits tensor of the responses: {logits_mb:.0f} MB), random one-layer Qwen2, one process per row.",
        "",
        "| pass | variant | peak RSS MB | added by the pass MB | seconds |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {'with gradients (backward included)' if r['grad'] else 'no gradients'} | {r['variant']} | "
            f"{r['peak_rss_mb']:.0f} | {r['added_mb']:.0f} | {r['seconds']:.2f} |"
        )
    write_json(
        RESULTS / "scoring_memory.json",
        {"command": "python benchmarks/scoring_memory.py", "rows": rows, "logits_mb": logits_mb},
        indent=2,
    )
    write_markdown(RESULTS / "scoring_memory.md", lines, echo=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], bool(int(sys.argv[3])))
    else:
        main()
