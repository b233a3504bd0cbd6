"""Run an update on several ranks: ``prime.deepspeed.num_procs`` > 1.

The Kedro node stays one call in one process. Where :func:`wanted` says so, the node hands the
update function to :func:`run`, which knows no stage: it runs any importable function that takes a
checkpoint first and returns ``(checkpoint, *tables)``. It

1. writes the call's inputs to a private work folder: the checkpoint (``save_pretrained`` +
   tokenizer), each rank's DeepSpeed optimizer partition (``optimizer/rank_<k>.pt``) and the
   function's name and other arguments (``job.pkl``);
2. starts the ranks with ``torchrun`` (one node) or DeepSpeed's launcher (``hostfile``: several
   nodes; the work folder must then be on a filesystem every node sees, ``work_dir``);
3. each rank (:func:`main`) joins the process group (NCCL on GPUs, gloo on CPU), loads the inputs,
   calls the function, which now sees a world of N ranks and deals out micro-batches
   (``engines/train/updates.py``); rank 0 writes the updated model, every partition of the
   optimizer state and the returned tables;
4. reads the outputs back and returns exactly what the in-process call returns.

The weights make a round trip through the work folder on every update (at 7B: 15 GB in bf16,
written and read once each way). A failed rank fails the node with the launcher's output.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from eurus_prime.datasets.checkpoint import load_optimizer_state
from eurus_prime.engines.train.base import optimizer_state_dict, world
from eurus_prime.engines.train.deepspeed_trainer import DeepSpeedOptions

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_partitions(state: dict, folder: Path) -> dict:
    """Each rank's DeepSpeed optimizer partition of ``state`` (``optimizer_state["deepspeed"]``) to
    ``folder/rank_<k>.pt``; returns the rest of it (world size, ZeRO stage) for :func:`_read_partitions`."""
    folder.mkdir(parents=True)
    for k, rank_state in enumerate(state["ranks"]):
        torch.save(rank_state, folder / f"rank_{k}.pt")
    return {key: state[key] for key in ("world_size", "zero_stage")}


def _read_partitions(folder: Path, meta: dict, rank: int | None = None) -> dict:
    """The optimizer state :func:`_write_partitions` wrote; with ``rank``, only that rank's
    partition is read (the others are None: a rank needs its own)."""
    ranks = [
        load_optimizer_state(folder / f"rank_{k}.pt") if rank is None or k == rank else None
        for k in range(meta["world_size"])
    ]
    return {"deepspeed": {**meta, "ranks": ranks}}


def launch_command(options, work: Path) -> list[str]:
    """The command that starts ``options.num_procs`` ranks per node running :func:`main` on ``work``."""
    bin_dir = Path(sys.executable).parent
    if options.hostfile:
        deepspeed = shutil.which("deepspeed", path=str(bin_dir)) or "deepspeed"
        return [
            deepspeed,
            "--hostfile",
            str(options.hostfile),
            "--num_gpus",
            str(options.num_procs),
            "--master_port",
            str(options.master_port or _free_port()),
            "--module",
            "eurus_prime.engines.train.ranks",
            str(work),
        ]
    torchrun = shutil.which("torchrun", path=str(bin_dir)) or "torchrun"
    return [
        torchrun,
        "--nproc_per_node",
        str(options.num_procs),
        "--master_port",
        str(options.master_port or _free_port()),
        "-m",
        "eurus_prime.engines.train.ranks",
        str(work),
    ]


def wanted(backend: str, deepspeed: Any) -> bool:
    """True where an update should start ``prime.deepspeed.num_procs`` ranks: the ``deepspeed``
    backend with ``num_procs`` > 1, called outside a process group (not inside a rank)."""
    return backend == "deepspeed" and int(DeepSpeedOptions.coerce(deepspeed).num_procs) > 1 and world()[1] == 1


def _name(fn: Callable[..., Any]) -> str:
    name = f"{fn.__module__}:{fn.__qualname__}"
    if "<" in name or _resolve(name) is not fn:
        raise ValueError(f"run on ranks: {name} is not importable by that name (a module-level function is)")
    return name


def _resolve(name: str) -> Callable[..., Any]:
    module, _, attr = name.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return fn


def run(fn: Callable[..., Any], checkpoint: Any, *args: Any, deepspeed: Any) -> tuple[Any, ...]:
    """``fn(checkpoint, *args)`` on ``deepspeed.num_procs`` ranks (module docstring): returns what
    it returns, ``(checkpoint, *tables)``, with the updated weights and optimizer partitions."""
    stage = fn.__name__
    job_fn = _name(fn)
    options = DeepSpeedOptions.coerce(deepspeed)
    root = Path(options.work_dir) if options.work_dir else None
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"eurus_prime_{stage}_", dir=root))
    try:
        checkpoint.model.save_pretrained(work / "model")
        checkpoint.tokenizer.save_pretrained(work / "model")
        state = optimizer_state_dict(checkpoint.optimizer_state) or {}
        if "deepspeed" in state:
            meta = _write_partitions(state["deepspeed"], work / "optimizer")
        else:
            if state:
                log.warning(
                    "%s: the checkpoint's optimizer state comes from the torch backend; the deepspeed "
                    "backend starts fresh AdamW moments",
                    stage,
                )
            meta = None
        with open(work / "job.pkl", "wb") as f:
            pickle.dump(
                {
                    "function": job_fn,
                    "args": args,
                    "version": checkpoint.version,
                    "optimizer": meta,
                },
                f,
            )
        cmd = launch_command(options, work)
        log.info("%s: %d rank(s): %s", stage, options.num_procs, " ".join(cmd))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if not torch.cuda.is_available():
            env.setdefault("DS_ACCELERATOR", "cpu")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{stage} on {options.num_procs} ranks failed (exit {proc.returncode}): "
                f"{' '.join(cmd)}\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
            )
        from transformers import AutoModelForCausalLM  # noqa: PLC0415

        out = work / "out"
        with open(out / "result.pkl", "rb") as f:
            result = pickle.load(f)
        checkpoint.model = AutoModelForCausalLM.from_pretrained(out / "model", dtype=torch.float32)
        checkpoint.optimizer_state = _read_partitions(out / "optimizer", result["optimizer"])
        return (checkpoint, *result["tables"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """One rank: ``python -m eurus_prime.engines.train.ranks WORK`` under torchrun or deepspeed."""
    argv = sys.argv[1:] if argv is None else argv
    work = Path(argv[0])
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import torch.distributed as dist  # noqa: PLC0415
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    from eurus_prime.datasets.checkpoint import Checkpoint  # noqa: PLC0415

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank()
    with open(work / "job.pkl", "rb") as f:
        job = pickle.load(f)
    model = AutoModelForCausalLM.from_pretrained(work / "model", dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(work / "model")
    state = None if job["optimizer"] is None else _read_partitions(work / "optimizer", job["optimizer"], rank)
    checkpoint = Checkpoint(model=model, tokenizer=tokenizer, version=job["version"], optimizer_state=state)
    result = _resolve(job["function"])(checkpoint, *job["args"])
    state = optimizer_state_dict(result[0].optimizer_state)  # every rank: gathering a kept engine's is a collective
    if rank == 0:
        updated, tables = result[0], result[1:]
        out = work / "out"
        meta = _write_partitions(state["deepspeed"], out / "optimizer")
        updated.model.save_pretrained(out / "model")
        with open(out / "result.pkl", "wb") as f:
            pickle.dump({"tables": tables, "optimizer": meta}, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
