"""Project hooks: dataset I/O timing, and the stage guard (manifests, watchdogs, fault points).

Nodes time their own work (``time/<node>`` metrics). What a run spends around them, in the
catalog, is measured here, so that the training loop can report the framework and I/O share of
an iteration (``time/io_load``, ``time/io_save``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from kedro.framework.hooks import hook_impl
from kedro.io.core import AbstractVersionedDataset

from eurus_prime import faults, manifests, monitor, watchdog

log = logging.getLogger(__name__)


class IOTimingHooks:
    """Accumulates seconds per dataset load and save during one pipeline run."""

    def __init__(self) -> None:
        self.load: dict[str, float] = defaultdict(float)
        self.save: dict[str, float] = defaultdict(float)
        self._started: dict[tuple[str, str], float] = {}

    @hook_impl
    def before_pipeline_run(self) -> None:
        self.load.clear()
        self.save.clear()
        self._started.clear()

    @hook_impl
    def before_dataset_loaded(self, dataset_name: str) -> None:
        self._started[("load", dataset_name)] = time.perf_counter()

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str) -> None:
        start = self._started.pop(("load", dataset_name), None)
        if start is not None:
            self.load[dataset_name] += time.perf_counter() - start

    @hook_impl
    def before_dataset_saved(self, dataset_name: str) -> None:
        self._started[("save", dataset_name)] = time.perf_counter()

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        start = self._started.pop(("save", dataset_name), None)
        if start is not None:
            self.save[dataset_name] += time.perf_counter() - start

    def totals(self) -> dict[str, float]:
        return {"time/io_load": sum(self.load.values()), "time/io_save": sum(self.save.values())}


#: The instance registered in settings.py; the training loop reads it after each session.
IO_TIMING = IOTimingHooks()


class StageGuardHooks:
    """Completion manifests, stage watchdogs and fault-injection points around every node.

    - before a node runs: prune its output versions that no manifest records (a run of it that
      died), arm its watchdog (``params:watchdog``) and note its inputs' versions and parameters;
    - after its last output is saved: write its manifest (``eurus_prime.manifests``), atomically,
      and disarm the watchdog. A node that dies before that has no manifest: it is incomplete.
    """

    def __init__(self) -> None:
        self._pending: dict[str, set[str]] = {}
        self._records: dict[str, dict] = {}
        self._watchdog: dict = {}
        self._catalog = None
        self._pipeline_names: list[str] = []
        self.project = Path.cwd()

    @hook_impl
    def after_context_created(self, context) -> None:
        self.project = Path(context.project_path).resolve()

    @property
    def manifest_root(self) -> Path:
        return self.project / manifests.ROOT

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._stop()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._stop()

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        self._pending.clear()
        self._records.clear()
        self._catalog = catalog
        self._pipeline_names = list(run_params.get("pipeline_names") or [])
        try:
            self._watchdog = dict(catalog.load("params:watchdog") or {})
        except Exception:  # noqa: BLE001 - a project without a watchdog block runs unwatched
            self._watchdog = {}
        preflight(pipeline, catalog)

    @hook_impl
    def before_node_run(self, node, catalog, inputs: dict) -> None:
        faults.current_node = node.name
        monitor.begin(node.name)
        iteration = inputs.get("params:iteration")
        scope = manifests.scope_of(iteration)
        if iteration is not None:
            removed = prune_stage(catalog, node, scope, self.project)
            if removed:
                log.warning("%s: removed %d output version(s) of an earlier run of this stage that did "
                            "not complete: %s", node.name, len(removed), ", ".join(map(str, removed)))
        self._pending[node.name] = set(node.outputs)
        self._records[node.name] = {
            "stage": node.name,
            "scope": scope,
            "iteration": iteration,
            "pipelines": self._pipeline_names,
            "started_at": _now(),
            "_t0": time.perf_counter(),
            "params": {k: manifests.canonical(v) for k, v in inputs.items() if k.startswith("params:")},
            "inputs": {k: _input_provenance(catalog, k, v, self.project) for k, v in inputs.items()
                       if not k.startswith("params:")},
        }
        seconds = (self._watchdog.get("stages") or {}).get(node.name, self._watchdog.get("default_s"))
        watchdog.arm(node.name, seconds, self.project / self._watchdog.get("report_dir", "data/08_reporting/watchdog"),
                     grace=float(self._watchdog.get("grace_s", 30)))
        faults.point("start")

    @hook_impl
    def after_node_run(self, node) -> None:
        faults.point("middle", "outputs computed, none saved")

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, node) -> None:
        pending = self._pending.get(node.name) if node is not None else None
        if pending is None:
            return
        pending.discard(dataset_name)
        faults.point("saved", dataset_name)
        if not pending:
            self._complete(node)

    @hook_impl
    def on_node_error(self, node) -> None:
        self._pending.pop(node.name, None)
        self._records.pop(node.name, None)
        self._stop()

    def _complete(self, node) -> None:
        record = self._records.pop(node.name)
        del self._pending[node.name]
        record["seconds"] = time.perf_counter() - record.pop("_t0")
        record["finished_at"] = _now()
        record["outputs"] = {o: _output_provenance(self._catalog, o, self.project) for o in node.outputs}
        record["save_version"] = next((o["version"] for o in record["outputs"].values() if o.get("version")),
                                      record["finished_at"])
        prime = record["params"].get("params:prime")
        if isinstance(prime, dict):
            record["seed"] = prime.get("seed")
        record["versions"] = dict(_library_versions())
        manifests.write(record["scope"], node.name, record, self.manifest_root)
        self._stop()

    @staticmethod
    def _stop() -> None:
        watchdog.disarm()
        monitor.end()
        faults.current_node = None


def preflight(pipeline, catalog) -> None:
    """Checks that need more than the typed config, before any node runs: the response budget must
    fit the policy's context window."""
    names = {n.name for n in pipeline.nodes}
    if "generate_rollouts" not in names:
        return
    from eurus_prime.prime.config import PrimeConfig

    prime = PrimeConfig.coerce(catalog.load("params:prime"))
    policy = _dataset(catalog, "policy_in")
    if policy is None or not hasattr(policy, "model_config"):
        return
    try:
        context = getattr(policy.model_config(), "max_position_embeddings", None)
    except Exception:  # noqa: BLE001 - a missing checkpoint is reported by its load, with the command that makes it
        return
    budget = prime.max_prompt_length + prime.max_response_length
    if context is not None and budget > context:
        raise ValueError(
            f"prime.max_prompt_length ({prime.max_prompt_length}) + prime.max_response_length "
            f"({prime.max_response_length}) = {budget} tokens exceeds the policy's context of {context} "
            f"(max_position_embeddings of {policy._describe()['filepath']}); lower them")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _relative(path: str, project: Path) -> str:
    """A dataset path relative to the project root (how manifests record it), whatever the cwd."""
    p = Path(path)
    p = p if p.is_absolute() else Path.cwd() / p
    try:
        return str(p.resolve().relative_to(project))
    except ValueError:
        return str(p)


