"""A wall-time watchdog per stage: a stuck stage stops the run with a report, not a silent hang.

``arm(stage, seconds, report_dir)`` starts a timer thread. If the stage is still running when it
fires, the watchdog writes ``<report_dir>/<stage>-<time>.txt`` with the stage, its progress so far
(``monitor.describe()``) and a stack dump of every thread, prints the same to stderr, and raises
``StageTimeout`` in the main thread (through SIGUSR1, which also interrupts sleeps and waits on
child processes). ``StageTimeout`` is a ``BaseException``, so no ``except Exception`` on the way
(a verifier's per-row guard, a library's catch-all) can swallow it. If the main thread does not
unwind within ``grace`` seconds (stuck in C code that holds the GIL), the process exits with code
124. ``disarm()`` when the stage completes or fails.

Each arming has a generation number: a timer that fires after its stage was disarmed, or a
SIGUSR1 that arrives when no stage is armed, does nothing (the previous SIGUSR1 handler is
restored on disarm).
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from eurus_prime.runs.guard import monitor

EXIT_CODE = 124


class StageTimeout(BaseException):
    """A stage ran past its watchdog."""


class _Watchdog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._generation = 0
        self._armed: int | None = None  # the generation whose stage is running
        self._fired: int | None = None  # the generation that fired and is unwinding
        self._message: str | None = None
        self._unwound = threading.Event()
        self._previous_handler = None

    def arm(self, stage: str, seconds: float | None, report_dir: Path, grace: float = 30.0) -> None:
        self.disarm()
        if not seconds or seconds <= 0:
            return
        in_main = threading.current_thread() is threading.main_thread()
        with self._lock:
            self._generation += 1
            self._armed = self._generation
            self._unwound = threading.Event()
            if in_main:
                self._previous_handler = signal.signal(signal.SIGUSR1, self._raise_in_main)
            self._timer = threading.Timer(
                seconds,
                self._fire,
                args=(self._generation, stage, seconds, Path(report_dir), grace, in_main, self._unwound),
            )
            self._timer.daemon = True
            self._timer.start()

    def disarm(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._armed = None
            self._unwound.set()
            if self._previous_handler is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGUSR1, self._previous_handler)
                self._previous_handler = None

    def _fire(
        self,
        generation: int,
        stage: str,
        seconds: float,
        report_dir: Path,
        grace: float,
        in_main: bool,
        unwound: threading.Event,
    ) -> None:
        with self._lock:
            if self._armed != generation:  # the stage finished while the timer was firing
                return
        head = (
            f"watchdog: stage {stage} ran past its limit of {seconds:g} s "
            f"(watchdog.stages.{stage} / watchdog.default_s); progress: {monitor.describe()}"
        )
        report = None
        try:
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H.%M.%SZ")
            report_dir.mkdir(parents=True, exist_ok=True)
            report = report_dir / f"{stage}-{stamp}.txt"
            with open(report, "w") as f:
                f.write(head + "\n\nstack of every thread:\n")
                f.flush()
                faulthandler.dump_traceback(file=f, all_threads=True)
        except OSError as err:  # a full disk must not keep the watchdog from stopping the stage
            sys.stderr.write(f"watchdog: could not write its report ({err})\n")
            report = None
        sys.stderr.write(head + (f"\nstack dump: {report}\n" if report else "\n"))
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        with self._lock:
            if self._armed != generation:
                return
            self._fired = generation
            self._message = head + (f"; stack dump in {report}" if report else "")
        if in_main:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
            if unwound.wait(grace):  # the stage's error handling disarmed us: the run stopped cleanly
                return
        sys.stderr.write(f"watchdog: stage {stage} did not unwind within {grace:g} s; exiting\n")
        os._exit(EXIT_CODE)

    def _raise_in_main(self, signum, frame) -> None:
        with self._lock:
            mine = self._fired is not None and self._fired == self._armed
        if mine:
            raise StageTimeout(self._message or "watchdog fired")


WATCHDOG = _Watchdog()
arm = WATCHDOG.arm
disarm = WATCHDOG.disarm
