"""The ``torch`` trainer backend: ``torch.optim.AdamW`` in this process (the CPU default). The AdamW
moments travel with the checkpoint (``optimizer.pt``) so the next iteration continues them.

Inside a process group (an SPMD campaign under torchrun, ``engines/spmd.py``) it is data-parallel
the way DDP is: every rank holds the whole model and optimizer, takes its share of a mini-batch's
micro-batches (``Trainer.shard``), and the gradients are averaged over the ranks before the step,
so every rank takes the same step."""

from __future__ import annotations

import logging

import torch

from eurus_prime.engines.train.base import Trainer, _check_tensors, world

log = logging.getLogger(__name__)


class TorchTrainer(Trainer):
    """AdamW in this process, data-parallel over a process group's ranks (module docstring)."""

    def __init__(self, model, optimizer_state: dict | None, lr: float, weight_decay: float, grad_clip: float):
        super().__init__(model)
        self.rank, self.world_size = world()
        self.grad_clip = grad_clip
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        if optimizer_state and "deepspeed" in optimizer_state:
            log.warning(
                "the checkpoint's optimizer state comes from the deepspeed backend; the torch backend "
                "starts fresh AdamW moments"
            )
        elif optimizer_state:
            self.opt.load_state_dict(optimizer_state)
            for group in self.opt.param_groups:  # the config, not the stored state, sets the hyperparameters
                group["lr"], group["weight_decay"] = lr, weight_decay

    @classmethod
    def from_config(cls, model, optimizer_state, *, lr, weight_decay, grad_clip, micro_batch, deepspeed=None):
        return cls(model, optimizer_state, lr, weight_decay, grad_clip)

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def backward(self, loss, last):
        loss.backward()

    def _average_gradients(self) -> None:
        """Every rank's gradient becomes the mean over the ranks (``loss_scale`` made each rank's
        the world size times its share, so the mean is the whole mini-batch's gradient)."""
        for p in self.model.parameters():
            if not p.requires_grad:
                continue
            if p.grad is None:  # this rank's micro-batches did not reach it: it adds 0
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(self.world_size)

    def step(self, loss, check):
        if self.world_size > 1:
            self._average_gradients()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip))
        skipped = check(loss, grad_norm)
        if skipped:
            self.opt.zero_grad(set_to_none=True)
        else:
            self.opt.step()
        return grad_norm, skipped

    def assert_finite(self, fail):
        names = {p: n for n, p in self.model.named_parameters()}
        _check_tensors(((n, p.detach()) for n, p in self.model.named_parameters()), fail, "parameter")
        for p, state in self.opt.state.items():
            _check_tensors(
                ((f"{k} of parameter {names.get(p, '?')}", v) for k, v in state.items()), fail, "optimizer state"
            )

    def finish(self):
        return self.model, self.opt.state_dict()
