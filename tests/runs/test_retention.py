"""Checkpoint retention and ``eurus-prime gc`` on a fabricated data/ folder."""

import pandas as pd
import pytest

from eurus_prime.runs import manifests
from eurus_prime.runs.layout import iter_dir
from eurus_prime.runs.progress import completed_iterations
from eurus_prime.runs.retention import best_iteration, gc, prune_checkpoints, versioned_folders

V1, V2 = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"


def _project(tmp_path, accuracies):
    """Iterations 0..k-1 with policy/prm checkpoints iter_1..iter_k and an eval report each."""
    root = tmp_path / "data/09_manifests"
    for i, acc in enumerate(accuracies):
        for kind in ("policy", "prm"):
            ckpt = tmp_path / f"data/06_models/{kind}/{iter_dir(i + 1)}/{V1}/{iter_dir(i + 1)}"
            ckpt.mkdir(parents=True)
            (ckpt / "model.safetensors").write_bytes(b"w" * 1000)
        rel = f"data/08_reporting/{iter_dir(i)}/eval_report.parquet/{V1}/eval_report.parquet"
        (tmp_path / rel).parent.mkdir(parents=True)
        pd.DataFrame({"group": ["all"], "name": ["all"], "n": [10], "accuracy": [acc]}).to_parquet(tmp_path / rel)
        manifests.write(
            iter_dir(i),
            "evaluate_policy",
            {
                "save_version": V1,
                "outputs": {
                    "eval_report": {"path": rel, "version": V1},
                    "policy_in": {"path": f"data/06_models/policy/{iter_dir(i + 1)}/{V1}/{iter_dir(i + 1)}"},
                },
            },
            root,
        )
    return tmp_path


def test_retention_keeps_the_last_k_and_the_best_and_iterations_stay_complete(tmp_path):
    project = _project(tmp_path, [0.1, 0.9, 0.3, 0.2, 0.4, 0.5])
    assert best_iteration(project) == 1
    dry = prune_checkpoints(project, keep_last=2, dry_run=True)
    assert len(dry.paths) == 6 and dry.bytes == 6000
    assert len(list((project / "data/06_models/policy").iterdir())) == 6  # a dry run deletes nothing
    prune_checkpoints(project, keep_last=2)
    for kind in ("policy", "prm"):
        assert sorted(p.name for p in (project / f"data/06_models/{kind}").iterdir()) == [
            "iter_0002",
            "iter_0005",
            "iter_0006",
        ]  # best (iteration 1) + the last two
    # The manifests that recorded the deleted folders still count as complete.
    assert completed_iterations(project / "data/09_manifests") == 6
    # The window ends at the folder the loop just wrote, not at the newest folder on disk.
    again = _project(tmp_path / "again", [0.1, 0.9, 0.3, 0.2, 0.4, 0.5])
    prune_checkpoints(again, keep_last=2, current=3)
    assert sorted(p.name for p in (again / "data/06_models/policy").iterdir()) == [
        "iter_0002",
        "iter_0003",
        "iter_0004",
        "iter_0005",
        "iter_0006",
    ]  # 1 goes; 4-6 are not ours to judge
    with pytest.raises(ValueError, match="train.keep_checkpoints = 0 is invalid"):
        prune_checkpoints(project, keep_last=0)


def test_gc_keeps_the_newest_and_manifested_versions_and_removes_leftovers(tmp_path):
    project = _project(tmp_path, [0.5])
    table = project / "data/05_rollouts/iter_0000/rollouts.parquet"
    for v in (V1, V2, "2026-01-03T00.00.00.000Z"):
        (table / v).mkdir(parents=True)
        (table / v / "rollouts.parquet").write_bytes(b"r" * 100)
    manifests.write(
        "iter_0000",
        "generate_rollouts",
        {
            "save_version": V1,
            "outputs": {"rollouts": {"path": f"data/05_rollouts/iter_0000/rollouts.parquet/{V1}/rollouts.parquet"}},
        },
        project / "data/09_manifests",
    )
    (project / "data/05_rollouts/iter_0000/.x.parquet.tmp-1234").write_bytes(b"torn")
    assert table in versioned_folders(project / "data")
    pruned = gc(project)
    assert sorted(p.name for p in table.iterdir()) == [V1, "2026-01-03T00.00.00.000Z"]  # manifested + newest
    assert [p.name for p in pruned.paths] == [".x.parquet.tmp-1234", V2]
    assert manifests.leftovers(project / "data") == []


def test_retention_keeps_the_last_k_checkpoints_with_weights_and_every_memory_only_note(tmp_path):
    """``train.save_every``: iterations whose checkpoints stayed in memory leave a MEMORY_ONLY note;
    retention counts only folders with weights, so the last saved checkpoint (where a later run
    replays from) is never deleted, and the notes stay (the next iteration resolves them)."""
    from eurus_prime.datasets.checkpoint import MEMORY_ONLY

    project = _project(tmp_path, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])  # best: the last
    for i in (1, 3, 4, 5):  # iter_0002, iter_0004..iter_0006 hold notes, not weights
        for kind in ("policy", "prm"):
            folder = project / f"data/06_models/{kind}/{iter_dir(i + 1)}/{V1}/{iter_dir(i + 1)}"
            (folder / "model.safetensors").unlink()
            (folder / MEMORY_ONLY).write_text("memory only")
    prune_checkpoints(project, keep_last=1, current=5)
    for kind in ("policy", "prm"):
        left = sorted(p.name for p in (project / f"data/06_models/{kind}").iterdir())
        # iter_0001 (weights, not the last) goes; iter_0003 (the last with weights) stays; notes stay
        assert left == ["iter_0002", "iter_0003", "iter_0004", "iter_0005", "iter_0006"], left
