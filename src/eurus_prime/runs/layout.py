"""Folder naming of a campaign (a leaf: imports nothing of ours).

Every artifact of iteration i lives under an ``iter_NNNN`` folder (``data/05_rollouts/iter_0003/``
...). The policy and PRM that iteration i *consumes* are under ``iter_i`` of their model folders,
and the ones it *produces* under ``iter_{i+1}``: iteration i+1 starts from iteration i's output.
"""

from __future__ import annotations


def iter_dir(iteration: int | str) -> str:
    """``iter_NNNN`` for an iteration number."""
    i = int(iteration)
    if i < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}")
    return f"iter_{i:04d}"


def next_iter_dir(iteration: int | str) -> str:
    """The folder of the checkpoints iteration ``i`` writes: ``iter_{i+1}``."""
    return iter_dir(int(iteration) + 1)
