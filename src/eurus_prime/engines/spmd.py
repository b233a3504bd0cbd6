"""One campaign on N resident ranks (SPMD), the TRL/accelerate convention:

    torchrun --nproc-per-node N -m eurus_prime train ...

Every rank runs the same program: the same Kedro pipelines, node by node, on the same inputs and
seeds. Rank 0 is the *writer*: it alone saves tables and checkpoints, writes manifests, the train
log and MLflow. Every other rank skips each save and waits at a barrier until rank 0 has written
it (``datasets.spmd_catalog``), so its next load reads what rank 0 wrote; a checkpoint it skipped
saving stays in its resident slot as the version rank 0 saved. The updates are data-parallel
(each rank takes its share of a mini-batch's micro-batches, gradients are averaged over the ranks:
``engines/train``; a DeepSpeed engine at ZeRO 0-2 lives for the whole campaign); so are the scoring passes, chunked sampling and verification (``map_shards``:
each rank computes its block, every rank gets all the results). The other work runs in full on
every rank, so the ranks agree without communication. Launched without torchrun (``WORLD_SIZE``
unset or 1) all of this is a no-op.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

log = logging.getLogger(__name__)


def env_world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment (``RANK``, ``WORLD_SIZE``), before or
    without a process group; (0, 1) outside a launcher."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_writer() -> bool:
    """Whether this process writes the campaign's files: rank 0, or the only process."""
    return env_world()[0] == 0


def _initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def init() -> tuple[int, int]:
    """Join the launcher's process group once per process (NCCL on GPUs, gloo on CPU); returns
    (rank, world size). Outside a launcher it does nothing and returns (0, 1)."""
    rank, world = env_world()
    if world <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not _initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        else:
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def barrier() -> None:
    """Wait for every rank (a no-op with one)."""
    if env_world()[1] > 1 and _initialized():
        import torch.distributed as dist

        dist.barrier()


def group() -> tuple[int, int]:
    """(rank, world size) of the joined process group; (0, 1) without one."""
    if not _initialized():
        return 0, 1
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` without a process group)."""
    rank, world = group()
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def split_evenly(n: int, world: int, rank: int) -> tuple[int, int]:
    """The ``[lo, hi)`` range of ``n`` items that ``rank`` of ``world`` takes: contiguous blocks,
    the first ``n % world`` ranks one item longer."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def map_shards(items: list[Any], fn: Any) -> list[Any]:
    """``fn(items)`` computed data-parallel: each rank applies ``fn`` to its contiguous block of
    ``items`` (``split_evenly``), and every rank gets the results of all, in the input order.
    ``fn`` maps a list to a list of the same length. Without a process group: ``fn(items)``."""
    rank, world = group()
    if world == 1:
        return list(fn(items))
    lo, hi = split_evenly(len(items), world, rank)
    log.info("data-parallel: rank %d of %d takes items %d-%d of %d", rank, world, lo, hi - 1, len(items))
    mine = list(fn(items[lo:hi])) if hi > lo else []
    return [x for part in all_gather_object(mine) for x in part]


class LauncherStop(RuntimeError):
    """The launcher stopped this rank (SIGTERM): torchrun sends it to every rank when one rank has
    failed, and a scheduler when the job is cancelled."""


#: What a collective reports when a peer rank is gone (gloo's TCP transport, NCCL's watchdog).
_LOST_PEER = ("connection reset by peer", "connection closed by peer", "socket closed", "nccl error", "broken pipe")


def stop_on_sigterm() -> None:
    """Under a launcher, turn SIGTERM into ``LauncherStop`` so that the rank unwinds as from any
    error (the MLflow run ended as FAILED, the data lock freed, the message printed) within the
    30 s torchrun waits before its SIGKILL. A SIGTERM that arrives while the rank is already
    unwinding from an error (a collective that lost its peer, typically a few ms earlier) is
    ignored, so that it does not cut that unwinding short."""
    if env_world()[1] <= 1:
        return

    def handler(signum: int, frame: Any) -> None:
        if sys.exc_info()[0] is not None:  # already handling an error: let it finish
            log.warning("rank %d: SIGTERM from the launcher while stopping on an error", env_world()[0])
            return
        raise LauncherStop("stopped by the launcher (SIGTERM)")

    signal.signal(signal.SIGTERM, handler)


def lost_rank(err: BaseException) -> bool:
    """Whether ``err`` (or an exception it was raised from or during) says a rank of the campaign
    is gone: the launcher's SIGTERM, or a collective whose peer closed its connection."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, LauncherStop) or any(m in str(e).lower() for m in _LOST_PEER):
            return True
        e = e.__cause__ or e.__context__
    return False


def failure_message(err: BaseException, iteration_hint: str = "") -> str:
    """What a rank of a failed SPMD campaign tells the user, instead of a bare gloo/NCCL error."""
    rank, world = env_world()
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (
        f"rank {rank} of {world}: the SPMD campaign lost a rank{iteration_hint} ({type(err).__name__}: {first[:300]}). "
        "The launcher's report names the rank that failed and its exit code; that rank's own log is "
        "data/08_reporting/logs/train_<time>.rank<N>.log. Nothing of the unfinished stage is marked done: "
        "run the same command again to resume at its first incomplete stage, from the last saved checkpoint."
    )


def shutdown() -> None:
    """Leave the process group (the end of a campaign)."""
    if _initialized():
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