def _dataset(catalog, name: str):
    try:
        return catalog[name]
    except Exception:  # noqa: BLE001 - a name the catalog cannot materialise has no provenance
        return None


def prune_stage(catalog, node, scope: str, project: Path) -> list[Path]:
    """Delete the output versions of ``node`` in ``scope`` that none of its manifests records
    (``manifests.prune_unmanifested`` over the node's versioned output folders)."""
    folders = [f for f in (_versioned_folder(catalog, o, project) for o in node.outputs) if f is not None]
    return manifests.prune_unmanifested(scope, node.name, folders, project / manifests.ROOT)


def _versioned_folder(catalog, name: str, project: Path) -> Path | None:
    """The dataset's versioned folder, absolute."""
    ds = _dataset(catalog, name)
    if isinstance(ds, AbstractVersionedDataset) and getattr(ds, "_version", None) is not None:
        return project / _relative(str(ds._filepath), project)
    return None


def _input_provenance(catalog, name: str, value, project: Path) -> dict:
    """The version an input was loaded at (the format ``_output_provenance`` writes, so a later
    stage's input can be matched against the earlier stage's output); a checkpoint also records
    its label (``policy/iter_0003@<version>``, or the SFT model it fell back to)."""
    out: dict = {}
    if hasattr(value, "version") and hasattr(value, "model"):
        out["label"] = value.version
    ds = _dataset(catalog, name)
    if isinstance(ds, AbstractVersionedDataset) and getattr(ds, "_version", None) is not None:
        try:
            out.update(version=ds.resolve_load_version(), path=_relative(str(ds._get_load_path()), project))
        except Exception:  # noqa: BLE001 - no version of its own: a checkpoint's fallback (iteration 0)
            out.setdefault("version", None)
    elif not out:
        out["type"] = type(ds).__name__ if ds is not None else "memory"
    return out


def _output_provenance(catalog, name: str, project: Path) -> dict:
    ds = _dataset(catalog, name)
    if isinstance(ds, AbstractVersionedDataset) and getattr(ds, "_version", None) is not None:
        version = ds.resolve_save_version()  # _get_save_path() refuses a path that exists: build it
        return {"version": version, "path": _relative(str(ds._get_versioned_path(version)), project)}
    if type(ds).__name__.startswith("Mlflow"):
        import mlflow

        run = mlflow.active_run()
        return {"mlflow_run_id": run.info.run_id if run else None}
    return {"type": type(ds).__name__ if ds is not None else "memory"}


@functools.lru_cache(maxsize=1)
def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("eurus_prime", "torch", "transformers", "kedro"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


#: Registered in settings.py.
STAGE_GUARD = StageGuardHooks()
