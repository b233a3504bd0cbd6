"""Helpers the benchmarks share: fresh copies of the project (with or without its SFT model),
``eurus-prime`` runs in them and their train logs, what else the machine did meanwhile, the
prime_iteration stages, tiny random models measured in child processes, and the results files.

Nothing here imports torch, Kedro or eurus_prime at import time: what needs them imports them when
called, so every script's ``--help`` stays fast."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Where every benchmark writes its results (``<name>.json``, ``<name>.md``, ...).
RESULTS = ROOT / "benchmarks/results"
#: This interpreter's ``eurus-prime`` command.
EURUS_PRIME = str(Path(sys.executable).with_name("eurus-prime"))
#: The environment of every child run: no progress bars, no Kedro telemetry.
QUIET_ENV = {"TQDM_DISABLE": "1", "KEDRO_DISABLE_TELEMETRY": "1"}
#: Other work using more than this many cores on average makes a run "busy" (rerun, flagged).
BUSY_OTHER_CORES = 0.25

#: What a copy needs to skip the bootstrap: the world, the SFT model and its evaluation.
SFT_ARTIFACTS = (
    "data/01_raw",
    "data/02_primary",
    "data/06_models/sft_model",
    "data/06_models/tokenizer",
    "data/07_model_output/sft_eval_items.parquet",
    "data/08_reporting/sft_eval_report.parquet",
    "data/05_rollouts/prm_eval_set.parquet",
)


def fresh_project(dest: Path, with_sft_from: Path | None = None) -> Path:
    """Copy conf/, src/, pyproject.toml and .telemetry to ``dest`` (no developer overrides in
    conf/local), and, with ``with_sft_from``, that project's bootstrap artifacts.

    ``dest`` must be new or empty: a project left there by an earlier run would mix its tables,
    checkpoints and MLflow runs with this one's."""
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(
            f"{dest} already holds files (a project from an earlier run?): remove it, or give the "
            "benchmark another --workdir"
        )
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("conf", "src", "pyproject.toml", ".telemetry"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(src, dest / name)
    for f in (dest / "conf/local").glob("*.yml"):
        f.unlink()  # benchmark the committed defaults, not a developer's overrides
    if with_sft_from is not None:
        for rel in SFT_ARTIFACTS:
            src = with_sft_from / rel
            if not src.exists():
                raise FileNotFoundError(f"{src} is missing: run `make train` (the bootstrap) in {with_sft_from} first")
            shutil.copytree(src, dest / rel)
    return dest


class LoadMonitor:
    """What else the machine did while a run went on: other work inflates wall times.

    ``other_cores``: the CPU seconds that processes outside this one's process tree used, per
    second of the run, i.e. how many cores other work took on average. Every ``every`` seconds
    it reads ``/proc/<pid>/stat`` of every process; a process is ours when it descends from this
    one (and stays ours once seen, even when its parent dies), so a run's own verifier workers do
    not count as other work. Processes that start and end between two samples are not seen.
    ``load_mean``/``load_max``: the 1-minute load average (it lags, and counts the benchmark too).
    ``summary()`` gives these; ``foreign()`` the same CPU time as seconds, a share of the whole
    machine and the processes that used most.
    """

    def __init__(self, every: float = 1.0) -> None:
        self.samples: list[float] = []
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ours: set[tuple[int, int]] = set()
        self._cpu: dict[tuple[int, int], float] = {}
        self._other = 0.0
        self._other_by: dict[tuple[int, int], float] = {}
        self._names: dict[tuple[int, int], str] = {}
        self._ok = True
        self._t0 = 0.0
        self.wall_seconds = 0.0
        self.other_cores: float | None = None

    @staticmethod
    def _processes() -> dict[tuple[int, int], tuple[int, float, str]] | None:
        """(pid, start time) -> (parent pid, CPU seconds, name) of every process; None without /proc."""
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        try:
            pids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
        except OSError:
            return None
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    data = f.read()
                rest = data[data.rindex(")") + 2 :].split()  # fields 3.. (the name may hold spaces)
                name = data[data.index("(") + 1 : data.rindex(")")]
                out[(pid, int(rest[19]))] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / tick, name)
            except (OSError, ValueError, IndexError):
                continue
        return out or None

    def _sample(self, first: bool = False) -> None:
        procs = self._processes()
        if procs is None:
            self._ok = False
            return
        me = os.getpid()
        our_pids = {pid for pid, _ in self._ours} | {me}
        changed = True
        while changed:  # a child can be listed before its parent
            changed = False
            for key, (ppid, _, _) in procs.items():
                if key not in self._ours and (key[0] == me or ppid in our_pids):
                    self._ours.add(key)
                    our_pids.add(key[0])
                    changed = True
        for key, (_, cpu, name) in procs.items():
            if key not in self._ours and not first:
                used = cpu - self._cpu.get(key, 0.0 if key not in self._seen_at_start else cpu)
                self._other += used
                self._other_by[key] = self._other_by.get(key, 0.0) + used
                self._names[key] = name
            self._cpu[key] = cpu
        if first:
            self._seen_at_start = set(procs)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._sample()
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadMonitor:
        self._seen_at_start: set[tuple[int, int]] = set()
        self._sample(first=True)
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        wall = self.wall_seconds = time.perf_counter() - self._t0
        if self._ok and wall > 0:
            self.other_cores = max(0.0, self._other) / wall

    def summary(self) -> dict:
        s = self.samples or [os.getloadavg()[0]]
        return {
            "load_mean": round(sum(s) / len(s), 2),
            "load_max": round(max(s), 2),
            "cpus": os.cpu_count(),
            "other_cores": None if self.other_cores is None else round(self.other_cores, 2),
        }

    def foreign(self) -> dict:
        """Other processes' CPU seconds, as a share of the whole machine (all its cores) over the
        run's wall time, and the three that used most (over half a second each)."""
        if not self._ok:
            raise RuntimeError("LoadMonitor.foreign needs /proc (Linux): no other process could be read")
        top = sorted(self._other_by.items(), key=lambda kv: -kv[1])[:3]
        return {
            "wall_seconds": self.wall_seconds,
            "foreign_cpu_seconds": self._other,
            "foreign_share_of_machine": self._other / self.wall_seconds / (os.cpu_count() or 1),
            "top_foreign": [f"{self._names.get(k, '?')} (pid {k[0]}): {v:.1f} s" for k, v in top if v > 0.5],
        }


