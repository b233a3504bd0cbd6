"""The training loop: ``prime_iteration`` again and again, resumable, tracked in MLflow.

Kedro pipelines have no loops (kedro#3815), so the loop lives here. Each iteration is one
``KedroSession`` run with ``runtime_params={"iteration": i}``, starting at the iteration's first
stage whose outputs are missing (so a run killed mid-iteration resumes at the stage it died in).

MLflow: one experiment per project configuration (``conf/*/mlflow.yml``) and one *campaign* run per
``data/`` folder, whose id is kept in ``data/08_reporting/campaign.json``. Every iteration's
kedro-mlflow run is a child of the campaign run (tag ``mlflow.parentRunId``, set through
``MLFLOW_RUN_CONTEXT``), and the loop copies each iteration's metrics to the campaign run at
step = iteration, so the campaign shows one curve per metric. The fluent run stack is unwound
after every session, and the campaign run is closed (FINISHED, or FAILED/KILLED on an error) when
the loop ends: no run is left active or duplicated.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from kedro.io import DatasetError

from eurus_prime.datasets.checkpoint import MEMORY_ONLY
from eurus_prime.datasets.resident import RESIDENT
from eurus_prime.engines import spmd
from eurus_prime.prime.config import PrimeConfig
from eurus_prime.prime.rollouts import NothingSelected, needs_another_draw
from eurus_prime.runs import manifests
from eurus_prime.runs.guard.hooks import IO_TIMING, MEMORY
from eurus_prime.runs.layout import iter_dir
from eurus_prime.runs.lock import data_lock
from eurus_prime.runs.progress import completed_iterations, iteration_complete
from eurus_prime.runs.retention import best_iteration, prune_checkpoints
from eurus_prime.runs.session import campaign_session, open_context, run_in_session

log = logging.getLogger(__name__)

PIPELINE = "prime_iteration"  # prime_iteration_ppo with a critic: PrimeConfig.pipeline
#: The registered model that holds the best-evaluated policy of each campaign.
REGISTERED_POLICY = "eurus_prime_policy"
CAMPAIGN_FILE = Path("data/08_reporting/campaign.json")
TRAIN_LOG = Path("data/08_reporting/train_log.jsonl")


def _unwind_mlflow(status: str = "FINISHED") -> None:
    import mlflow

    while mlflow.active_run():  # kedro-mlflow leaves the finished (or interrupted) run on the fluent stack
        mlflow.end_run(status)


def run_pipeline(
    project: Path,
    env: str | None,
    pipeline: str,
    params: dict | None = None,
    from_nodes: list[str] | None = None,
    node_names: list[str] | None = None,
) -> None:
    """One ``kedro run`` in this process (through the campaign's session inside ``train``)."""
    from eurus_prime.runs.guard import watchdog

    status = "FAILED"
    try:
        run_in_session(project, env, pipeline, params, from_nodes=from_nodes, node_names=node_names)
        status = "FINISHED"
        spmd.barrier()  # rank 0's after-run hooks (manifests) are written before any rank reads them
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        watchdog.disarm()  # a BaseException (StageTimeout, Ctrl-C) skips Kedro's error hooks
        _unwind_mlflow(status)


def _param_value(params: dict, name: str):
    """``params:a.b`` -> ``params["a"]["b"]``."""
    value = params
    for part in name[len("params:") :].split("."):
        value = value[part]
    return value


#: Parameters that say which attempt an iteration is on, not how it is configured.
ATTEMPT_PARAMS = ("params:draw",)


def incomplete_stage(catalog, pipeline, params: dict, scope: str, root: Path | None = None) -> tuple[str, str] | None:
    """The first stage of ``scope`` (in pipeline order) that is not complete now, and why: it has no
    manifest, an output is missing, a parameter it read has changed, or an input it read has been
    rewritten by a later run of an earlier stage. None when every stage is complete."""
    root = manifests.ROOT if root is None else root
    by_name = {n.name: n for n in pipeline.nodes}
    upstream: dict[str, dict] = {}
    for stage in _stages(params):
        node = by_name[stage]
        current = {
            i: _param_value(params, i) for i in node.inputs if i.startswith("params:") and i not in ATTEMPT_PARAMS
        }
        record = manifests.latest(scope, stage, root)
        reason = manifests.stale_reason(record, current, upstream, root)
        if reason is not None:
            return stage, reason
        upstream.update(record.get("outputs", {}))
    return None


def _incomplete(project: Path, env: str | None, iteration: int, params: dict | None = None, replay: str | None = None):
    """Where to resume ``iteration`` (stage, reason), or None when its last stage is complete; and
    the parameters the iteration runs with. ``replay`` (a reason) reruns the whole iteration: its
    checkpoints were kept in memory by a process that has ended (``train.save_every``).
    A complete iteration is history: later parameter changes do not reopen it. Before resuming,
    the unmanifested output versions of the stages before the resume point are deleted (a crashed
    manual rerun of one of them), so every later stage reads what the manifests record."""
    from kedro.framework.project import pipelines

    from eurus_prime.runs.guard.hooks import prune_stage

    if replay is None and iteration_complete(iteration, project / manifests.ROOT):
        return None, None
    with open_context(project, env, {**(params or {}), "iteration": iteration}) as context:
        pipeline = pipelines[_pipeline_name(context.params)]
        stages = _stages(context.params)
        if replay is not None:
            return (stages[0], replay), context.params
        todo = incomplete_stage(
            context.catalog, pipeline, context.params, iter_dir(iteration), project / manifests.ROOT
        )
        if todo is not None and spmd.is_writer():
            for node in pipeline.nodes:
                if stages.index(node.name) < stages.index(todo[0]):
                    prune_stage(context.catalog, node, iter_dir(iteration), project)
        spmd.barrier()
        return todo, context.params


#: The stages that write checkpoints (their outputs are memory-only on iterations train.save_every skips).
CHECKPOINT_STAGES = ("update_prm", "update_critic", "update_policy")


def replay_from(root: Path) -> int | None:
    """Where training must replay from: the iteration after the last one whose checkpoints are
    on disk, when a later complete iteration kept its checkpoints only in the memory of a process
    that has ended (``train.save_every``); None when there is no such iteration. The replay starts
    from the last saved checkpoint (the SFT model when none is)."""
    project = Path(root).parent.parent
    last_saved, i = -1, 0
    while iteration_complete(i, root):
        paths = [
            out["path"]
            for stage in CHECKPOINT_STAGES
            for out in (manifests.latest(iter_dir(i), stage, root) or {}).get("outputs", {}).values()
            if out.get("path", "").startswith("data/06_models/")
        ]
        if not any((project / path / MEMORY_ONLY).exists() for path in paths):
            last_saved = i
        i += 1
    return last_saved + 1 if last_saved + 1 < i else None


def saves_checkpoints(iteration: int, iterations: int, save_every: int) -> bool:
    """Whether ``iteration`` writes its checkpoints: every ``save_every``-th iteration (iterations
    save_every-1, 2*save_every-1, ...) and the campaign's last."""
    return save_every <= 1 or (iteration + 1) % save_every == 0 or iteration == iterations - 1


def _pipeline_name(params: dict) -> str:
    """The pipeline an iteration with these parameters runs (``PrimeConfig.pipeline``)."""
    return PrimeConfig.coerce(params["prime"]).pipeline


def _stages(params: dict) -> tuple[str, ...]:
    from eurus_prime.pipelines.prime_iteration.pipeline import stages_of

    return stages_of(_pipeline_name(params))


def _last_draw(iteration: int) -> int:
    """The draw the iteration's last completed ``sample_prompts`` made (where a resume goes on)."""
    record = manifests.latest(iter_dir(iteration), "sample_prompts")
    return int((record or {}).get("params", {}).get("params:draw") or 0)


def load_dataset(project: Path, env: str | None, name: str, iteration: int | None = None):
    """A catalog dataset (of ``iteration``, for iteration-scoped ones), or None if it does not exist."""
    params = {} if iteration is None else {"iteration": iteration}
    with open_context(project, env, params) as context:
        catalog = context.catalog
        return catalog.load(name) if catalog.exists(name) else None


def project_params(project: Path, env: str | None, params: dict | None = None) -> dict:
    """The project's parameters (with ``params`` overrides)."""
    with open_context(project, env, params) as context:
        return context.params


class Campaign:
    """The campaign run in MLflow (through the client API, never the fluent stack)."""

    def __init__(self, project: Path, env: str | None):
        import mlflow
        from mlflow import MlflowClient

        with open_context(project, env) as context:
            cfg = context.config_loader["mlflow"]
        uri = cfg["server"]["mlflow_tracking_uri"]
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            uri = f"sqlite:///{project / uri[len('sqlite:///') :]}"
        mlflow.set_tracking_uri(uri)
        self.client = MlflowClient(uri)
        name = cfg["tracking"]["experiment"]["name"]
        self.tracking_uri, self.experiment_name = cfg["server"]["mlflow_tracking_uri"], name
        exp = self.client.get_experiment_by_name(name)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(name)
        self.file = project / CAMPAIGN_FILE
        self.run_id = self._existing()

    def _existing(self) -> str | None:
        if not self.file.exists():
            return None
        run_id = json.loads(self.file.read_text())["run_id"]
        try:
            self.client.get_run(run_id)
        except Exception:  # the tracking database was reset: start a new campaign run
            return None
        return run_id

    def start(self, params: dict) -> str:
        if self.run_id is None:
            run = self.client.create_run(self.experiment_id, run_name="campaign", tags={"eurus_prime.role": "campaign"})
            self.run_id = run.info.run_id
            for k, v in _flatten(params).items():
                self.client.log_param(self.run_id, k, str(v)[:6000])
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"run_id": self.run_id, "experiment_id": self.experiment_id}))
            tmp.replace(self.file)
        else:
            self.client.update_run(self.run_id, status="RUNNING")
        return self.run_id

    def iteration_run(self, iteration: int, config: str) -> str | None:
        """The campaign's run of ``iteration`` with configuration digest ``config`` (one that died
        or stopped), which a resumed iteration continues instead of opening a second run. MLflow
        params are write-once, so a run made with other parameters (a changed config, another
        later draw) is not continued: the iteration gets a new run. (Runs left RUNNING by
        a dead process were closed by ``close_dangling`` when training started.)"""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.run_id}' and tags.`eurus_prime.iteration` = '{iteration}'",
        )
        same = [r for r in runs if r.data.tags.get("eurus_prime.config") == config]
        return max(same, key=lambda r: r.info.start_time).info.run_id if same else None

    def close_dangling(self) -> int:
        """Mark the campaign's iteration runs still RUNNING as KILLED: with the data lock held,
        nothing else can be running them, so their process died (kill -9, a lost machine)."""
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'")
        dangling = [r for r in runs if r.info.status == "RUNNING"]
        for r in dangling:
            self.client.set_terminated(r.info.run_id, "KILLED")
        return len(dangling)

    def child_context(self, iteration: int, config: str) -> str:
        return json.dumps(
            {"mlflow.parentRunId": self.run_id, "eurus_prime.iteration": str(iteration), "eurus_prime.config": config}
        )

    def copy_iteration_metrics(self, iteration: int, extra: dict[str, float]) -> dict[str, float]:
        """Log the iteration's child-run metrics and ``extra`` (the loop's own) to the campaign
        run at step = iteration; returns them all."""
        children = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.run_id}' and tags.`eurus_prime.iteration` = '{iteration}'",
        )
        metrics: dict[str, float] = {}
        for child in sorted(children, key=lambda r: r.info.start_time):
            metrics.update(child.data.metrics)
        metrics.update(extra)
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, iteration) for k, v in sorted(metrics.items())]
        for i in range(0, len(batch), 500):
            self.client.log_batch(self.run_id, metrics=batch[i : i + 500])
        return metrics

    def log_models(self, project: Path, env: str | None, done: int) -> tuple[dict[str, str], int | None]:
        """Log the final policy and PRM (after iteration ``done - 1``) and the best-evaluated
        policy as MLflow models (the transformers flavour, from the checkpoints' model and
        tokenizer) on the campaign run, and register the best policy as a version of
        ``REGISTERED_POLICY``. Returns the model URIs by name and the best iteration."""
        import mlflow

        best = best_iteration(project)  # the one retention keeps
        uris: dict[str, str] = {}
        with mlflow.start_run(run_id=self.run_id):
            for name, dataset, iteration in (
                ("policy", "policy_out", done - 1),
                ("prm", "prm_out", done - 1),
                ("best_policy", "policy_out", best),
            ):
                if iteration is None:
                    continue
                if name == "best_policy" and iteration == done - 1:
                    uris[name] = uris["policy"]
                    continue
                try:
                    checkpoint = load_dataset(project, env, dataset, iteration)
                except DatasetError as err:  # kept in memory only (train.save_every), and gone since
                    log.warning("MLflow models: no %s of iteration %d to log (%s)", name, iteration, err)
                    continue
                if checkpoint is None:
                    continue
                info = mlflow.transformers.log_model(
                    transformers_model={"model": checkpoint.model, "tokenizer": checkpoint.tokenizer},
                    name=name,
                    task="text-generation",
                    pip_requirements=["torch", "transformers"],  # inference fails on optional packages
                    metadata={"checkpoint": checkpoint.version, "iteration": iteration},
                )
                uris[name] = info.model_uri
        if "best_policy" in uris:
            import contextlib
            import io

            printed = io.StringIO()  # register_model prints its two lines: they belong in the log
            with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
                version = mlflow.register_model(uris["best_policy"], REGISTERED_POLICY)
            log.info("%s", printed.getvalue().strip())
            self.client.set_model_version_tag(REGISTERED_POLICY, version.version, "iteration", str(best))
        return uris, best

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def end(self, status: str) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if hasattr(v, "__dataclass_fields__"):
            from dataclasses import asdict

            v = asdict(v)
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def train(
    project: Path,
    env: str | None,
    iterations: int,
    echo: Callable[[str], None] = print,
    params: dict | None = None,
    time_budget: float | None = None,
    keep_checkpoints: int | None = None,
    log_models: bool = False,
    save_every: int = 1,
) -> list[dict]:
    """Run ``prime_iteration`` until ``iterations`` iterations are complete, resuming the first
    incomplete one at its first incomplete stage.

    Args:
        params: parameter overrides for every iteration (as ``kedro run --params``).
        time_budget: start no new iteration after this many seconds.
        keep_checkpoints: after each iteration keep only the policy/PRM checkpoints of this many
            last iterations and the best evaluated one (``eurus_prime.runs.retention``); None keeps all.
        log_models: when this call ran an iteration, log the final policy and PRM and the best
            policy as MLflow models and register the best (``Campaign.log_models``).
        save_every: write the checkpoints of every this-many-th iteration and of the last; the
            others stay in memory (resident slots) for the next iteration. A later run replays the
            iterations after the last saved checkpoint (``replay_from``). Tables are written always.
    Returns:
        One summary dict per iteration run; each is also appended to ``data/08_reporting/train_log.jsonl``.
    """
    project = project.resolve()
    params = dict(params or {})
    started = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(project)  # the catalog's iteration resolver reads data/ relative to the project
    spmd.init()
    lock = data_lock(project, "eurus-prime train") if spmd.is_writer() else contextlib.nullcontext()
    try:
        with lock, campaign_session(project, env):  # one Kedro session serves every run of the campaign
            return _train(
                project, env, iterations, echo, params, time_budget, keep_checkpoints, started, log_models, save_every
            )
    finally:
        RESIDENT.clear()  # the campaign's models leave memory with it
        os.chdir(cwd)


