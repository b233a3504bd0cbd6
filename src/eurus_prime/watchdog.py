"""A wall-time watchdog per stage: a stuck stage stops the run with a report, not a silent hang.

``arm(stage, seconds, report_dir)`` starts a timer thread. If the stage is still running when it
fires, the watchdog writes ``<report_dir>/<stage>-<time>.txt`` with the stage, its progress so far
(``monitor.describe()``) and a stack dump of every thread, prints the same to stderr, and raises
``StageTimeout`` in the main thread (through SIGUSR1, which interrupts sleeps and waits on
children too). If the main thread does not unwind within ``grace`` seconds (stuck in C code that
holds the GIL), the process exits with code 124. ``disarm()`` when the stage completes.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from eurus_prime import monitor

EXIT_CODE = 124


class StageTimeout(RuntimeError):
    """A stage ran past its watchdog."""


class _Watchdog:
    def __init__(self) -> None:
        self._timer: threading.Timer | None = None
        self._message: str | None = None
        self._unwound = threading.Event()

    def arm(self, stage: str, seconds: float | None, report_dir: Path, grace: float = 30.0) -> None:
        self.disarm()
        if not seconds or seconds <= 0:
            return
        self._unwound = threading.Event()
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            signal.signal(signal.SIGUSR1, self._raise_in_main)
        self._timer = threading.Timer(seconds, self._fire,
                                      args=(stage, seconds, Path(report_dir), grace, in_main, self._unwound))
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._unwound.set()

    def _fire(self, stage: str, seconds: float, report_dir: Path, grace: float, in_main: bool,
              unwound: threading.Event) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H.%M.%SZ")
        report_dir.mkdir(parents=True, exist_ok=True)
        report = report_dir / f"{stage}-{stamp}.txt"
        head = (f"watchdog: stage {stage} ran past its limit of {seconds:g} s "
                f"(watchdog.stages.{stage} / watchdog.default_s); progress: {monitor.describe()}")
        with open(report, "w") as f:
            f.write(head + "\n\nstack of every thread:\n")
            f.flush()
            faulthandler.dump_traceback(file=f, all_threads=True)
        sys.stderr.write(head + f"\nstack dump: {report}\n")
        sys.stderr.write(report.read_text().split("\n\n", 1)[-1])
        sys.stderr.flush()
        self._message = f"{head}; stack dump in {report}"
        if in_main:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
            if unwound.wait(grace):  # the stage's error handler disarmed us: the run stopped cleanly
                return
        sys.stderr.write(f"watchdog: stage {stage} did not unwind within {grace:g} s; exiting\n")
        os._exit(EXIT_CODE)

    def _raise_in_main(self, signum, frame) -> None:
        raise StageTimeout(self._message or "watchdog fired")


WATCHDOG = _Watchdog()
arm = WATCHDOG.arm
disarm = WATCHDOG.disarm