def busy(load: dict | None) -> bool:
    """Was the machine busy with other work during a run (``load``: its ``LoadMonitor.summary()``)?
    Other processes' CPU time per second above BUSY_OTHER_CORES (or, without that number: results
    from before it, or no /proc, a mean 1-min load average above the CPU count + 0.5; the
    benchmark alone keeps it near the count)."""
    if not load:
        return False
    if load.get("other_cores") is not None:
        return load["other_cores"] > BUSY_OTHER_CORES
    return load["load_mean"] > (load.get("cpus") or 2) + 0.5


# --------------------------------------------------------------------------- eurus-prime runs
def default_prime(project: Path = ROOT) -> dict:
    """``prime:`` of ``project``'s ``conf/base/parameters.yml``: what a fresh copy trains with
    (``fresh_project`` drops conf/local)."""
    import yaml

    return yaml.safe_load((project / "conf/base/parameters.yml").read_text())["prime"]


def split_params(text: str | None) -> list[str]:
    """The ``key=value`` items of a ``--params`` string, as written (``eurus_prime.runs.loop.parse_params``
    reads their values)."""
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def train_command(
    project: Path, iterations: int, params: str = "", *, env: str | None = None, time_budget: float | None = None
) -> list[str]:
    """``eurus-prime train`` on ``project`` (``params`` as ``kedro run --params``)."""
    return [
        EURUS_PRIME,
        "train",
        "--project",
        str(project),
        *(["--env", env] if env else []),
        "--iterations",
        str(iterations),
        *(["--params", params] if params else []),
        *(["--time-budget", str(time_budget)] if time_budget is not None else []),
    ]