def _train(
    project: Path,
    env: str | None,
    iterations: int,
    echo: Callable[[str], None],
    params: dict,
    time_budget: float | None,
    keep_checkpoints: int | None,
    started: float,
    log_models: bool = False,
    save_every: int = 1,
) -> list[dict]:
    # Under torchrun only rank 0 tracks the campaign and writes its log (engines/spmd.py).
    writer = spmd.is_writer()
    if spmd.env_world()[1] > 1:
        problem = spmd_problem(PrimeConfig.coerce(project_params(project, env, params)["prime"]))
        if problem:
            raise ValueError(problem)
    campaign = Campaign(project, env) if writer else None
    summaries = []
    try:
        if campaign is not None:
            campaign.start(project_params(project, env, params))
            echo(
                f"MLflow: {campaign.tracking_uri}, experiment {campaign.experiment_name}, "
                f"campaign run {campaign.run_id}"
            )
            closed = campaign.close_dangling()
            if closed:
                echo(f"closed {closed} MLflow run(s) left RUNNING by a process that died")
        save_every = max(int(save_every or 1), 1)
        replay = replay_from(project / manifests.ROOT)
        if replay is not None:
            echo(
                f"iteration {replay + 1} onwards kept its checkpoints in memory only (train.save_every): "
                f"replaying from the last saved checkpoint, iteration {replay}'s input"
            )
        for i in range(iterations):
            why = None if replay is None or i < replay else "replay after the last saved checkpoint"
            todo, values = _incomplete(project, env, i, params, why)
            if todo is None:
                continue
            if time_budget is not None and time.perf_counter() - started >= time_budget:
                echo(f"time budget of {time_budget:.0f} s spent; stopping before iteration {i}")
                break
            first, why = todo
            resumed = first != "sample_prompts" or why != "no manifest"
            if resumed:
                echo(f"iteration {i + 1}/{iterations} ({iter_dir(i)}): resuming at stage {first} ({why})")
            log.info("iteration %d/%d (%s)", i + 1, iterations, iter_dir(i))
            start = time.perf_counter()
            served, read = RESIDENT.hits, RESIDENT.misses
            draw = _last_draw(i) if first != "sample_prompts" else 0
            saving = {"save_checkpoints": saves_checkpoints(i, iterations, save_every)}
            draw, totals = _run_draws(project, env, campaign, i, {**params, **saving}, values, first, draw, echo)
            seconds = time.perf_counter() - start
            totals["resident/served"] = float(RESIDENT.hits - served)  # checkpoint loads served from memory
            totals["resident/read"] = float(RESIDENT.misses - read)  # and read from disk
            extra = {"time/iteration_wall": seconds, **totals}
            metrics = campaign.copy_iteration_metrics(i, extra) if campaign is not None else extra
            report = load_dataset(project, env, "eval_report", i)
            if campaign is not None and report is not None and len(report):
                campaign.log_text(report.to_string(index=False), f"eval/{iter_dir(i)}_eval_report.txt")
            summary = {
                "iteration": i,
                "seconds": seconds,
                "elapsed": time.perf_counter() - started,
                "resumed_at": todo[0],
                "draws": draw + 1,
                **metrics,
            }
            summaries.append(summary)
            if writer:
                with open(project / TRAIN_LOG, "a") as f:
                    f.write(json.dumps(summary) + "\n")
            echo(f"iteration {i + 1:>{len(str(iterations))}}/{iterations}: " + _progress_line(summary))
            if keep_checkpoints and writer:
                pruned = prune_checkpoints(project, int(keep_checkpoints), current=i + 1)
                if pruned.paths:
                    log.info(
                        f"  retention (train.keep_checkpoints={keep_checkpoints}): deleted "
                        f"{len(pruned.paths)} checkpoint version(s), {pruned.bytes / 2**20:.1f} MiB"
                    )
            spmd.barrier()  # retention deleted on rank 0 before any rank loads again
        if log_models and summaries and campaign is not None:
            done = completed_iterations(project / manifests.ROOT)
            uris, best = campaign.log_models(project, env, done)
            echo(
                f"MLflow models: {', '.join(uris)} on the campaign run; best policy (iteration "
                f"{best}) registered as {REGISTERED_POLICY}"
            )
        if campaign is not None:
            campaign.end("FINISHED")
    except KeyboardInterrupt:
        if campaign is not None:
            campaign.end("KILLED")
        raise
    except BaseException:
        if campaign is not None:
            campaign.end("FAILED")
        raise
    return summaries


