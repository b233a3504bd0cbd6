"""Stage manifests, atomic Parquet writes and fault points, without Kedro."""

import json
from dataclasses import dataclass

import pandas as pd
import pytest

from eurus_prime.datasets import AtomicParquetDataset
from eurus_prime.runs import manifests
from eurus_prime.runs.guard import faults


@dataclass
class _Cfg:
    lr: float = 0.1
    n: int = 2


def test_manifests_are_atomic_ordered_and_know_when_a_stage_is_stale(tmp_path):
    root = tmp_path / "data/09_manifests"
    out = "data/05_rollouts/iter_0000/rollouts.parquet/v2/rollouts.parquet"
    (tmp_path / out).parent.mkdir(parents=True)
    (tmp_path / out).write_bytes(b"x")
    manifests.write("iter_0000", "gen", {"save_version": "v1", "outputs": {}}, root)
    manifests.write(
        "iter_0000",
        "gen",
        {
            "save_version": "v2",
            "params": {"params:prime": manifests.canonical(_Cfg())},
            "inputs": {"drawn": {"version": "d1"}},
            "outputs": {"rollouts": {"version": "v2", "path": out}},
        },
        root,
    )
    assert [r["save_version"] for r in manifests.read_all("iter_0000", "gen", root)] == ["v1", "v2"]
    assert not list(root.rglob("*.tmp-*"))
    record = manifests.latest("iter_0000", "gen", root)
    assert manifests.stale_reason(record, {"params:prime": _Cfg()}, {"drawn": {"version": "d1"}}, root) is None
    assert manifests.stale_reason(None, {}, {}, root) == "no manifest"
    assert (
        manifests.stale_reason(record, {"params:prime": _Cfg(lr=0.2)}, {}, root)
        == "params:prime changed (lr: 0.1 -> 0.2)"
    )
    assert (
        manifests.stale_reason(record, {}, {"drawn": {"version": "d2"}}, root)
        == "its input drawn was rewritten since it ran"
    )
    (tmp_path / out).unlink()
    assert manifests.stale_reason(record, {}, {}, root) == "an output is missing"
    manifests.log_retention(out, "keep_checkpoints", root)  # pruned on purpose: still complete
    assert manifests.outputs_present(record, root)


def test_prune_removes_only_unmanifested_versions_and_temporary_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "data/t.parquet"
    for v in ("v0", "v1", "v2", "v3"):  # v0 predates the first manifest: never pruned
        (folder / v).mkdir(parents=True)
        (folder / v / "t.parquet").write_bytes(b"x")
    (folder / "v3" / ".t.parquet.tmp-1234").write_bytes(b"half")
    (folder / "v4").mkdir()
    (folder / "v4" / ".t.parquet.tmp-abcd").write_bytes(b"half")  # a torn write: no final file
    manifests.write("iter_0000", "s", {"save_version": "v1", "outputs": {"t": {"path": "data/t.parquet/v1/t.parquet"}}})
    removed = manifests.prune_unmanifested("iter_0000", "s", [folder.relative_to(tmp_path)])
    assert sorted(p.name for p in removed) == ["v2", "v3", "v4"]
    assert sorted(p.name for p in folder.iterdir()) == ["v0", "v1"]


def test_atomic_parquet_roundtrip_and_a_torn_write_leaves_no_table(tmp_path, monkeypatch):
    frame = pd.DataFrame({"a": [1, 2], "b": [[1, 2], [3]]})
    ds = AtomicParquetDataset(filepath=str(tmp_path / "t.parquet"))
    ds.save(frame)
    pd.testing.assert_frame_equal(ds.load(), frame)
    monkeypatch.setenv(faults.ENV, "node_x:raise@write")
    monkeypatch.setattr(faults, "current_node", "node_x")
    monkeypatch.setattr(faults, "_fired", set())
    torn = AtomicParquetDataset(filepath=str(tmp_path / "u.parquet"))
    with pytest.raises(Exception, match=r"injected fault node_x:raise@write \(.*u.parquet\)"):
        torn.save(frame)
    assert not (tmp_path / "u.parquet").exists() and not list(tmp_path.glob(".u.parquet*"))


def test_fault_specs_are_validated():
    assert faults.parse("a:exit@write; b:raise@start") == [("a", "exit", "write"), ("b", "raise", "start")]
    with pytest.raises(ValueError, match="kind must be one of"):
        faults.parse("a:boom@start")
    with pytest.raises(ValueError, match="is not <node>:<kind>@<where>"):
        faults.parse("a-exit")


def test_canonical_handles_dataclasses_numpy_and_nesting():
    import numpy as np

    assert manifests.canonical({"b": _Cfg(), "a": (np.int64(3), 1.5)}) == {"a": [3, 1.5], "b": {"lr": 0.1, "n": 2}}
    json.dumps(manifests.canonical({"x": np.float32(0.5)}))
