"""Project hooks: dataset I/O timing, per-node peak memory, and the stage guard (manifests,
watchdogs, fault points).

Nodes time their own work (``time/<node>`` metrics). What a run spends around them, in the
catalog, is measured here, so that the training loop can report the framework and I/O share of
an iteration (``time/io_load``, ``time/io_save``), and each node's peak resident memory
(``memory/<node>_peak_rss_mb``, ``memory/<node>_rss_before_mb``, ``memory/peak_rss_mb``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from pathlib import Path

from kedro.framework.hooks import hook_impl
from kedro.io.core import AbstractVersionedDataset

from eurus_prime.runs import manifests
from eurus_prime.runs.guard import faults, monitor, watchdog

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


#: Linux: writing "5" here resets the process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0).
CLEAR_REFS = Path("/proc/self/clear_refs")
#: Linux: VmRSS (resident now) and VmHWM (peak resident since start or the last reset), in kB.
PROC_STATUS = Path("/proc/self/status")


def read_rss_kb(path: Path | None = None) -> dict[str, int]:
    """``{"VmRSS": kB, "VmHWM": kB}`` of this process; empty where /proc is not there."""
    out: dict[str, int] = {}
    try:
        with open(path or PROC_STATUS) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out


def reset_peak_rss(path: Path | None = None) -> bool:
    """Reset VmHWM to the current RSS; False where that is not possible (not Linux, a read-only
    /proc, a kernel or sandbox that refuses the write)."""
    try:
        with open(path or CLEAR_REFS, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class MemoryHooks:
    """Peak resident memory (RSS) of each node, Linux only.

    Before a node runs (its inputs are loaded by then) the process's peak-RSS counter is reset;
    after it returns (before its outputs are saved) the peak is read. So
    ``memory/<node>_peak_rss_mb`` is the highest RSS of the whole process while the node function
    ran, ``memory/<node>_rss_before_mb`` the RSS it started from (loaded inputs and whatever the
    process already held), and ``memory/peak_rss_mb`` the highest RSS of the pipeline run, loads
    and saves included. RSS counts memory touched, in this process only (not in sandboxed
    verifier subprocesses). Where the counter cannot be reset (no writable
    ``/proc/self/clear_refs``), nothing is recorded: the peak since the process started would
    be wrong for every node but the first.
    """

    def __init__(self) -> None:
        self.before: dict[str, float] = {}
        self.peak: dict[str, float] = {}
        self.run_peak: float | None = None
        self._warned = False

    def _reset(self) -> bool:
        if reset_peak_rss():
            return True
        if not self._warned:
            log.debug("memory hooks: cannot reset the peak RSS (%s is not writable); no memory/ metrics", CLEAR_REFS)
            self._warned = True
        return False

    def _note_run_peak(self, hwm_kb: int | None) -> None:
        if hwm_kb is not None and self.run_peak is not None:
            self.run_peak = max(self.run_peak, hwm_kb / 1024)

    @hook_impl
    def before_pipeline_run(self) -> None:
        self.before.clear()
        self.peak.clear()
        self.run_peak = 0.0 if self._reset() and read_rss_kb() else None

    @hook_impl(trylast=True)  # the last hook before the node: other hooks' work is not counted
    def before_node_run(self, node) -> None:
        # The peak since the last reset covers the previous node's saves and this node's loads.
        self._note_run_peak(read_rss_kb().get("VmHWM"))
        self.before.pop(node.name, None)
        rss = read_rss_kb().get("VmRSS")
        if rss is not None and self._reset():
            self.before[node.name] = rss / 1024

    @hook_impl(tryfirst=True)
    def after_node_run(self, node) -> None:
        if node.name not in self.before:
            return
        hwm = read_rss_kb().get("VmHWM")
        if hwm is None:
            self.before.pop(node.name)
            return
        self.peak[node.name] = hwm / 1024
        self._note_run_peak(hwm)

    @hook_impl
    def on_node_error(self, node) -> None:
        self.before.pop(node.name, None)

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._note_run_peak(read_rss_kb().get("VmHWM"))

    def totals(self) -> dict[str, float]:
        """The metrics of the last pipeline run (nodes that ran to completion only)."""
        out: dict[str, float] = {}
        for name, peak in self.peak.items():
            out[f"memory/{name}_peak_rss_mb"] = round(peak, 2)
            out[f"memory/{name}_rss_before_mb"] = round(self.before[name], 2)
        if self.peak and self.run_peak:
            out["memory/peak_rss_mb"] = round(self.run_peak, 2)
        return out


#: Registered in settings.py; the training loop reads it after each session.
MEMORY = MemoryHooks()


class StageGuardHooks:
    """Completion manifests, stage watchdogs and fault-injection points around every node.

    - before a node runs: prune its output versions that no manifest records (a run of it that
      died), arm its watchdog (``params:watchdog``) and note its inputs' versions and parameters;
    - after its last output is saved: write its manifest (``eurus_prime.runs.manifests``), atomically,
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
                log.warning(
                    "%s: removed %d output version(s) of an earlier run of this stage that did not complete: %s",
                    node.name,
                    len(removed),
                    ", ".join(map(str, removed)),
                )
        self._pending[node.name] = set(node.outputs)
        self._records[node.name] = {
            "stage": node.name,
            "scope": scope,
            "iteration": iteration,
            "pipelines": self._pipeline_names,
            "started_at": _now(),
            "_t0": time.perf_counter(),
            "params": {k: manifests.canonical(v) for k, v in inputs.items() if k.startswith("params:")},
            "inputs": {
                k: _input_provenance(catalog, k, v, self.project)
                for k, v in inputs.items()
                if not k.startswith("params:")
            },
        }
        seconds = (self._watchdog.get("stages") or {}).get(node.name, self._watchdog.get("default_s"))
        watchdog.arm(
            node.name,
            seconds,
            self.project / self._watchdog.get("report_dir", "data/08_reporting/watchdog"),
            grace=float(self._watchdog.get("grace_s", 30)),
        )
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
        record["save_version"] = next(
            (o["version"] for o in record["outputs"].values() if o.get("version")), record["finished_at"]
        )
        prime = record["params"].get("params:prime")
        if isinstance(prime, dict):
            record["seed"] = prime.get("seed")
        record["versions"] = dict(_library_versions())
        manifests.write(record["scope"], node.name, record, self.manifest_root)
        self._stop()

    @staticmethod
    def _stop() -> None:
        watchdog.disarm()
        _node_ended()


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
            f"(max_position_embeddings of {policy._describe()['filepath']}); lower them"
        )


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