def _run_draws(
    project: Path,
    env: str | None,
    campaign: Campaign | None,
    iteration: int,
    params: dict,
    values: dict,
    first: str,
    draw: int,
    echo: Callable[[str], None],
) -> tuple[int, dict[str, float]]:
    """Run the iteration from stage ``first`` of draw ``draw``; returns the last draw and the
    hooks' I/O time and memory metrics over all of the iteration's sessions (``add_totals``).

    The reference's filtering loop (``prime.filter_mode: regenerate``): the first four stages run
    for draw 0, 1, ... (``params:draw``), each draw extending the iteration's tables, until B
    prompt groups pass the filter or ``prime.max_draws_per_iteration`` draws are made; then the
    rest of the iteration trains on the first B. In every mode a draw where no group passes is
    followed by another, within the same limit."""
    cfg = PrimeConfig.coerce(values["prime"])
    stages = _stages(values)
    filter_at = stages.index("filter_prompts")
    totals: dict[str, float] = {}
    while True:
        digest = config_digest(values, draw)
        attempt = {**params, "draw": draw}
        try:
            if stages.index(first) <= filter_at:
                _run_iteration(
                    project,
                    env,
                    campaign,
                    iteration,
                    attempt,
                    stages[stages.index(first) : filter_at + 1],
                    digest,
                    cfg.pipeline,
                )
                add_totals(totals, {**IO_TIMING.totals(), **MEMORY.totals()})
                report = load_dataset(project, env, "filter_report", iteration)
                if report is not None and needs_another_draw(report, cfg):
                    log.info(
                        "  draw %d: %d of %d prompt groups in band after %d draw(s); drawing %d more prompts",
                        draw + 1,
                        int(report["selected"].sum()),
                        cfg.prompts_per_step,
                        draw + 1,
                        cfg.prompts_drawn,
                    )
                    draw, first = draw + 1, "sample_prompts"
                    continue
                first = stages[filter_at + 1]
            _run_iteration(
                project, env, campaign, iteration, attempt, stages[stages.index(first) :], digest, cfg.pipeline
            )
            add_totals(totals, {**IO_TIMING.totals(), **MEMORY.totals()})
            return draw, totals
        except NothingSelected as err:
            add_totals(totals, {**IO_TIMING.totals(), **MEMORY.totals()})
            if draw + 1 >= cfg.max_draws_per_iteration:
                raise NothingSelected(
                    f"{err} — still nothing after {draw + 1} draw(s) (prime.max_draws_per_iteration="
                    f"{cfg.max_draws_per_iteration}); stopping. Widen the band (prime.filter_low/filter_high), "
                    "use prime.filter_mode=fixed_batch, or change the prompt set."
                ) from None
            draw, first = draw + 1, "sample_prompts"
            echo(f"  {err}; drawing again (draw {draw + 1} of at most {cfg.max_draws_per_iteration})")