def run_logged(
    cmd: list[str], project: Path, log: str = "train.log", *, env: dict[str, str] | None = None, monitor: bool = True
) -> tuple[int, float, LoadMonitor | None]:
    """Run ``cmd`` in ``project``, its output in ``project/log``, with QUIET_ENV (and ``env``) added
    to this process's environment, under a ``LoadMonitor`` unless ``monitor`` is False. Returns the
    exit code, the wall seconds (the monitor's start and stop included) and the monitor (or None)."""
    start = time.perf_counter()
    watch = LoadMonitor() if monitor else contextlib.nullcontext()
    with open(project / log, "w") as out, watch as load:
        done = subprocess.run(
            cmd, cwd=project, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **QUIET_ENV, **(env or {})}
        )
    return done.returncode, time.perf_counter() - start, load


def train_log(project: Path) -> list[dict]:
    """The rows of ``project``'s train log (``eurus_prime.runs.loop.TRAIN_LOG``), one per iteration."""
    from eurus_prime.runs.loop import TRAIN_LOG

    return [json.loads(line) for line in (project / TRAIN_LOG).read_text().splitlines()]


def extra_draws(row: dict) -> int:
    """Draws of prompts beyond the first that an iteration of the train log needed (``draws``;
    logs written before the filtering loop counted ``resamples``)."""
    return int(row["draws"]) - 1 if "draws" in row else int(row.get("resamples", 0))


def prime_stages(without: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The prime_iteration nodes in pipeline order (``STAGES`` of
    ``eurus_prime.pipelines.prime_iteration.pipeline``, which imports torch and Kedro), less
    ``without``."""
    from eurus_prime.pipelines.prime_iteration.pipeline import STAGES

    unknown = set(without) - set(STAGES)
    if unknown:
        raise ValueError(f"not prime_iteration stages: {sorted(unknown)}")
    return tuple(s for s in STAGES if s not in without)


def split_iterations(rows: list[dict], nodes: tuple[str, ...]) -> list[dict]:
    """Where each train-log row's time went: ``wall`` (its ``elapsed`` less the previous row's),
    ``nodes`` (``time/<node>`` of each of ``nodes``, 0 when absent), ``io_load`` / ``io_save``
    (dataset loads and saves), ``kedro_other`` (the rest of the Kedro session: ``seconds`` less the
    nodes and the I/O) and ``loop_bookkeeping`` (the training loop between sessions: ``wall`` less
    ``seconds``)."""
    out, prev = [], 0.0
    for r in rows:
        times = {n: r.get(f"time/{n}", 0.0) for n in nodes}
        io_load, io_save = r.get("time/io_load", 0.0), r.get("time/io_save", 0.0)
        out.append(
            {
                "wall": r["elapsed"] - prev,
                "nodes": times,
                "io_load": io_load,
                "io_save": io_save,
                "kedro_other": r["seconds"] - sum(times.values()) - (io_load + io_save),
                "loop_bookkeeping": r["elapsed"] - prev - r["seconds"],
            }
        )
        prev = r["elapsed"]
    return out


def catalog_and_params(project: Path, env: str | None = None):
    """``project``'s Kedro catalog and parameters (``env``: its configuration environment)."""
    from eurus_prime.runs.session import open_context

    with open_context(project, env) as context:
        return context.catalog, context.params


# --------------------------------------------------------------------------- learning curves
def sft_samples(project: Path, env: str, n_prompts: int, samples: int):
    """The SFT model of a bootstrapped project on its first ``n_prompts`` training prompts: returns
    the prompt rows, their rendered texts, the world's parameters, and per mode (``greedy``: one
    answer at T=0; ``sampled``: ``samples`` at T=1, as rollouts are drawn) ``(mode, n, rep, gens)``
    with ``rep`` the prompt index of each generation."""
    import numpy as np

    from eurus_prime.engines.rollout import generate
    from eurus_prime.runs.session import open_context
    from eurus_prime.tasks.prompting import render_prompt

    with open_context(project, env) as ctx:
        sft, train, params = ctx.catalog.load("sft_model"), ctx.catalog.load("prompts_train"), ctx.params
    prime = params["prime"]
    max_new = int(prime["max_response_length"] if isinstance(prime, dict) else prime.max_response_length)
    rows = train.head(n_prompts)
    texts = [render_prompt(sft.tokenizer, list(p)) for p in rows["prompt"]]
    modes = []
    for mode, n, temperature in (("greedy", 1, 0.0), ("sampled", samples, 1.0)):
        rep = np.repeat(np.arange(len(rows)), n)
        gens = generate(
            sft.model,
            sft.tokenizer,
            [texts[i] for i in rep],
            max_new_tokens=max_new,
            temperature=temperature,
            batch_size=128,
            seed=0,
            engine="fast",
        )
        modes.append((mode, n, rep, gens))
    return rows, texts, params, modes


