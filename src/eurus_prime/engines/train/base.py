"""Trainer backends: what takes the optimizer steps of the PRM and policy updates.

``update_prm`` and ``update_policy`` (``prime/prm.py``, ``prime/policy.py``) own the maths: which rows form a
mini-batch, the loss of each micro-batch, the statistics. A backend owns the rest, behind one small
interface (:class:`Trainer`):

Backends are registered in :data:`TRAINER_BACKENDS` (name -> ``"module:Class"``); each class
has ``from_config`` (the arguments of :func:`make_trainer`). Adding one is a file and a line.

- ``torch`` (the default, ``torch_trainer.py``): one process, ``torch.optim.AdamW`` over the model's parameters; the
  AdamW moments travel with the checkpoint (``optimizer.pt``) so the next iteration continues them.
- ``deepspeed`` (``deepspeed_trainer.py``): a DeepSpeed engine (ZeRO stage 0-3, optional CPU offload of the optimizer states
  and, at stage 3, of the parameters; bf16 or fp32). It runs in this process (world size 1) or as
  one rank of a data-parallel group (``torch.distributed`` already initialised by a launcher such
  as torchrun, every rank calling the same stage function on the same tables): each rank takes its share of every mini-batch's micro-batches (:meth:`Trainer.shard`) and
  DeepSpeed averages the gradients, which is why losses are scaled by the world size.

The stage code never branches on the backend: ``engines/train/updates.py`` calls ``shard``,
``backward``, ``step``, ``all_sum`` and ``finish``. With one rank and the same micro-batches, the two backends run the same
arithmetic (``tests/engines/train/test_trainer_backends.py`` checks their updated weights agree).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch

from eurus_prime.engines import spmd

#: Registered trainer backends: name -> ``"module:Class"`` (imported when first used).
TRAINER_BACKENDS: dict[str, str] = {
    "torch": "eurus_prime.engines.train.torch_trainer:TorchTrainer",
    "deepspeed": "eurus_prime.engines.train.deepspeed_trainer:DeepSpeedTrainer",
}


#: (rank, world size) of the initialised process group, else (0, 1).
world = spmd.group


def comm_device() -> str:
    """Where collectives' tensors live: CUDA under NCCL, else the CPU (gloo)."""
    return "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"


class Trainer(ABC):
    """One stage's optimizer steps. ``model`` is what forward passes run on."""

    rank: int = 0
    world_size: int = 1

    def __init__(self, model: torch.nn.Module):
        self.model = model

    # --- data parallel ---
    def shard(self, items: Sequence) -> list:
        """This rank's share of ``items`` (every world_size-th from its rank; all of them with one
        rank): the stages deal out a mini-batch's micro-batches."""
        return list(items[self.rank :: self.world_size])

    @property
    def loss_scale(self) -> float:
        """Multiply each micro-batch loss by this before ``backward``: the data-parallel gradient
        is an average over ranks, the mini-batch loss a sum over their shares."""
        return float(self.world_size)

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """``values`` summed over the ranks (float64)."""
        if self.world_size == 1:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=comm_device())
        torch.distributed.all_reduce(t)
        return [float(x) for x in t.cpu().tolist()]

    def all_gather(self, obj) -> list:
        """Every rank's ``obj``, one element per rank."""
        return spmd.all_gather_object(obj)

    # --- steps ---
    @abstractmethod
    def zero_grad(self) -> None:
        """Clear the accumulated gradients before a mini-batch."""

    @abstractmethod
    def backward(self, loss: torch.Tensor, last: bool) -> None:
        """Accumulate the gradient of ``loss``; ``last``: the mini-batch's final micro-batch."""

    @abstractmethod
    def step(self, loss: float, check: Callable[[float, float], bool]) -> tuple[float, bool]:
        """Clip, then take the optimizer step unless ``check(loss, grad_norm)`` says skip.
        Returns ``(grad_norm, skipped)``."""

    @abstractmethod
    def assert_finite(self, fail: Callable[[str], None]) -> None:
        """Call ``fail(message)`` for the first non-finite parameter or optimizer moment."""

    @abstractmethod
    def finish(self) -> tuple[torch.nn.Module, dict]:
        """``(model, optimizer_state)``: the updated model as a plain module (full weights, no
        engine attached) and the state to store with the checkpoint."""


def optimizer_state_dict(state: Any) -> Any:
    """A checkpoint's optimizer state as plain data, ready to save. A trainer's live state (an object
    with ``state_dict()``: a kept DeepSpeed engine, ``deepspeed_trainer.KeptEngine``) is gathered,
    a collective when there are several ranks; a plain dict or None is returned as it is."""
    return state.state_dict() if hasattr(state, "state_dict") else state


def _check_tensors(named, fail: Callable[[str], None], what: str) -> None:
    for name, t in named:
        if torch.is_tensor(t) and t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            fail(f"{what} {name} is not finite after the update")
            return


def make_trainer(
    backend: str,
    model,
    optimizer_state: dict | None,
    *,
    lr: float,
    weight_decay: float,
    grad_clip: float,
    micro_batch: int,
    deepspeed: Any = None,
) -> Trainer:
    """The trainer for ``prime.trainer_backend`` (``deepspeed``: the ``prime.deepspeed`` options)."""
    if backend not in TRAINER_BACKENDS:
        raise ValueError(f"prime.trainer_backend = {backend!r} is invalid: valid values are {list(TRAINER_BACKENDS)}")
    module, _, cls = TRAINER_BACKENDS[backend].partition(":")
    trainer_cls = getattr(importlib.import_module(module), cls)
    trainer: Trainer = trainer_cls.from_config(
        model,
        optimizer_state,
        lr=lr,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        micro_batch=micro_batch,
        deepspeed=deepspeed,
    )
    return trainer
