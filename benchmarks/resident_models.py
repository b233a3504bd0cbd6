"""Resident models: what a campaign reads from disk, and how long its loads take, with the
checkpoint slots on (the default) and off (``EURUS_PRIME_RESIDENT=0``, every stage reads its
checkpoints, as before issue 19), side by side on copies of one SFT model.

    python benchmarks/resident_models.py --sft-from <a bootstrapped project> --env chains --iterations 4

Per mode: checkpoint loads read from disk and served from memory per iteration (the train log's
``resident/read`` and ``resident/served``), the bytes those reads cost (the checkpoint folder's
size), the hooks' dataset load time (``time/io_load``, tables included) and the iteration wall
time. The two runs are checked to train the same thing (the last iteration's rollouts and the
final policy's weights are equal). The modes run one after the other, alternating order over
``--repeats``; wall times on this shared machine are context, the reads are the result.
Results: ``benchmarks/results/resident_models.{json,md}``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _project import (  # noqa: E402
    RESULTS,
    fresh_project,
    iteration_table,
    run_logged,
    train_command,
    train_log,
    write_json,
    write_markdown,
)

MODES = {"disk": "0", "resident": "1"}


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def checkpoint_bytes(project: Path, iteration: int) -> int:
    """Bytes of the policy checkpoint an iteration saved (weights, tokenizer, optimizer state)."""
    folder = project / f"data/06_models/policy/iter_{iteration:04d}"
    return _folder_bytes(max(folder.iterdir()))


def _same_training(a: Path, b: Path, iterations: int) -> bool:
    import torch
    from safetensors.torch import load_file

    last = iterations - 1
    ra, rb = iteration_table(a, last, "rollouts"), iteration_table(b, last, "rollouts")
    if ra["response_ids"].map(list).tolist() != rb["response_ids"].map(list).tolist():
        return False
    name = f"iter_{iterations:04d}"
    wa, wb = (
        load_file(max((p / "data/06_models/policy" / name).iterdir()) / name / "model.safetensors") for p in (a, b)
    )
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft-from", type=Path, required=True, help="a bootstrapped project (its SFT model is copied)")
    ap.add_argument("--env", default=None)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=1, help="runs per mode, alternating which goes first")
    ap.add_argument("--params", default="prime.eval_every=1")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=RESULTS / "resident_models")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="eurus_prime_resident_"))
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    projects: dict[str, Path] = {}
    for r in range(args.repeats):
        for mode in list(MODES) if r % 2 == 0 else list(MODES)[::-1]:
            project = fresh_project(work / f"{mode}_{r}", with_sft_from=args.sft_from)
            cmd = train_command(project, args.iterations, args.params, env=args.env)
            rc, wall, load = run_logged(cmd, project, env={"EURUS_PRIME_RESIDENT": MODES[mode]})
            if rc != 0:
                raise SystemExit(f"{mode} run failed: see {project / 'train.log'}")
            log = train_log(project)
            runs[mode].append(
                {
                    "wall_s": wall,
                    "other_cores": load.other_cores if load else None,
                    "read": [r_["resident/read"] for r_ in log],
                    "served": [r_["resident/served"] for r_ in log],
                    "io_load_s": [r_.get("time/io_load", 0.0) for r_ in log],
                    "iteration_s": [r_["seconds"] for r_ in log],
                    "checkpoint_bytes": checkpoint_bytes(project, args.iterations),
                }
            )
            projects[mode] = project
            print(mode, runs[mode][-1], flush=True)
    same = _same_training(projects["disk"], projects["resident"], args.iterations)

    def per_iteration(mode: str, key: str, skip_first: bool = False) -> float:
        values = [v for run in runs[mode] for v in (run[key][1:] if skip_first else run[key])]
        return statistics.mean(values)

    size = runs["disk"][0]["checkpoint_bytes"]
    summary = {
        "iterations": args.iterations,
        "repeats": args.repeats,
        "env": args.env,
        "same_training": same,
        "checkpoint_mib": size / 2**20,
        "modes": {
            mode: {
                "reads_per_iteration": per_iteration(mode, "read"),
                "reads_per_iteration_after_first": per_iteration(mode, "read", True),
                "served_per_iteration": per_iteration(mode, "served"),
                "read_mib_per_iteration_after_first": per_iteration(mode, "read", True) * size / 2**20,
                "io_load_s_per_iteration": per_iteration(mode, "io_load_s"),
                "iteration_s": per_iteration(mode, "iteration_s"),
                "other_cores": [run["other_cores"] for run in runs[mode]],
            }
            for mode in MODES
        },
        "runs": runs,
    }
    d, m = summary["modes"]["disk"], summary["modes"]["resident"]
    lines = [
        "# Resident models: checkpoint reads with the slots off and on",
        "",
        f"Command: `python benchmarks/resident_models.py --sft-from <project>{' --env ' + args.env if args.env else ''} "
        f"--iterations {args.iterations} --repeats {args.repeats}` (params `{args.params}`).",
        "",
        f"Both runs trained the same thing (last rollouts and final policy weights equal): **{same}**. "
        f"One policy checkpoint (weights, tokenizer, AdamW state) is {size / 2**20:.2f} MiB.",
        "",
        "| per iteration | disk (`EURUS_PRIME_RESIDENT=0`) | resident (default) |",
        "|---|---:|---:|",
        f"| checkpoint loads read from disk | {d['reads_per_iteration']:.1f} | {m['reads_per_iteration']:.1f} |",
        f"| ... after iteration 0 | {d['reads_per_iteration_after_first']:.1f} | "
        f"{m['reads_per_iteration_after_first']:.1f} |",
        f"| checkpoint loads served from memory | {d['served_per_iteration']:.1f} | {m['served_per_iteration']:.1f} |",
        f"| MiB read after iteration 0 (reads x one policy checkpoint) | {d['read_mib_per_iteration_after_first']:.1f} | "
        f"{m['read_mib_per_iteration_after_first']:.1f} |",
        f"| dataset load time, s (`time/io_load`, tables too) | {d['io_load_s_per_iteration']:.2f} | "
        f"{m['io_load_s_per_iteration']:.2f} |",
        f"| iteration wall time, s (shared machine: context) | {d['iteration_s']:.1f} | {m['iteration_s']:.1f} |",
        "",
        "At 7B every read is the bf16 weights (15 GB) and, for a model being trained, its AdamW state: the "
        "reads avoided per iteration times that size is what the slots save there (`eurus-prime plan`).",
    ]
    write_json(args.out.with_suffix(".json"), summary)
    write_markdown(args.out.with_suffix(".md"), lines, echo=True)


if __name__ == "__main__":
    main()
