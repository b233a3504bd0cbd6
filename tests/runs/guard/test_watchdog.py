"""The stage watchdog and the data lock, in process."""

import os
import signal
import time

import pytest

from eurus_prime.runs.guard import monitor, watchdog
from eurus_prime.runs.lock import Busy, data_lock


def test_a_stuck_stage_raises_stage_timeout_through_except_exception(tmp_path):
    monitor.begin("verify_outcomes")
    monitor.step(2, 8, "rows")
    watchdog.arm("verify_outcomes", 0.3, tmp_path, grace=5)
    try:
        with pytest.raises(
            watchdog.StageTimeout,
            match=r"watchdog: stage verify_outcomes ran past its limit "
            r"of 0.3 s .*progress: verify_outcomes after .* 2/8 rows",
        ):
            try:
                time.sleep(10)  # interrupted by SIGUSR1
            except Exception:  # noqa: BLE001 - a per-row guard must not swallow the watchdog
                pytest.fail("StageTimeout was caught by except Exception")
    finally:
        watchdog.disarm()
        monitor.end()
    (report,) = tmp_path.glob("verify_outcomes-*.txt")
    assert "stack of every thread" in report.read_text() and "test_watchdog.py" in report.read_text()


def test_a_disarmed_watchdog_never_fires_and_a_stray_signal_is_ignored(tmp_path):
    previous = signal.getsignal(signal.SIGUSR1)
    watchdog.arm("s", 0.2, tmp_path)
    watchdog.disarm()
    time.sleep(0.4)
    assert not list(tmp_path.iterdir())
    assert signal.getsignal(signal.SIGUSR1) == previous  # the handler is restored


def test_one_writer_per_data_folder(tmp_path):
    with data_lock(tmp_path, "eurus-prime train"):
        with pytest.raises(
            Busy,
            match=rf"held by pid {os.getpid()} \(eurus-prime train\): one eurus-prime gc "
            "at a time per data/ folder",
        ):
            with data_lock(tmp_path, "eurus-prime gc"):
                pass
    with data_lock(tmp_path, "eurus-prime gc"):  # released
        pass


def test_a_holder_in_another_process_is_refused_and_its_death_frees_the_lock(tmp_path):
    """Another process holds the lock: this one is refused with the holder named, and once the holder
    is killed (SIGKILL: no cleanup runs) the lock is free again, its stale holder note overwritten."""
    import subprocess
    import sys

    hold = (
        "import sys, time\n"
        "from eurus_prime.runs.lock import data_lock\n"
        "with data_lock(sys.argv[1], 'eurus-prime train'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(Busy, match=rf"held by pid {holder.pid} \(eurus-prime train\): one eurus-prime gc at a"):
            with data_lock(tmp_path, "eurus-prime gc"):
                pass
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with data_lock(tmp_path, "eurus-prime gc"):
        assert (tmp_path / "data/.eurus_prime.lock.holder").read_text() == f"pid {os.getpid()} (eurus-prime gc)"
    assert not (tmp_path / "data/.eurus_prime.lock.holder").exists()
