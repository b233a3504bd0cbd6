"""Per-node peak RSS (``hooks.MemoryHooks``): a node that allocates shows a higher peak than one
that does not, through a real Kedro runner; no metric where the peak counter cannot be reset."""

from __future__ import annotations

import logging
import mmap
from pathlib import Path

import pytest
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import node, pipeline
from kedro.runner import SequentialRunner

from eurus_prime.runs.guard import hooks

#: On the tests that measure a real peak; the fallbacks (no /proc, a counter that cannot be reset)
#: and the parsing run everywhere.
needs_peak_counter = pytest.mark.skipif(
    not hooks.reset_peak_rss() or not hooks.read_rss_kb(),
    reason="needs Linux /proc/self/clear_refs (writable) and /proc/self/status",
)

MB = 2**20


def allocate_200mb(x: int) -> int:
    # A fresh anonymous mapping, every page written: 200 MB of new resident memory whatever the
    # allocator holds already (after many tests, malloc may serve even a large request from freed
    # heap that is still resident, and the peak would not move).
    buf = mmap.mmap(-1, 200 * MB)
    for offset in range(0, 200 * MB, 4096):
        buf[offset] = 1
    total = sum(buf[o] for o in range(0, 200 * MB, 4096 * 1024))
    buf.close()
    return x + (total > 0)


def no_allocation(x: int) -> int:
    return x + 1


def _session_run(memory: hooks.MemoryHooks, pipe, catalog) -> None:
    """What a KedroSession does around the runner: the pipeline hooks, then the node hooks."""
    manager = _create_hook_manager()
    manager.register(memory)
    manager.hook.before_pipeline_run(run_params={}, pipeline=pipe, catalog=catalog)
    SequentialRunner().run(pipe, catalog, manager)
    manager.hook.after_pipeline_run(run_params={}, run_result={}, pipeline=pipe, catalog=catalog)


def _run(memory: hooks.MemoryHooks) -> None:
    catalog = DataCatalog({"a": MemoryDataset(0), "b": MemoryDataset(), "c": MemoryDataset()})
    pipe = pipeline([node(no_allocation, "a", "b", name="quiet"), node(allocate_200mb, "b", "c", name="hungry")])
    _session_run(memory, pipe, catalog)


@needs_peak_counter
def test_allocating_node_has_the_larger_peak():
    memory = hooks.MemoryHooks()
    _run(memory)
    m = memory.totals()
    assert set(m) == {
        "memory/quiet_peak_rss_mb",
        "memory/quiet_rss_before_mb",
        "memory/hungry_peak_rss_mb",
        "memory/hungry_rss_before_mb",
        "memory/peak_rss_mb",
    }
    hungry = m["memory/hungry_peak_rss_mb"] - m["memory/hungry_rss_before_mb"]
    quiet = m["memory/quiet_peak_rss_mb"] - m["memory/quiet_rss_before_mb"]
    assert hungry > 180, m  # the 200 MB buffer (the counter was reset before the node)
    assert quiet < 50, m
    assert m["memory/hungry_peak_rss_mb"] > m["memory/quiet_peak_rss_mb"] + 150
    assert m["memory/peak_rss_mb"] >= m["memory/hungry_peak_rss_mb"]
    for name in ("quiet", "hungry"):
        assert m[f"memory/{name}_peak_rss_mb"] >= m[f"memory/{name}_rss_before_mb"] > 0


@needs_peak_counter
def test_counter_is_reset_per_run_and_per_node():
    """The 200 MB of a first run does not leak into the next run's peaks."""
    memory = hooks.MemoryHooks()
    _run(memory)
    catalog = DataCatalog({"a": MemoryDataset(0), "b": MemoryDataset()})
    _session_run(memory, pipeline([node(no_allocation, "a", "b", name="quiet")]), catalog)
    m = memory.totals()
    assert set(m) == {"memory/quiet_peak_rss_mb", "memory/quiet_rss_before_mb", "memory/peak_rss_mb"}
    assert m["memory/quiet_peak_rss_mb"] - m["memory/quiet_rss_before_mb"] < 50, m
    assert m["memory/peak_rss_mb"] < m["memory/quiet_rss_before_mb"] + 50, m


def test_no_metrics_where_the_peak_cannot_be_reset(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(hooks, "CLEAR_REFS", tmp_path / "missing" / "clear_refs")  # not writable: no folder
    memory = hooks.MemoryHooks()
    with caplog.at_level(logging.DEBUG, logger="eurus_prime.runs.guard.hooks"):
        _run(memory)
    assert memory.totals() == {}
    assert "cannot reset the peak RSS" in caplog.text


def test_no_metrics_without_proc_status(monkeypatch, tmp_path):
    monkeypatch.setattr(hooks, "PROC_STATUS", tmp_path / "status")  # e.g. not Linux
    assert hooks.read_rss_kb() == {}
    memory = hooks.MemoryHooks()
    _run(memory)
    assert memory.totals() == {}


def test_registered_in_settings():
    from eurus_prime import settings

    assert hooks.MEMORY in settings.HOOKS


def test_read_rss_kb_parses_status(tmp_path: Path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t2\n")
    assert hooks.read_rss_kb(status) == {"VmHWM": 204800, "VmRSS": 102400}
