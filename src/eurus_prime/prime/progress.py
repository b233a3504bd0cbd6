"""Where a training campaign stands: iteration folders and which iterations are complete.

Every artifact of iteration i lives under an ``iter_NNNN`` folder (``data/05_rollouts/iter_0003/``
...). The policy and PRM that iteration i *consumes* are under ``iter_i`` of their model folders,
and the ones it *produces* under ``iter_{i+1}``: iteration i+1 starts from iteration i's output.

These functions back the OmegaConf resolvers registered in ``settings.py``, which the catalog and
parameters use, so ``kedro run --pipelines=prime_iteration`` without ``--params=iteration=N``
runs the first iteration that has no evaluation report yet.
"""

from __future__ import annotations

from pathlib import Path

from eurus_prime.datasets.versions import has_version

#: The last stage's output: an iteration is complete when this table exists.
COMPLETION_TABLE = "eval_report.parquet"


def iter_dir(iteration) -> str:
    """``iter_NNNN`` for an iteration number."""
    i = int(iteration)
    if i < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}")
    return f"iter_{i:04d}"


def next_iter_dir(iteration) -> str:
    """The folder of the checkpoints iteration ``i`` writes: ``iter_{i+1}``."""
    return iter_dir(int(iteration) + 1)


def completed_iterations(report_root: str | Path) -> int:
    """How many consecutive iterations from 0 have their completion table under ``report_root``."""
    root = Path(report_root)
    i = 0
    while has_version(root / iter_dir(i) / COMPLETION_TABLE):
        i += 1
    return i

