"""benchmarks/credit_assignment.py's prompt restriction (``--where``), without running a benchmark."""

from __future__ import annotations

import importlib.util
import sys

import pandas as pd
import pytest

from tests import ROOT

BENCH = ROOT / "benchmarks"


def _module():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("credit_assignment", BENCH / "credit_assignment.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def test_where_keeps_the_prompts_whose_extra_info_matches():
    ca = _module()
    prompts = pd.DataFrame(
        {
            "data_source": ["a", "b", "c", "d"],
            "extra_info": [{"traps": t, "novel": n} for t, n in ((1, False), (3, False), (3, True), (2, False))],
        }
    )
    assert list(ca._where(prompts, "traps == 3")["data_source"]) == ["b", "c"]
    assert list(ca._where(prompts, "traps == 3 and not novel")["data_source"]) == ["b"]
    assert ca._where(prompts, None) is prompts
    with pytest.raises(ValueError, match="keeps no prompt"):
        ca._where(prompts, "traps > 5")
