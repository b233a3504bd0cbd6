"""benchmarks/credit_assignment.py's prompt restriction (``--where``), without running a benchmark."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.benchmarks import load_benchmark


def test_where_keeps_the_prompts_whose_extra_info_matches():
    ca = load_benchmark("credit_assignment")
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