def flat_params(value, prefix: str) -> dict[str, str]:
    """A parameter block (a typed dataclass, or a mapping) as MLflow params with dotted keys:
    ``prime.policy_lr`` -> ``"1e-06"``; nested mappings continue the key."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if not isinstance(value, dict):
        return {prefix: str(value)[:6000]}
    out: dict[str, str] = {}
    for key, v in value.items():
        out.update(flat_params(v, f"{prefix}.{key}"))
    return out


class MlflowRunHooks:
    """What kedro-mlflow leaves out of a run. It logs a typed parameter block (``params:prime``,
    a dataclass once Kedro has built it) as one string; here every field is a param of its own
    (``prime.policy_lr``), so runs sort and filter by it. And each checkpoint a stage reads or
    writes is a tag: ``checkpoint.in.policy_in`` = ``policy/iter_0003@<version>``,
    ``checkpoint.out.policy_out`` = ``<path>@<version>``."""

    def __init__(self) -> None:
        self._catalog = None
        self._project = Path.cwd()
        self._logged: dict[str, set[str]] = defaultdict(set)

    @hook_impl
    def after_context_created(self, context) -> None:
        self._project = Path(context.project_path)

    @hook_impl
    def before_pipeline_run(self, run_params: dict, pipeline, catalog) -> None:
        self._catalog = catalog

    @hook_impl
    def before_node_run(self, node, inputs: dict) -> None:
        run = _active_mlflow_run()
        if run is None:
            return
        import mlflow

        params: dict[str, str] = {}
        for name, value in inputs.items():
            if name.startswith("params:") and (is_dataclass(value) or isinstance(value, dict)):
                params.update(flat_params(value, name[len("params:") :]))
        logged = self._logged[run.info.run_id]
        new = {k: v for k, v in params.items() if k not in logged}
        if new:
            mlflow.log_params(new)  # one run holds one configuration: a key is logged once
            logged.update(new)
        for name, value in inputs.items():
            if hasattr(value, "version") and hasattr(value, "model"):
                mlflow.set_tag(f"checkpoint.in.{name}", value.version)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data) -> None:
        if not (hasattr(data, "model") and hasattr(data, "tokenizer")) or _active_mlflow_run() is None:
            return
        import mlflow

        out = _output_provenance(self._catalog, dataset_name, self._project) if self._catalog is not None else {}
        if out.get("version"):
            mlflow.set_tag(f"checkpoint.out.{dataset_name}", f"{out['path']}@{out['version']}")


def _active_mlflow_run():
    import sys

    if "mlflow" not in sys.modules:  # kedro-mlflow imports it; without it there is no run
        return None
    import mlflow

    return mlflow.active_run()


class RankHooks:
    """On the SPMD ranks other than 0, which write no manifests and so run without the stage
    guard: the running node's name and progress, which the progress monitor and fault injection
    (``EURUS_PRIME_FAULT_RANK``: one rank dies, as when its process or machine is lost) need."""

    @hook_impl
    def before_node_run(self, node) -> None:
        faults.current_node = node.name
        monitor.begin(node.name)
        faults.point("start")

    @hook_impl
    def after_node_run(self, node) -> None:
        faults.point("middle", "outputs computed")
        _node_ended()

    @hook_impl
    def on_node_error(self, node) -> None:
        _node_ended()


def _node_ended() -> None:
    """No node is running any more: for the progress monitor and fault injection (both hook classes)."""
    monitor.end()
    faults.current_node = None


#: Registered in settings.py.
STAGE_GUARD = StageGuardHooks()
OTHER_RANKS = RankHooks()
MLFLOW_RUN = MlflowRunHooks()
