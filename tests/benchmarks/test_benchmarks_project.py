"""benchmarks/_project.py: fresh project copies and the reading of an iteration's newest table version."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

from tests import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from _project import fresh_project, iteration_table  # noqa: E402


def test_iteration_table_reads_the_newest_version_and_names_a_missing_one(tmp_path):
    folder = tmp_path / "data/05_rollouts/iter_0003/rollouts.parquet"
    for stamp, value in (("2026-12-06T10.00.00.000Z", 1), ("2026-12-06T11.00.00.000Z", 2)):
        (folder / stamp).mkdir(parents=True)
        pd.DataFrame({"x": [value]}).to_parquet(folder / stamp / "rollouts.parquet")
    assert iteration_table(tmp_path, 3, "rollouts")["x"].tolist() == [2]
    with pytest.raises(FileNotFoundError, match="no 05_rollouts/outcomes table for iteration 3"):
        iteration_table(tmp_path, 3, "outcomes")
    with pytest.raises(FileNotFoundError, match="no 08_reporting/ppo_stats table for iteration 4"):
        iteration_table(tmp_path, 4, "ppo_stats", layer="08_reporting")


def test_fresh_project_copies_conf_without_local_overrides_and_refuses_a_used_folder(tmp_path):
    dest = fresh_project(tmp_path / "p")
    assert (dest / "conf/base/parameters.yml").is_file() and (dest / "pyproject.toml").is_file()
    assert not list((dest / "conf/local").glob("*.yml"))
    with pytest.raises(FileExistsError, match=f"{dest} already holds files.*another --workdir"):
        fresh_project(dest)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert fresh_project(empty) == empty
