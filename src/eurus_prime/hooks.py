"""Project hooks: time spent loading and saving datasets (Parquet tables, checkpoints).

Nodes time their own work (``time/<node>`` metrics). What a run spends around them, in the
catalog, is measured here, so that the training loop can report the framework and I/O share of
an iteration (``time/io_load``, ``time/io_save``).
"""

from __future__ import annotations

import time
from collections import defaultdict

from kedro.framework.hooks import hook_impl


class IOTimingHooks:
    """Accumulates seconds per dataset load and save during one pipeline run."""

    def __init__(self) -> None:
        self.load: dict[str, float] = defaultdict(float)
        self.save: dict[str, float] = defaultdict(float)
        self._started: dict[tuple[str, str], float] = {}

    @hook_impl
    def before_pipeline_run(self) -> None:
        self.load.clear()
        self.save.clear()
        self._started.clear()

    @hook_impl
    def before_dataset_loaded(self, dataset_name: str) -> None:
        self._started[("load", dataset_name)] = time.perf_counter()

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str) -> None:
        start = self._started.pop(("load", dataset_name), None)
        if start is not None:
            self.load[dataset_name] += time.perf_counter() - start

    @hook_impl
    def before_dataset_saved(self, dataset_name: str) -> None:
        self._started[("save", dataset_name)] = time.perf_counter()

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        start = self._started.pop(("save", dataset_name), None)
        if start is not None:
            self.save[dataset_name] += time.perf_counter() - start

    def totals(self) -> dict[str, float]:
        return {"time/io_load": sum(self.load.values()), "time/io_save": sum(self.save.values())}


#: The instance registered in settings.py; the training loop reads it after each session.
IO_TIMING = IOTimingHooks()
