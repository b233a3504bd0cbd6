"""Helpers the benchmarks share: fresh copies of the project, with or without its SFT model."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: What a copy needs to skip the bootstrap: the world, the SFT model and its evaluation.
SFT_ARTIFACTS = (
    "data/01_raw",
    "data/02_primary",
    "data/06_models/sft_model",
    "data/06_models/tokenizer",
    "data/07_model_output/sft_eval_items.parquet",
    "data/08_reporting/sft_eval_report.parquet",
    "data/05_rollouts/prm_eval_set.parquet",
)


def fresh_project(dest: Path, with_sft_from: Path | None = None) -> Path:
    """Copy conf/, src/, pyproject.toml and .telemetry to ``dest`` (no developer overrides in
    conf/local), and, with ``with_sft_from``, that project's bootstrap artifacts."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("conf", "src", "pyproject.toml", ".telemetry"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(src, dest / name)
    for f in (dest / "conf/local").glob("*.yml"):
        f.unlink()  # benchmark the committed defaults, not a developer's overrides
    if with_sft_from is not None:
        for rel in SFT_ARTIFACTS:
            src = with_sft_from / rel
            if not src.exists():
                raise FileNotFoundError(f"{src} is missing: run `make train` (the bootstrap) in {with_sft_from} first")
            shutil.copytree(src, dest / rel)
    return dest


class LoadMonitor:
    """What else the machine did while a run went on: other work inflates wall times.

    ``other_cores``: the CPU seconds that processes outside this one's process tree used, per
    second of the run, i.e. how many cores other work took on average. Every ``every`` seconds
    it reads ``/proc/<pid>/stat`` of every process; a process is ours when it descends from this
    one (and stays ours once seen, even when its parent dies), so a run's own verifier workers do
    not count as other work. Processes that start and end between two samples are not seen.
    ``load_mean``/``load_max``: the 1-minute load average (it lags, and counts the benchmark too).
    """

    def __init__(self, every: float = 1.0) -> None:
        self.samples: list[float] = []
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ours: set[tuple[int, int]] = set()
        self._cpu: dict[tuple[int, int], float] = {}
        self._other = 0.0
        self._ok = True
        self._t0 = 0.0
        self.other_cores: float | None = None

    @staticmethod
    def _processes() -> dict[tuple[int, int], tuple[int, float]] | None:
        """(pid, start time) -> (parent pid, CPU seconds) of every process; None without /proc."""
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        try:
            pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
        except OSError:
            return None
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    data = f.read()
                rest = data[data.rindex(")") + 2 :].split()  # fields 3.. (the name may hold spaces)
                out[(pid, int(rest[19]))] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / tick)
            except (OSError, ValueError, IndexError):
                continue
        return out or None

    def _sample(self, first: bool = False) -> None:
        procs = self._processes()
        if procs is None:
            self._ok = False
            return
        me = os.getpid()
        our_pids = {pid for pid, _ in self._ours} | {me}
        changed = True
        while changed:  # a child can be listed before its parent
            changed = False
            for key, (ppid, _) in procs.items():
                if key not in self._ours and (key[0] == me or ppid in our_pids):
                    self._ours.add(key)
                    our_pids.add(key[0])
                    changed = True
        for key, (_, cpu) in procs.items():
            if key not in self._ours and not first:
                self._other += cpu - self._cpu.get(key, 0.0 if key not in self._seen_at_start else cpu)
            self._cpu[key] = cpu
        if first:
            self._seen_at_start = set(procs)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._sample()
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadMonitor:
        self._seen_at_start: set[tuple[int, int]] = set()
        self._sample(first=True)
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        wall = time.perf_counter() - self._t0
        if self._ok and wall > 0:
            self.other_cores = max(0.0, self._other) / wall

    def summary(self) -> dict:
        s = self.samples or [os.getloadavg()[0]]
        return {
            "load_mean": round(sum(s) / len(s), 2),
            "load_max": round(max(s), 2),
            "cpus": os.cpu_count(),
            "other_cores": None if self.other_cores is None else round(self.other_cores, 2),
        }
