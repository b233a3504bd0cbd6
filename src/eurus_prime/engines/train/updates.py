"""The plumbing of an update stage, so the stage itself shows only its loss.

``update_prm`` and ``update_policy`` say which rows form a mini-batch, how it splits into
micro-batches and what a micro-batch's loss is. :class:`Updater` does the rest, the same way for
both and on any number of ranks:

- opens the ``prime.trainer_backend`` trainer (continuing the AdamW moments stored with the
  checkpoint) and switches layer recomputation on when asked;
- deals each mini-batch's micro-batches out to the ranks whole (k-th to rank k mod world), each
  rank running the same number of them: a rank short of one repeats the first, weighted 0
  (every backward is a collective);
- weights each micro-batch's loss by its share of the mini-batch's rows, so the objective (a
  mean over rows of per-micro-batch means) is the same on any number of ranks;
- sums the loss and diagnostics over ranks, takes the optimizer step, or skips it on a NaN/inf
  loss or gradient norm (``prime.nonfinite: skip``) or stops (``stop``: :class:`NonFiniteError`);
- after the last step refuses to hand on NaN/inf weights or AdamW moments, and returns the model
  as a plain module with layer recomputation off.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from eurus_prime.engines.train.base import Trainer, make_trainer

log = logging.getLogger(__name__)

#: ``loss_fn(micro, live) -> (loss, diagnostics)``: the mean loss of the micro-batch's rows
#: ``micro`` and named scalars to average the same way; ``live`` is False for a rank's
#: weight-0 padding repeat (its loss counts for nothing).
LossFn = Callable[[list[int], bool], "tuple[torch.Tensor, dict[str, torch.Tensor]]"]


class NonFiniteError(FloatingPointError):
    """A NaN or inf loss or gradient norm (``prime.nonfinite: stop``), or a non-finite parameter
    or optimizer moment after an update (always: a poisoned checkpoint is never returned)."""


@dataclass(frozen=True)
class StepResult:
    """One optimizer step: the summed weighted loss, the diagnostics summed the same way, the
    gradient norm, and whether the step was skipped (non-finite)."""

    loss: float
    sums: dict[str, float]
    grad_norm: float
    skipped: bool


class Updater:
    """Optimizer steps of one update stage on ``checkpoint`` (module docstring).

    ``label`` starts every error message (``"update_prm: iteration 3"``); ``nonfinite`` is
    ``prime.nonfinite`` (``skip`` or ``stop``).
    """

    def __init__(
        self,
        checkpoint: Any,
        *,
        backend: str,
        lr: float,
        weight_decay: float,
        grad_clip: float,
        micro_batch: int,
        deepspeed: Any,
        gradient_checkpointing: bool,
        nonfinite: str,
        label: str,
    ) -> None:
        if gradient_checkpointing and hasattr(checkpoint.model, "gradient_checkpointing_enable"):
            checkpoint.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.trainer: Trainer = make_trainer(
            backend,
            checkpoint.model,
            getattr(checkpoint, "optimizer_state", None),
            lr=lr,
            weight_decay=weight_decay,
            grad_clip=grad_clip,
            micro_batch=micro_batch,
            deepspeed=deepspeed,
        )
        self.model = self.trainer.model
        self.gradient_checkpointing = gradient_checkpointing
        self.nonfinite = nonfinite
        self.label = label
        self.taken = 0  # optimizer steps taken (a skipped step leaves the model as it was)
        self.model.train()

    @property
    def world_size(self) -> int:
        return self.trainer.world_size

    def deal(self, micros: list[list[int]]) -> list[tuple[list[int], float]]:
        """This rank's share of a mini-batch's micro-batches, each with a weight for its loss
        (module docstring)."""
        mine = self.trainer.shard(micros)
        rounds = -(-len(micros) // self.trainer.world_size)
        return [(m, 1.0) for m in mine] + [(micros[0], 0.0)] * (rounds - len(mine))

    def step(
        self, rows: Sequence[int], micros: list[list[int]], loss_fn: LossFn, *, step: int, epoch: int | None = None
    ) -> StepResult:
        """One optimizer step over the mini-batch ``rows`` split into ``micros``."""
        self.trainer.zero_grad()
        dealt = self.deal(micros)
        total = 0.0
        sums: dict[str, float] = {}
        for k, (micro, weight) in enumerate(dealt):
            loss, diagnostics = loss_fn(micro, weight != 0)
            w = len(micro) / len(rows) * weight
            loss = loss * w
            self.trainer.backward(loss * self.trainer.loss_scale, last=k == len(dealt) - 1)
            total += float(loss.detach())
            for key, v in diagnostics.items():
                sums[key] = sums.get(key, 0.0) + float(v.detach()) * w
        total, *summed = self.trainer.all_sum([total, *sums.values()])
        sums = dict(zip(sums, summed))
        grad_norm, skipped = self.trainer.step(
            total,
            lambda loss, norm: self._nonfinite_step(step, loss, norm, epoch),
        )
        if not skipped:
            self.taken += 1
        return StepResult(total, sums, grad_norm, skipped)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (one element per rank)."""
        return self.trainer.all_gather(obj)

    def finish(self) -> tuple[torch.nn.Module, dict]:
        """``(model, optimizer_state)`` after the last step: refuses NaN/inf weights or moments,
        and returns the model with layer recomputation off."""
        self.trainer.assert_finite(self._poisoned)
        model, state = self.trainer.finish()
        if self.gradient_checkpointing and getattr(model, "is_gradient_checkpointing", False):
            model.gradient_checkpointing_disable()
        return model, state

    def _nonfinite_step(self, step: int, loss: float, grad_norm: float, epoch: int | None) -> bool:
        """False for a finite mini-batch. Otherwise: ``stop`` raises NonFiniteError, ``skip`` logs
        a warning and returns True (the trainer zeroes the gradients and takes no optimizer step)."""
        if math.isfinite(loss) and math.isfinite(grad_norm):
            return False
        what = f"the loss is {loss}" if not math.isfinite(loss) else f"the grad norm is {grad_norm}"
        where = f"{self.label}{'' if epoch is None else f' epoch {epoch}'} step {step}"
        if self.nonfinite == "stop":
            raise NonFiniteError(
                f"{where}: {what}; stopping because prime.nonfinite=stop "
                "(prime.nonfinite=skip skips such mini-batches instead)"
            )
        log.warning("%s: %s; the mini-batch is skipped, no optimizer step (prime.nonfinite=skip)", where, what)
        return True

    def _poisoned(self, what: str) -> None:
        raise NonFiniteError(f"{self.label}: {what}; refusing to return a poisoned checkpoint")
