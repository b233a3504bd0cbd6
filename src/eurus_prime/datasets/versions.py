"""Kedro-versioned folders on disk: ``<folder>/<timestamp>/<folder name>``."""

from __future__ import annotations

from pathlib import Path


def latest_version(folder: str | Path) -> Path | None:
    """The newest saved version of a Kedro-versioned dataset folder (the file or folder inside
    it), or None when it has none."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    versions = sorted(v / folder.name for v in folder.iterdir() if (v / folder.name).exists())
    return versions[-1] if versions else None


def has_version(folder: str | Path) -> bool:
    """Whether a Kedro-versioned dataset at ``folder`` has a saved version."""
    return latest_version(folder) is not None
