"""Atomic writes: build in a hidden temporary sibling, then rename into place."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from eurus_prime.runs.guard import faults


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (a directory entry survives a host crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with open(p, "rb+") as f:
                os.fsync(f.fileno())
    fsync_dir(root)


def write_dir_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a fresh temporary folder beside ``target``, then move it to
    ``target``. A crash leaves at most a hidden ``.<name>.tmp-*`` folder, never a half-written
    ``target``; an existing ``target`` is replaced only once the new one is complete."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        write(tmp)
        _fsync_tree(tmp)  # the files are on disk before the rename makes them visible
        faults.point("write", str(target))
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_stream_atomically(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a hidden temporary sibling of ``target`` opened for binary writing,
    fsync it, then rename it into place: a reader sees the old file or the new one, never a part."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        faults.point("write", str(target))
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_file_atomically(target: Path, data: bytes | str) -> None:
    """``write_stream_atomically`` of ``data`` (text is UTF-8 encoded)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    write_stream_atomically(target, lambda f: f.write(payload))
