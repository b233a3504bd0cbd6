"""Benchmark of the tiny world's bootstrap: time, SFT accuracy, the continued-SFT control, and
the headroom that sampling can reach.

    python benchmarks/bootstrap.py                      # defaults below; ~25 minutes on 2 cores
    python benchmarks/bootstrap.py --control-seconds 60 --seeds 0   # a quick look

What it does, on a fresh copy of the project (its own data/ and mlflow.db):
1. ``kedro run --pipelines=bootstrap`` with the default config, timed (wall clock);
2. reads the held-out greedy pass@1 of the delivered SFT checkpoint (``sft_eval_report``);
3. the control: continues SFT from that checkpoint on the same demonstrations, at a constant
   learning rate of ``--control-lr-ratio`` x the SFT peak, for ``--control-seconds`` (the length
   of an RL run), once per seed, and evaluates each on the same held-out test split;
4. headroom: samples ``--k`` responses per test prompt at temperature 1 and reports the mean
   sampled accuracy and pass@k; a gap between greedy and pass@k is room that reward can unlock.
Results go to ``benchmarks/results/bootstrap.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import ROOT, catalog_and_params, fresh_project, write_json, write_markdown  # noqa: E402


def _as(cls, value):
    return value if isinstance(value, cls) else cls(**value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default=None, help="Kedro environment of the world (default: the tiny world; chains)")
    ap.add_argument("--control-seconds", type=float, default=300.0)
    ap.add_argument("--control-lr-ratio", type=float, default=0.1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--keep", type=Path, default=None, help="keep the benchmark project here")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/bootstrap")
    ap.add_argument(
        "--reuse", action="store_true", help="with --keep: reuse that project's bootstrap (and its measured time)"
    )
    args = ap.parse_args()
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")

    workdir = Path(tempfile.mkdtemp(prefix="eurus_prime_bench_")) if args.keep is None else args.keep
    timing = workdir / ".bootstrap_seconds"
    if args.reuse and timing.exists():
        project, bootstrap_s = workdir, float(timing.read_text())
    else:
        project = fresh_project(workdir)
        kedro = str(Path(sys.executable).with_name("kedro"))
        start = time.perf_counter()
        subprocess.run(
            [kedro, "run", "--pipelines=bootstrap", *(["--env", args.env] if args.env else [])], cwd=project, check=True
        )
        bootstrap_s = time.perf_counter() - start
        timing.write_text(f"{bootstrap_s:.1f}\n")

    import pandas as pd
    import torch

    from eurus_prime.engines.sft import SFTConfig, split_examples, tokenize_demonstrations, train_sft
    from eurus_prime.eval.evaluation import EvalConfig, accuracy_report, evaluate_prompts
    from eurus_prime.tasks.prompting import render_prompt

    catalog, params = catalog_and_params(project, args.env)
    report = catalog.load("sft_eval_report")
    sft = catalog.load("sft_model")
    demos = catalog.load("sft_demonstrations")
    test = catalog.load("prompts_test")
    # Kedro hands typed parameters over as the dataclasses themselves.
    sft_cfg = _as(SFTConfig, params["sft"])
    eval_cfg = _as(EvalConfig, params["evaluation"])

    def acc(rep: pd.DataFrame) -> dict:
        rows = rep[rep["group"] != "data_source"]
        return {r.name: round(float(r.accuracy), 4) for r in rows.itertuples()}

    result = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "bootstrap_seconds": round(bootstrap_s, 1),
        "sft_accuracy": acc(report),
        "sft_accuracy_by_source": {
            r.name: round(float(r.accuracy), 4) for r in report.itertuples() if r.group == "data_source"
        },
        "n_test": int(report.query("group == 'all'")["n"].item()),
        "control": [],
    }
    print(json.dumps(result, indent=1), flush=True)

    tok = sft.tokenizer
    prompts = [render_prompt(tok, list(p)) for p in demos["prompt"]]
    examples = tokenize_demonstrations(
        tok, prompts, demos["response"].tolist(), sft.model.config.max_position_embeddings
    )
    for seed in args.seeds:
        model = copy.deepcopy(sft.model)
        cfg = dataclasses.replace(
            sft_cfg,
            **{
                "lr": sft_cfg.lr * args.control_lr_ratio,
                "min_lr_ratio": 1.0,
                "warmup_fraction": 0.0,
                "epochs": 100.0,
                "seed": 1000 + seed,
                "max_seconds": args.control_seconds,
                "eval_every": 10**9,
            },
        )
        train, val = split_examples(examples, sft_cfg)  # the same held-out demos as the SFT run
        hist = train_sft(model, train, val, tok.pad_token_id, cfg)
        rep = accuracy_report(evaluate_prompts(model, tok, test, eval_cfg))
        entry = {
            "seed": seed,
            "steps": int(hist[-1]["step"]),
            "accuracy": acc(rep),
            "gain_points": round(100 * (acc(rep)["all"] - result["sft_accuracy"]["all"]), 2),
        }
        result["control"].append(entry)
        print(json.dumps(entry), flush=True)

    sampled = []
    for j in range(args.k):
        cfg = dataclasses.replace(eval_cfg, temperature=1.0, seed=j)
        sampled.append(evaluate_prompts(sft.model, tok, test, cfg)["correct"].to_numpy())
    import numpy as np

    s = np.stack(sampled)
    result["headroom"] = {
        "k": args.k,
        "sampled_accuracy_t1": round(float(s.mean()), 4),
        f"pass@{args.k}_t1": round(float(s.any(axis=0).mean()), 4),
    }
    result["control_seconds"] = args.control_seconds
    result["control_lr"] = sft_cfg.lr * args.control_lr_ratio
    result["mean_control_gain_points"] = (
        round(float(np.mean([c["gain_points"] for c in result["control"]])), 2) if result["control"] else None
    )

    write_json(args.out.with_suffix(".json"), result)
    md = [
        f"# Bootstrap benchmark ({args.env or 'tiny'} world)",
        "",
        f"Command: `python benchmarks/bootstrap.py {'--env ' + args.env + ' ' if args.env else ''}"
        f"--control-seconds {args.control_seconds:g} "
        f"--seeds {' '.join(map(str, args.seeds))} --k {args.k}`",
        "",
        f"- bootstrap wall time: {result['bootstrap_seconds']} s (`kedro run --pipelines=bootstrap"
        f"{' --env ' + args.env if args.env else ''}`)",
        f"- held-out items: {result['n_test']}",
        "- SFT greedy pass@1: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in result["sft_accuracy"].items()),
        f"- continued-SFT control ({args.control_seconds:g} s at lr {result['control_lr']:g}, per seed): "
        + ", ".join(f"seed {c['seed']}: {c['gain_points']:+.2f} pts" for c in result["control"]),
        f"- headroom: sampled accuracy at T=1 {100 * result['headroom']['sampled_accuracy_t1']:.1f}%, "
        f"pass@{args.k} at T=1 {100 * result['headroom'][f'pass@{args.k}_t1']:.1f}%",
        "",
        "Per data source (SFT greedy):",
        "",
        *[f"- {k}: {100 * v:.1f}%" for k, v in result["sft_accuracy_by_source"].items()],
    ]
    write_markdown(args.out.with_suffix(".md"), md, echo=True)


if __name__ == "__main__":
    main()
