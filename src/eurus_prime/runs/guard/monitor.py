"""What the running stage is doing: progress for the log, the watchdog and fault injection.

Long loops inside a stage (generation batches, verification, optimizer steps, scoring passes)
get ``step(done, total, unit)`` as their ``on_progress`` callback from the Kedro node. It logs a
progress line at most every ``LOG_EVERY_S`` seconds, draws a bar per stage and unit on a terminal
(``show_bars``: ``eurus-prime train`` turns them on), lets the stage watchdog say how far a stuck
stage got, and is where an injected ``middle`` fault fires (the first step at or past half way).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from eurus_prime.runs.guard import faults

log = logging.getLogger(__name__)
LOG_EVERY_S = 15.0


@dataclass
class _State:
    stage: str | None = None
    started: float = field(default_factory=time.monotonic)
    parts: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    last_log: float = 0.0


_state = _State()
_show_bars = False
_bars: dict[str, Any] = {}


def show_bars(on: bool = True) -> None:
    """Draw a live bar per stage and unit (on a terminal; without one, the log lines remain)."""
    global _show_bars
    _show_bars = on


def _close_bars() -> None:
    for bar in _bars.values():
        bar.close()
    _bars.clear()


def begin(stage: str) -> None:
    global _state
    _close_bars()
    _state = _State(stage=stage, started=time.monotonic(), last_log=time.monotonic())


def end() -> None:
    global _state
    _close_bars()
    _state = _State()


def step(done: int, total: int | None, unit: str) -> None:
    """Report ``done`` of ``total`` ``unit`` (e.g. ``3, 8, "generation batches"``)."""
    _state.parts[unit] = (done, total)
    if _show_bars:
        _bar(unit, done, total)
    now = time.monotonic()
    if now - _state.last_log >= LOG_EVERY_S:
        _state.last_log = now
        log.info("%s", describe())
    if total and 2 * done >= total:
        faults.point("middle", f"{done}/{total} {unit}")


def _bar(unit: str, done: int, total: int | None) -> None:
    from tqdm.auto import tqdm

    bar = _bars.get(unit)
    if bar is None:
        bar = _bars[unit] = tqdm(total=total, desc=f"{_state.stage or ''}: {unit}", leave=False, dynamic_ncols=True)
    bar.total = total
    bar.n = done
    bar.refresh()


def describe() -> str:
    """``generate_rollouts after 12.3 s: 3/8 generation batches``."""
    if _state.stage is None:
        return "no stage running"
    parts = ", ".join(f"{d}/{t if t is not None else '?'} {u}" for u, (d, t) in _state.parts.items())
    return f"{_state.stage} after {time.monotonic() - _state.started:.1f} s: " + (parts or "no progress reported yet")
