"""One writer per ``data/`` folder: ``eurus-prime train`` and ``eurus-prime gc`` hold this lock.

A ``filelock.FileLock`` on ``data/.eurus_prime.lock`` (``flock`` on Unix, ``msvcrt.locking`` on
Windows): the operating system releases it when the holder dies, even by ``kill -9``, so a crashed
run never leaves a stale lock behind. The holder writes who it is to ``data/.eurus_prime.lock.holder``
(not into the lock file, whose contents belong to filelock), and a refused process names it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_FILE = Path("data/.eurus_prime.lock")
HOLDER_FILE = Path("data/.eurus_prime.lock.holder")


class Busy(RuntimeError):
    """Another process holds the project's data lock."""


@contextmanager
def data_lock(project: Path, what: str) -> Iterator[None]:
    """Hold ``project``'s data lock for the block; ``Busy`` (naming the holder) if another process holds it."""
    path, holder = Path(project) / LOCK_FILE, Path(project) / HOLDER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            name = holder.read_text().strip()
        except OSError:
            name = ""
        raise Busy(f"{path} is held by {name or 'another process'}: one {what} at a time per data/ folder") from None
    owner = os.getpid()
    try:
        holder.write_text(f"pid {owner} ({what})")
        yield
    finally:
        if os.getpid() == owner:  # a forked child unwinding the block leaves its parent's lock alone
            holder.unlink(missing_ok=True)
            lock.release()