def spmd_problem(cfg: PrimeConfig) -> str | None:
    """Why ``cfg`` cannot run as an SPMD campaign under torchrun yet, or None. Every rank runs
    generation and scoring in full on its own device; what would instead span or pin GPUs is
    refused, naming the parameter."""
    if cfg.rollout_engine == "vllm":
        return (
            "prime.rollout_engine=vllm under torchrun: every rank would start its own vLLM engine "
            "(issue 19: vLLM per rank is not built yet); use fast or hf, or run without torchrun"
        )
    if cfg.score_device and ":" in cfg.score_device:
        return (
            f"prime.score_device={cfg.score_device} under torchrun: every rank would score on that one "
            "device; use `cuda` (each rank's own GPU), or run without torchrun"
        )
    return None  # prime.deepspeed.num_procs is moot: the campaign's ranks are the update's ranks


def add_totals(acc: dict[str, float], session: dict[str, float]) -> None:
    """Fold one session's hook metrics into the iteration's: times add up, a node's
    ``_rss_before_mb`` is its last run's, peaks are the highest."""
    for key, value in session.items():
        if key.startswith("time/"):
            acc[key] = acc.get(key, 0.0) + value
        elif key.endswith("_rss_before_mb"):
            acc[key] = value
        else:
            acc[key] = max(acc.get(key, value), value)


