"""Helpers the benchmarks share: fresh copies of the project, with or without its SFT model."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: What a copy needs to skip the bootstrap: the world, the SFT model and its evaluation.
SFT_ARTIFACTS = (
    "data/01_raw", "data/02_primary", "data/06_models/sft_model", "data/06_models/tokenizer",
    "data/07_model_output/sft_eval_items.parquet", "data/08_reporting/sft_eval_report.parquet",
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
    """Samples the 1-minute load average every few seconds while a run goes on: other work on the
    machine inflates wall times (this benchmark itself accounts for about its torch threads)."""

    def __init__(self, every: float = 5.0) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> "LoadMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        s = self.samples or [os.getloadavg()[0]]
        return {"load_mean": round(sum(s) / len(s), 2), "load_max": round(max(s), 2), "cpus": os.cpu_count()}
