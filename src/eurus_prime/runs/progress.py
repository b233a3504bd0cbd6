"""Where a training campaign stands: iteration folders and which iterations are complete.

The folder names come from ``runs.layout``. These functions back the OmegaConf resolvers
registered in ``settings.py``, which the catalog and parameters use, so ``kedro run --pipelines=prime_iteration`` without ``--params=iteration=N``
runs the first iteration whose last stage has no manifest yet (``eurus_prime.runs.manifests``).
"""

from __future__ import annotations

from pathlib import Path

from eurus_prime.runs import manifests
from eurus_prime.runs.layout import iter_dir

#: The last stage: an iteration is complete when this stage's manifest exists (its outputs saved).
LAST_STAGE = "evaluate_policy"


def iteration_complete(iteration: int, manifest_root: str | Path = manifests.ROOT) -> bool:
    """Whether iteration ``iteration``'s last stage completed (its manifest exists, its outputs too)."""
    record = manifests.latest(iter_dir(iteration), LAST_STAGE, Path(manifest_root))
    return record is not None and manifests.outputs_present(record, Path(manifest_root))


def completed_iterations(manifest_root: str | Path = manifests.ROOT) -> int:
    """How many consecutive iterations from 0 are complete (see ``iteration_complete``). A relative
    ``manifest_root`` is taken from the Kedro project around the current directory, so ``kedro
    run`` from ``notebooks/`` finds the same iteration as from the project root."""
    root = Path(manifest_root)
    if not root.is_absolute():
        from kedro.utils import find_kedro_project

        project = find_kedro_project(Path.cwd())
        root = (Path(project) if project else Path.cwd()) / root
    manifest_root = root
    i = 0
    while iteration_complete(i, manifest_root):
        i += 1
    return i