def config_digest(values: dict, draw: int) -> str:
    """A digest of the parameters one iteration attempt runs with (what its MLflow run logs):
    ``values`` are the session's parameters."""
    import hashlib

    from eurus_prime.runs.manifests import canonical

    wanted = {k: canonical(values.get(k)) for k in ("prime", "evaluation", "iteration")}
    wanted["draw"] = int(draw)
    return hashlib.sha256(json.dumps(wanted, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _run_iteration(
    project: Path,
    env: str | None,
    campaign: Campaign | None,
    iteration: int,
    params: dict,
    stages: tuple[str, ...] | list[str],
    config: str,
    pipeline: str = PIPELINE,
) -> None:
    """One session of ``prime_iteration`` running ``stages``, logging to the iteration's MLflow
    run: the existing one with the same parameters (``config``) when there is one (a resumed
    iteration, or a draw's later stages, continue its run)."""
    params = {**params, "iteration": iteration}
    if campaign is not None:  # rank 0 (or the only process): the iteration's MLflow run
        os.environ["MLFLOW_RUN_CONTEXT"] = campaign.child_context(iteration, config)
        existing = campaign.iteration_run(iteration, config)
        if existing:
            os.environ["MLFLOW_RUN_ID"] = existing
    try:
        # The stages by name, not what lies downstream of the first: evaluate_prm is a sibling of
        # estimate_advantages (Kedro's --from-nodes would leave it out), and a draw stops at the filter.
        run_pipeline(project, env, pipeline, params, node_names=list(stages))
    finally:
        os.environ.pop("MLFLOW_RUN_CONTEXT", None)
        os.environ.pop("MLFLOW_RUN_ID", None)


def _progress_line(s: dict) -> str:
    parts = [f"done in {s['seconds']:.0f} s"]
    if "train_verify_score/all" in s:
        parts.append(f"train score {100 * s['train_verify_score/all']:.1f}%")
    if "filter/selected" in s:
        parts.append(f"{int(s['filter/selected'])} groups selected")
    if "prm/acc_before" in s:
        parts.append(f"PRM pair acc {s['prm/acc_before']:.2f}")
    if "eval/all" in s:
        split = (
            f" (in-distribution {100 * s['eval/in_distribution']:.1f}%, novel {100 * s['eval/novel']:.1f}%)"
            if "eval/novel" in s and "eval/in_distribution" in s
            else ""
        )
        parts.append(f"held-out pass@1 {100 * s['eval/all']:.1f}%{split}")
    return ", ".join(parts)


def parse_params(text: str | None) -> dict:
    """``a.b=1,c=x`` -> ``{"a": {"b": 1}, "c": "x"}``, parsed by ``kedro run``'s own ``--params`` option (its
    click callback, ``kedro.framework.cli.utils._split_params``: items split on commas, ``key=value`` pairs read
    by ``OmegaConf.from_dotlist``, so a value is a YAML scalar and a dotted key nests). Raises ValueError
    naming the first bad item."""
    import click
    from kedro.framework.cli.project import run
    from kedro.framework.cli.utils import split_string

    option = next(p for p in run.params if p.name == "params")
    ctx = click.Context(run)
    try:
        return dict(option.process_value(ctx, text or ""))
    except Exception as err:
        bad: dict[str, Exception] = {}  # the items to blame, each parsed alone
        for item in split_string(ctx, option, text or ""):
            try:
                option.process_value(ctx, item)
            except Exception as item_err:
                bad.setdefault(item, item_err)
        if not bad:
            raise ValueError(f"--params {text!r}: {type(err).__name__}: {err}") from err
        # the first item that is not key=value, as Kedro checks them all before it reads any value
        item, why = min(bad.items(), key=lambda kv: not isinstance(kv[1], click.UsageError))
        if isinstance(why, click.UsageError):
            raise ValueError(f"--params item {item!r} is not key=value: {why.message}") from why
        raise ValueError(f"--params item {item!r}: {type(why).__name__}: {why}") from why
