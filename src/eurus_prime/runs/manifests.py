"""Stage manifests: the completion markers of the pipeline's stages.

A stage's outputs count only once all of them are saved. Then, and only then, the project hooks
write its manifest, ``data/09_manifests/<scope>/<stage>/<save version>.json``: what it read (each
input's version, each parameter's value), what it wrote (each output's version and path), its
seed, wall time and MLflow run. ``scope`` is ``iter_NNNN`` for the stages of ``prime_iteration``
and ``global`` for the rest. A manifest is written atomically, after the last output.

So a stage killed at any moment (before, during or between its writes) has no new manifest, and
its outputs of that run are *incomplete*: resuming reruns it, and the first thing a rerun does is
delete its unmanifested output versions (``prune_unmanifested``), so a half-finished stage is
never read and leaves nothing behind. Every manifest is plain JSON: open it to see exactly which
rollouts a PRM update trained on.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eurus_prime.runs.layout import iter_dir

ROOT = Path("data/09_manifests")
GLOBAL_SCOPE = "global"
#: Checkpoint versions deleted on purpose by the retention policy (one JSON path per line): a
#: manifest output listed here counts as present.
RETENTION_LOG = "retention.jsonl"
TMP_MARK = ".tmp-"
#: The previous folder of an atomic folder replace, between its two renames.
OLD_MARK = ".old-"


def canonical(value: Any) -> Any:
    """A JSON-ready form of a parameter value (dataclasses as dicts, numpy as Python)."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def scope_of(iteration: int | None) -> str:
    return GLOBAL_SCOPE if iteration is None else iter_dir(iteration)


def stage_dir(scope: str, stage: str, root: Path = ROOT) -> Path:
    return Path(root) / scope / stage


def write(scope: str, stage: str, record: dict, root: Path = ROOT) -> Path:
    """Write ``record`` atomically as the stage's manifest named by its save version."""
    folder = stage_dir(scope, stage, root)
    folder.mkdir(parents=True, exist_ok=True)
    name = str(record.get("save_version") or record["finished_at"]).replace(":", ".")
    target = folder / f"{name}.json"
    tmp = folder / f".{target.name}{TMP_MARK}{uuid.uuid4().hex[:8]}"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    from eurus_prime.datasets.atomic import fsync_dir

    fsync_dir(folder)
    return target


def read_all(scope: str, stage: str, root: Path = ROOT) -> list[dict]:
    """Every manifest of a stage, oldest first."""
    folder = stage_dir(scope, stage, root)
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def latest(scope: str, stage: str, root: Path = ROOT) -> dict | None:
    records = read_all(scope, stage, root)
    return records[-1] if records else None


def retained_out(root: Path = ROOT) -> set[str]:
    """Output paths the retention policy deleted on purpose."""
    log = Path(root) / RETENTION_LOG
    if not log.exists():
        return set()
    return {json.loads(line)["path"] for line in log.read_text().splitlines() if line.strip()}


def log_retention(path: str, reason: str, root: Path = ROOT) -> None:
    Path(root).mkdir(parents=True, exist_ok=True)
    with open(Path(root) / RETENTION_LOG, "a") as f:
        f.write(json.dumps({"path": path, "reason": reason}) + "\n")


def outputs_present(record: dict, root: Path = ROOT) -> bool:
    """Whether every file output the manifest records still exists (or was pruned on purpose)."""
    pruned = retained_out(root)
    project = Path(root).parent.parent  # data/09_manifests -> the project; recorded paths are relative to it
    for out in record.get("outputs", {}).values():
        path = out.get("path")
        if path and not (project / path).exists() and path not in pruned:
            return False
    return True


def versioned_root(path: str | Path) -> tuple[Path, str] | None:
    """``data/x/t.parquet/<version>/t.parquet`` -> (``data/x/t.parquet``, ``<version>``)."""
    p = Path(path)
    if len(p.parts) >= 3 and p.name == p.parent.parent.name:
        return p.parent.parent, p.parent.name
    return None


def epoch(root: Path = ROOT) -> str | None:
    """The save version of the oldest manifest under ``root``: when this ``data/`` folder started
    writing manifests. Versions older than that predate manifests and are never pruned."""
    names = [p.stem for p in Path(root).glob("*/*/*.json")]
    return min(names) if names else None


def prune_unmanifested(scope: str, stage: str, output_folders: list[Path], root: Path = ROOT) -> list[Path]:
    """Delete the versions of a stage's outputs that no manifest of the stage records (left by a
    run of it that died), and temporary files in those folders. Returns what was removed.

    Only versions at least as new as the folder's first manifest (``epoch``) are candidates, so
    data written before manifests existed is never deleted; a version folder without its artifact
    (a torn write) always goes."""
    project = Path(root).parent.parent
    kept = {
        str((project / o["path"]).resolve())
        for r in read_all(scope, stage, root)
        for o in r.get("outputs", {}).values()
        if o.get("path")
    }
    since = epoch(root)
    removed: list[Path] = []
    for folder in output_folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for version in sorted(folder.iterdir()):
            if TMP_MARK in version.name or OLD_MARK in version.name:
                remove(version)
                removed.append(version)
                continue
            if not version.is_dir():
                continue
            artifact = version / folder.name
            if not artifact.exists():
                torn = [p for p in version.iterdir() if TMP_MARK in p.name]
                if torn or not any(version.iterdir()):
                    remove(version)
                    removed.append(version)
                continue
            if str(artifact.resolve()) not in kept and since is not None and version.name >= since:
                remove(version)
                removed.append(version)
    return removed


def remove(path: Path) -> None:
    """Delete a file or a folder tree."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def leftovers(data_root: str | Path = "data") -> list[Path]:
    """Temporary files and folders of interrupted atomic writes under ``data_root``."""
    found = {p for mark in (TMP_MARK, OLD_MARK) for p in Path(data_root).rglob(f".*{mark}*")}
    return sorted(p for p in found if not any(q in found for q in p.parents))


def stale_reason(
    record: dict | None, params: dict[str, Any], upstream: dict[str, dict], root: Path = ROOT
) -> str | None:
    """Why a stage's latest manifest does not make it complete now, or None when it does.

    Args:
        record: the stage's latest manifest (None: the stage never completed).
        params: the stage's parameter inputs as they are now (``params:prime`` -> value).
        upstream: output name -> provenance, from the latest manifests of the stages before it in
            the same scope; an input recorded at another version was made from stale data.
    """
    if record is None:
        return "no manifest"
    if not outputs_present(record, root):
        return "an output is missing"
    recorded = record.get("params", {})
    for name, value in params.items():
        if canonical(value) != recorded.get(name):
            changed = _changed_keys(recorded.get(name), canonical(value))
            return f"{name} changed" + (f" ({', '.join(changed[:5])})" if changed else "")
    for name, prov in record.get("inputs", {}).items():
        up = upstream.get(name)
        if up is not None and up.get("version") != prov.get("version"):
            return f"its input {name} was rewritten since it ran"
    return None


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _changed_keys(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]
