"""Disk: checkpoint retention during training, and ``eurus-prime gc`` for old table versions.

Checkpoints dominate disk (at 7B, ~15 GB of bf16 weights plus ~60 GB of AdamW state per model per
iteration), so training keeps the policy, PRM (and critic) of the last ``keep_last`` iterations plus the
best one by held-out evaluation, and deletes the rest (``train.keep_checkpoints``). Each deletion
is logged in ``data/09_manifests/retention.jsonl``, so the manifests that record those folders
still count as complete. Parquet tables are small and are the record of the run: they are kept,
every version, until ``eurus-prime gc`` prunes the versions no latest manifest uses.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from eurus_prime.runs import manifests

VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}\.\d{2}\.\d{2}\.\d{3}Z$")
MODEL_FOLDERS = ("policy", "prm", "critic")


@dataclass
class Pruned:
    """What a prune removed (or, in a dry run, would remove)."""

    paths: list[Path] = field(default_factory=list)
    bytes: int = 0

    def add(self, path: Path) -> None:
        self.paths.append(path)
        self.bytes += size(path)


def size(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def best_iteration(project: Path) -> int | None:
    """The iteration whose updated policy scored best on the held-out evaluation (``all`` row
    of its latest ``eval_report``), the earliest on ties; None before any evaluation."""
    root = project / manifests.ROOT
    best, best_acc = None, -1.0
    for scope in sorted(root.glob("iter_*")):
        record = manifests.latest(scope.name, "evaluate_policy", root)
        path = (record or {}).get("outputs", {}).get("eval_report", {}).get("path")
        if not path or not (project / path).exists():
            continue
        report = pd.read_parquet(project / path)
        rows = report[report["group"] == "all"] if len(report) else report
        if len(rows) and float(rows["accuracy"].iloc[0]) > best_acc:
            best, best_acc = int(scope.name.split("_")[1]), float(rows["accuracy"].iloc[0])
    return best


def prune_checkpoints(project: Path, keep_last: int, dry_run: bool = False, current: int | None = None) -> Pruned:
    """Delete the policy/PRM/critic checkpoints of all but the last ``keep_last`` iterations and the best
    evaluated one. Iteration i's checkpoints are the ``iter_{i+1}`` folders it wrote.

    ``current``: the folder the training loop just wrote (``i + 1``); the kept window ends there
    and folders after it (from an earlier, longer run) are left alone. None: the newest folder."""
    if keep_last < 1:
        raise ValueError(
            f"train.keep_checkpoints = {keep_last} is invalid: must be >= 1 (the next "
            "iteration starts from the last checkpoint)"
        )
    project = Path(project)
    pruned = Pruned()
    best = best_iteration(project)
    for kind in MODEL_FOLDERS:
        folders = sorted((project / "data/06_models" / kind).glob("iter_*"))
        numbers = [int(f.name.split("_")[1]) for f in folders]
        last = current if current is not None else max(numbers, default=0)
        # the last keep_last folders that hold weights; the MEMORY_ONLY notes of the iterations
        # train.save_every kept in memory (a few bytes each) stay: the next iteration resolves them
        real = [n for f, n in zip(folders, numbers) if _holds_weights(f)]
        kept = set(sorted(n for n in real if n <= last)[-keep_last:])
        for folder, number in zip(folders, numbers):
            if number > last or number not in real or number in kept or (best is not None and number == best + 1):
                continue
            for version in sorted(folder.iterdir()):
                pruned.add(version)
                if not dry_run:
                    artifact = (version / folder.name).relative_to(project)
                    manifests.log_retention(
                        str(artifact), f"train.keep_checkpoints={keep_last}", project / manifests.ROOT
                    )
                    shutil.rmtree(version)
            if not dry_run:
                folder.rmdir()
    return pruned


def _holds_weights(folder: Path) -> bool:
    """Whether the newest version of a checkpoint folder is a checkpoint, not a ``MEMORY_ONLY`` note."""
    from eurus_prime.datasets.checkpoint import MEMORY_ONLY

    versions = sorted(v for v in folder.iterdir() if v.is_dir())
    return bool(versions) and not (versions[-1] / folder.name / MEMORY_ONLY).exists()


def versioned_folders(data: Path) -> list[Path]:
    """Every Kedro-versioned dataset folder under ``data`` (``<name>/<timestamp>/<name>``)."""
    out = []
    for folder in sorted(p for p in Path(data).rglob("*") if p.is_dir()):
        children = [c for c in folder.iterdir() if c.is_dir() and VERSION.match(c.name)]
        if children and any((c / folder.name).exists() for c in children):
            out.append(folder)
    return out


def gc(project: Path, keep_versions: int = 1, keep_checkpoints: int | None = None, dry_run: bool = False) -> Pruned:
    """Prune old versions: in every versioned folder keep the newest ``keep_versions`` and every
    version a stage's latest manifest uses; delete temporary files of interrupted writes; with
    ``keep_checkpoints``, apply checkpoint retention too."""
    if keep_versions < 1:
        raise ValueError(f"--keep-versions {keep_versions} is invalid: must be >= 1")
    project = Path(project)
    root = project / manifests.ROOT
    used = set()
    for stage in (p for p in root.glob("*/*") if p.is_dir()):
        record = manifests.latest(stage.parent.name, stage.name, root) or {}
        for prov in list(record.get("outputs", {}).values()) + list(record.get("inputs", {}).values()):
            if prov.get("path"):
                used.add(str(Path(prov["path"])))
    pruned = Pruned()
    for leftover in manifests.leftovers(project / "data"):
        if leftover.exists():
            pruned.add(leftover)
            if not dry_run:
                manifests.remove(leftover)
    for folder in versioned_folders(project / "data"):
        versions = sorted(c for c in folder.iterdir() if c.is_dir() and VERSION.match(c.name))
        for version in versions[:-keep_versions]:
            if str((version / folder.name).relative_to(project)) in used:
                continue
            pruned.add(version)
            if not dry_run:
                shutil.rmtree(version)
    if keep_checkpoints is not None:
        more = prune_checkpoints(project, keep_checkpoints, dry_run)
        pruned.paths += more.paths
        pruned.bytes += more.bytes
    return pruned
