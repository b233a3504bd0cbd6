"""SFT validation curves side by side: how far apart do runs of one SFT end?

    python benchmarks/sft_curves.py --run "seed 0=/path/to/project" --run "seed 1=/path/to/other" \
        --every 500 --out benchmarks/results/chains_sft_seeds

Each ``--run LABEL=PROJECT`` names a project that has run the ``sft`` pipeline (``kedro run --env
chains --pipelines=sft --params=sft.seed=N``, or the bootstrap); its newest ``sft_history`` table
(``data/08_reporting/sft_history.parquet``) gives the validation loss the SFT measured every
``sft.eval_every`` steps. The table has a column per run: the loss at every ``--every``-th step,
the last measurement and the best (the weights the SFT keeps). Results:
``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import RESULTS, write_json, write_markdown  # noqa: E402


def _history(project: Path):
    import pandas as pd

    root = project / "data/08_reporting/sft_history.parquet"
    versions = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not versions:
        raise SystemExit(f"{root}: no sft_history version; run the sft pipeline in {project} first")
    return pd.read_parquet(versions[-1] / "sft_history.parquet"), versions[-1].name


def _run(text: str) -> tuple[str, Path]:
    label, sep, path = text.partition("=")
    if not sep or not label or not path:
        raise SystemExit(f"--run {text!r}: expected LABEL=PROJECT")
    return label, Path(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, type=_run, help="LABEL=PROJECT (repeat)")
    ap.add_argument("--every", type=int, default=500, help="show the loss at every this-many-th step")
    ap.add_argument("--out", type=Path, default=RESULTS / "sft_curves")
    args = ap.parse_args()
    runs = {}
    for label, project in args.run:
        frame, version = _history(project)
        frame = frame[frame["step"] > 0]
        runs[label] = {
            "project": str(project),
            "version": version,
            "steps": [int(s) for s in frame["step"]],
            "val_loss": [float(v) for v in frame["val_loss"]],
            "last": float(frame["val_loss"].iloc[-1]),
            "best": float(frame["val_loss"].min()),
            "best_step": int(frame.loc[frame["val_loss"].idxmin(), "step"]),
        }
    steps = sorted({s for r in runs.values() for s in r["steps"] if s % args.every == 0})
    header = "| step | " + " | ".join(runs) + " |"
    lines = [header, "|" + "---|" * (len(runs) + 1)]
    for s in steps:
        cells = []
        for r in runs.values():
            by_step = dict(zip(r["steps"], r["val_loss"]))
            cells.append(f"{by_step[s]:.4f}" if s in by_step else "")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append("| last | " + " | ".join(f"{r['last']:.4f} (step {r['steps'][-1]})" for r in runs.values()) + " |")
    lines.append(
        "| best (kept) | " + " | ".join(f"{r['best']:.4f} (step {r['best_step']})" for r in runs.values()) + " |"
    )
    command = "python benchmarks/sft_curves.py " + " ".join(f'--run "{k}={v["project"]}"' for k, v in runs.items())
    write_json(args.out.with_suffix(".json"), {"command": command, "runs": runs})
    write_markdown(
        args.out.with_suffix(".md"),
        ["# SFT validation loss, run by run (benchmarks/sft_curves.py)", "", f"Command: `{command}`", "", *lines],
        echo=True,
    )


if __name__ == "__main__":
    main()
