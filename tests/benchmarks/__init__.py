"""Tests of the benchmark scripts' own code (no benchmark runs)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests import ROOT

BENCH = ROOT / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module, imported with ``benchmarks/`` on the path (the scripts
    import ``_project`` and each other as siblings)."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None, name
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))
