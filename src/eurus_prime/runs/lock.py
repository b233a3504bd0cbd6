"""One writer per ``data/`` folder: ``eurus-prime train`` and ``eurus-prime gc`` hold this lock.

An ``flock`` on ``data/.eurus_prime.lock``: the kernel releases it when the holder dies, even by
``kill -9``, so a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = Path("data/.eurus_prime.lock")


class Busy(RuntimeError):
    """Another process holds the project's data lock."""


@contextmanager
def data_lock(project: Path, what: str) -> Iterator[None]:
    path = Path(project) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise Busy(f"{path} is held by {holder}: one {what} at a time per data/ folder") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} ({what})")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)
