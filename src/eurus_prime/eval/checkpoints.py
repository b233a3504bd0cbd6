"""Name a checkpoint the way a user thinks of it and get its folder: ``sft``, ``latest``, ``iter:3``.

Training writes the policy after iteration i to ``data/06_models/policy/iter_{i+1}/<version>/``, the
PRM beside it under ``prm/``, and the SFT model to ``data/06_models/sft_model/<version>/``. The
evaluation and inference commands accept these names, or any Hugging Face folder or hub id, so that
"SFT vs iteration 10" is one command and the same code serves Eurus-2-7B-PRIME on a GPU machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kedro.io.core import Version

from eurus_prime.datasets.checkpoint import Checkpoint, HFCheckpointDataset
from eurus_prime.datasets.versions import has_version, latest_version
from eurus_prime.runs.layout import iter_dir

MODELS = Path("data/06_models")
_ITER = re.compile(r"^(?:(policy|prm):(?:iter[:_]?)?|iter[:_]?)(\d+)$")
_KIND = re.compile(r"^(policy|prm):(latest)$")
HELP = (
    "a checkpoint: `sft`, `latest` (newest policy), `iter:N` (policy after N iterations), "
    "`prm:latest`, `prm:N`, a Hugging Face folder or a hub id"
)


@dataclass(frozen=True)
class CheckpointRef:
    """Where a named checkpoint lives: ``label`` for tables and charts, ``source`` to load."""

    label: str
    source: str
    versioned: bool

    def load(self) -> Checkpoint:
        """Model + tokenizer, through the same dataset class the pipelines use."""
        version = Version(None, None) if self.versioned else None
        ckpt = HFCheckpointDataset(self.source, version=version).load()
        ckpt.version = ckpt.version or self.label
        return ckpt


def load_each(refs: list[CheckpointRef]) -> list[Checkpoint]:
    """Load ``refs`` in order, each distinct folder once: the SFT model is often the policy being
    evaluated and the PRM's reference at the same time (at 7B, one copy is 15 GB)."""
    loaded: dict[str, Checkpoint] = {}
    for ref in refs:
        if ref.source not in loaded:
            loaded[ref.source] = ref.load()
    return [loaded[ref.source] for ref in refs]


def _iterations(root: Path, kind: str) -> list[int]:
    folder = root / MODELS / kind
    found = [int(p.name[5:]) for p in folder.glob("iter_*") if p.name[5:].isdigit() and has_version(p)]
    return sorted(found)


def resolve(spec: str, project: Path) -> CheckpointRef:
    """Turn ``spec`` into a loadable reference; ValueError says what exists when it does not."""
    spec = spec.strip()
    if spec == "sft":
        return _versioned(project / MODELS / "sft_model", "sft", "the SFT model")
    kind_latest = _KIND.match(spec)
    if spec == "latest" or kind_latest:
        kind = kind_latest.group(1) if kind_latest else "policy"
        done = _iterations(project, kind)
        if not done:
            if kind == "policy":  # nothing trained yet: the newest policy is the SFT model
                return resolve("sft", project)
            raise ValueError(f"no {kind} checkpoint under {project / MODELS / kind}; run `eurus-prime train`")
        spec = f"{kind}:{done[-1]}"
    numbered = _ITER.match(spec)
    if numbered:
        kind, n = numbered.group(1) or "policy", int(numbered.group(2))
        if n == 0:
            return resolve("sft", project)
        folder = project / MODELS / kind / iter_dir(n)
        label = iter_dir(n) if kind == "policy" else f"prm_{iter_dir(n)}"
        return _versioned(folder, label, f"the {kind} after {n} iteration(s)", available=_iterations(project, kind))
    path = Path(spec).expanduser()
    path = path if path.is_absolute() else project / path
    if path.exists():
        return CheckpointRef(label=path.name, source=str(path), versioned=has_version(path))
    if re.match(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$", spec):
        return CheckpointRef(label=spec.split("/")[-1], source=spec, versioned=False)
    raise ValueError(f"unknown checkpoint {spec!r}: no such folder under {project}; expected {HELP}")


def _versioned(folder: Path, label: str, what: str, available: list[int] | None = None) -> CheckpointRef:
    if latest_version(folder) is None:
        have = f"; iterations with a checkpoint: {available}" if available else ""
        raise ValueError(f"no saved version of {what} at {folder}{have}; run `eurus-prime train`")
    return CheckpointRef(label=label, source=str(folder), versioned=True)


def current_project() -> Path:
    """The Kedro project around the working directory (a ``kedro run`` runs in its root), where
    names like ``sft`` and ``latest`` resolve; the working directory itself outside a project."""
    from kedro.utils import find_kedro_project

    found = find_kedro_project(Path.cwd())
    return Path(found) if found else Path.cwd()
