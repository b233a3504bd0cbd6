"""Rollout engines side by side: Hugging Face ``generate`` against eurus_prime's ``fast`` sampler.

    python benchmarks/rollout_engines.py            # ~4 minutes on 2 cores; needs the bootstrap's SFT model

The job is one iteration's rollout stage at the default config: the prompts iteration 0 draws
(``prime.prompts_per_step`` x ``oversample_factor``), ``samples_per_prompt`` samples each,
``max_response_length`` new tokens, batches of ``generation_batch_size``, on the SFT model.
Variants, run in turn inside each repeat (so machine noise hits all of them alike):

- ``hf``: ``model.generate`` with its default dynamic KV cache (the engine before ``fast``);
- ``hf-static``: ``model.generate(cache_implementation="static")``, a preallocated cache;
- ``fast``: ``engines/rollout/fast.py`` (the CPU default).

``torch.compile`` of the fast engine's decoding step is measured apart, on a small job (32 prompts
x 32 tokens, greedy): eager, the first compiled call (with the compilation) and a second one
(``--no-compile`` skips it).

Two measurements per variant: **greedy** (every engine writes the same tokens, checked, so time is
compared on identical work) and **sampling** at temperature 1 (tokens/s; engines draw different
random streams, so token counts differ a little). Results: ``benchmarks/results/rollout_engines.{json,md}``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import ROOT, write_json, write_markdown  # noqa: E402

from eurus_prime.engines.rollout import generate  # noqa: E402
from eurus_prime.eval.checkpoints import resolve  # noqa: E402
from eurus_prime.prime import rollouts as rollouts_lib  # noqa: E402
from eurus_prime.prime.config import PrimeConfig  # noqa: E402
from eurus_prime.tasks.prompting import render_prompt  # noqa: E402

VARIANTS = {
    "hf": dict(engine="hf"),
    "hf-static": dict(engine="hf", engine_options={"cache_implementation": "static"}),
    "fast": dict(engine="fast"),
}


def _run(model, tok, texts, cfg: PrimeConfig, temperature: float, variant: dict, fast_compile: bool = False):
    from eurus_prime.engines.rollout import fast

    start = time.perf_counter()
    if fast_compile:
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        samples = fast.sample(
            model,
            ids,
            max_new_tokens=cfg.max_response_length,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            temperature=temperature,
            batch_size=cfg.generation_batch_size,
            seed=0,
            compile=True,
        )
        tokens = [s.token_ids for s in samples]
    else:
        gens = generate(
            model,
            tok,
            texts,
            max_new_tokens=cfg.max_response_length,
            temperature=temperature,
            batch_size=cfg.generation_batch_size,
            seed=0,
            progress=False,
            **variant,
        )
        tokens = [g.token_ids for g in gens]
    return time.perf_counter() - start, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, default=ROOT)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile probe")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/rollout_engines")
    args = ap.parse_args()

    cfg = PrimeConfig()
    ckpt = resolve("sft", args.project).load()
    model, tok = ckpt.model.eval(), ckpt.tokenizer
    prompts = pd.read_parquet(args.project / "data/02_primary/prompts_train.parquet")
    drawn = rollouts_lib.sample_prompts(prompts, cfg, iteration=0)
    texts = [render_prompt(tok, list(p)) for p in drawn["prompt"] for _ in range(cfg.samples_per_prompt)]
    names = list(VARIANTS)
    print(
        f"{len(texts)} rollouts x {cfg.max_response_length} tokens, batches of {cfg.generation_batch_size}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; variants {names}",
        flush=True,
    )

    compile_probe = None
    if not args.no_compile:
        small = PrimeConfig(max_response_length=32, generation_batch_size=32)
        eager_s, eager_toks = _run(model, tok, texts[:32], small, 0.0, {"engine": "fast"})
        first_s, first_toks = _run(model, tok, texts[:32], small, 0.0, {}, fast_compile=True)
        second_s, _ = _run(model, tok, texts[:32], small, 0.0, {}, fast_compile=True)
        compile_probe = {
            "job": "32 prompts x 32 tokens, greedy",
            "eager_s": eager_s,
            "compiled_first_call_s": first_s,
            "compiled_second_call_s": second_s,
            "same_tokens": eager_toks == first_toks,
        }
        print(f"torch.compile probe: {compile_probe}", flush=True)

    times: dict[str, dict[str, list[float]]] = {n: {"greedy": [], "sample": []} for n in names}
    tokens: dict[str, dict[str, list[int]]] = {n: {"greedy": [], "sample": []} for n in names}
    greedy_out: dict[str, list] = {}
    for rep in range(args.repeats):
        for mode, temperature in (("greedy", 0.0), ("sample", 1.0)):
            for name in names:
                secs, toks = _run(model, tok, texts, cfg, temperature, VARIANTS[name])
                times[name][mode].append(secs)
                tokens[name][mode].append(sum(map(len, toks)))
                if mode == "greedy":
                    greedy_out.setdefault(name, toks)
                print(
                    f"repeat {rep} {mode:6s} {name:12s} {secs:6.2f} s  {tokens[name][mode][-1] / secs:8.0f} tok/s",
                    flush=True,
                )
    same = {n: greedy_out[n] == greedy_out["hf"] for n in names}
    rows = []
    for name in names:
        g = statistics.median(times[name]["greedy"])
        s_tps = [t / s for t, s in zip(tokens[name]["sample"], times[name]["sample"])]
        rows.append(
            {
                "variant": name,
                "greedy_s": g,
                "greedy_tokens": tokens[name]["greedy"][0],
                "greedy_same_tokens_as_hf": same[name],
                "greedy_speedup_vs_hf": statistics.median(times["hf"]["greedy"]) / g,
                "sample_s": statistics.median(times[name]["sample"]),
                "sample_tokens_per_s": statistics.median(s_tps),
            }
        )
    hf_tps = next(r["sample_tokens_per_s"] for r in rows if r["variant"] == "hf")
    for r in rows:
        r["sample_speedup_vs_hf"] = r["sample_tokens_per_s"] / hf_tps
    result = {
        "command": "python benchmarks/rollout_engines.py" + (" --no-compile" if args.no_compile else ""),
        "rollouts": len(texts),
        "max_new_tokens": cfg.max_response_length,
        "batch_size": cfg.generation_batch_size,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "compile_probe": compile_probe,
        "rows": rows,
        "raw_seconds": times,
        "raw_tokens": tokens,
    }
    write_json(args.out.with_suffix(".json"), result, indent=2)
    table = pd.DataFrame(rows)
    lines = [
        "# Rollout engines side by side",
        "",
        f"Command: `{result['command']}`",
        "",
        f"One iteration's rollout stage on the tiny world's SFT model: {len(texts)} rollouts "
        f"({len(drawn)} prompts x {cfg.samples_per_prompt}), up to {cfg.max_response_length} new tokens, "
        f"batches of {cfg.generation_batch_size}; torch {torch.__version__}, {torch.get_num_threads()} threads. "
        f"Median of {args.repeats} repeats, variants interleaved within each repeat.",
        "",
        "| variant | greedy s | greedy speed-up vs hf | same tokens as hf | sampling tokens/s | sampling speed-up vs hf |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['greedy_s']:.2f} | {r['greedy_speedup_vs_hf']:.2f}x | "
            f"{'yes' if r['greedy_same_tokens_as_hf'] else 'NO'} | {r['sample_tokens_per_s']:.0f} | "
            f"{r['sample_speedup_vs_hf']:.2f}x |"
        )
    if compile_probe is not None:
        lines += [
            "",
            f"`torch.compile` of the fast engine's decoding step ({compile_probe['job']}): eager "
            f"{compile_probe['eager_s']:.2f} s; compiled, first call {compile_probe['compiled_first_call_s']:.1f} s "
            f"(with the compilation), second call {compile_probe['compiled_second_call_s']:.1f} s; same tokens: "
            f"{compile_probe['same_tokens']}.",
        ]
    write_markdown(args.out.with_suffix(".md"), lines)
    print(table.round(3).to_string(index=False))
    print(f"wrote {args.out.with_suffix('.md')}")
    if not all(same.values()):
        sys.exit("an engine's greedy tokens differ from hf's: see the table")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