def sft_checkpoint_row(metrics: dict) -> dict:
    """The curves' first row: the SFT checkpoint, before any training (``metrics``: its evaluation)."""
    return {"arm": "sft_checkpoint", "seed": -1, "point": 0, "seconds": 0.0, "iteration": -1, "rollouts": 0, **metrics}


def finished_iterations(log: list[dict]) -> list[tuple[float, int, int]]:
    """(``elapsed``, iteration, rollouts generated so far) after each row of a train log."""
    rollouts, done = 0, []
    for entry in log:
        rollouts += int(entry.get("rollout/responses", 0))
        done.append((entry["elapsed"], entry["iteration"], rollouts))
    return done


def iteration_table(project: Path, iteration: int, name: str, layer: str = "05_rollouts"):
    """The newest version of iteration ``iteration``'s table ``name`` in ``project``
    (``data/<layer>/iter_NNNN/<name>.parquet``) as a DataFrame.

    Raises:
        FileNotFoundError: naming the project, table and iteration when it has no saved version.
    """
    import pandas as pd

    from eurus_prime.datasets.versions import latest_version
    from eurus_prime.runs.layout import iter_dir

    path = latest_version(project / "data" / layer / iter_dir(iteration) / f"{name}.parquet")
    if path is None:
        raise FileNotFoundError(f"{project}: no {layer}/{name} table for iteration {iteration}")
    return pd.read_parquet(path)


def policy_after(project: Path, iteration: int):
    """The policy model iteration ``iteration`` wrote (``policy/iter_{i+1}``, its newest version)."""
    from transformers import AutoModelForCausalLM

    from eurus_prime.datasets.versions import latest_version
    from eurus_prime.runs.layout import next_iter_dir

    return AutoModelForCausalLM.from_pretrained(
        latest_version(project / "data/06_models/policy" / next_iter_dir(iteration))
    )


def per_arm_and_point(df, **aggregations):
    """The trained arms' rows (not the SFT checkpoint's) aggregated per arm and evaluation point."""
    return df[df["arm"] != "sft_checkpoint"].groupby(["arm", "point"]).agg(**aggregations).reset_index()


# --------------------------------------------------------------------------- child processes
def random_qwen2(*, vocab: int, hidden: int, mlp: int, layers: int, heads: int, kv_heads: int, max_len: int):
    """A randomly initialised ``Qwen2ForCausalLM`` with tied embeddings (seed torch first)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=mlp,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            tie_word_embeddings=True,
            max_position_embeddings=max_len,
        )
    )


def run_child(script: str, *args: str) -> dict:
    """``script --child ARGS`` in a fresh Python process (its own peak RSS); the JSON it printed last."""
    out = subprocess.run([sys.executable, script, "--child", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


class PeakRSS:
    """``seconds`` of the block it wraps, this process's peak resident memory after it
    (``peak_rss_mb``) and how far the block raised it (``added_mb``); Unix ``ru_maxrss``."""

    def __enter__(self) -> PeakRSS:
        import resource

        self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        import resource

        self.seconds = time.perf_counter() - self._start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.peak_rss_mb = peak / 1024
        self.added_mb = (peak - self._base) / 1024

    def as_dict(self) -> dict:
        """``seconds``, ``peak_rss_mb`` and ``added_mb``, for a child's JSON line."""
        return {"seconds": self.seconds, "peak_rss_mb": self.peak_rss_mb, "added_mb": self.added_mb}


# --------------------------------------------------------------------------- results files
def write_json(path: Path, data, *, indent: int = 1, default=None) -> None:
    """``data`` as JSON at ``path`` (its folder made), ending in a newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent, default=default) + "\n")


def write_markdown(path: Path, lines: list[str], *, echo: bool = False) -> str:
    """``lines`` as the Markdown file ``path`` (its folder made), ending in a newline; printed too
    with ``echo``. Returns the text."""
    text = "\n".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    if echo:
        print(text)
    return text
