"""``engines/train/updates.py``: the plumbing every update stage shares, on a fake two-rank trainer
and on the real torch trainer."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace

import pytest
import torch

from eurus_prime.engines.train import updates
from eurus_prime.engines.train.updates import NonFiniteError, Updater


def _updater(nonfinite="skip", model=None):
    model = model or torch.nn.Linear(2, 1)
    return Updater(
        SimpleNamespace(model=model, optimizer_state=None),
        backend="torch",
        lr=0.1,
        weight_decay=0.0,
        grad_clip=1.0,
        micro_batch=2,
        deepspeed=None,
        gradient_checkpointing=False,
        nonfinite=nonfinite,
        label="update_test: iteration 7",
    )


@pytest.mark.parametrize("rank,expected", [(0, [([0], 1.0), ([2], 1.0)]), (1, [([1], 1.0), ([0], 0.0)])])
def test_micro_batches_are_dealt_whole_and_a_short_rank_repeats_the_first_weighted_zero(rank, expected):
    u = _updater()
    u.trainer.rank, u.trainer.world_size = rank, 2
    assert u.deal([[0], [1], [2]]) == expected


def test_a_step_weights_each_micro_batch_by_its_rows_and_sums_the_diagnostics():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    seen = []

    def loss_of(micro, live):
        seen.append((micro, live))
        y = model(x[micro]).squeeze(-1)
        return y.mean(), {"rows": torch.tensor(float(len(micro)))}

    u = _updater(model=model)
    done = u.step([0, 1, 2], [[0, 1], [2]], loss_of, step=0)
    # the mean over rows of per-micro-batch means: 2/3 * mean(1, 1) + 1/3 * 2 = 4/3
    assert done.loss == pytest.approx(4 / 3)
    assert done.sums == {"rows": pytest.approx(2 / 3 * 2 + 1 / 3 * 1)}
    assert not done.skipped and u.taken == 1 and seen == [([0, 1], True), ([2], True)]
    # the gradient of 4/3 = (x0 + x1)/3 + (x2)/3 w.r.t. w is (2/3, 2/3): one AdamW step moves both
    assert torch.all(model.weight < 1.0)


def test_a_nonfinite_loss_is_skipped_or_stops(caplog):
    def nan_loss(micro, live):
        return torch.tensor(float("nan"), requires_grad=True), {}

    u = _updater("skip")
    before = u.model.weight.detach().clone()
    with caplog.at_level(logging.WARNING, logger=updates.__name__):
        done = u.step([0], [[0]], nan_loss, step=3, epoch=1)
    assert done.skipped and u.taken == 0 and torch.equal(u.model.weight, before)
    assert "update_test: iteration 7 epoch 1 step 3: the loss is nan" in caplog.text
    with pytest.raises(NonFiniteError, match=r"update_test: iteration 7 step 0: the loss is nan; stopping"):
        _updater("stop").step([0], [[0]], nan_loss, step=0)


def test_finish_refuses_a_poisoned_model():
    u = _updater()
    with torch.no_grad():
        u.model.weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match="update_test: iteration 7: parameter weight is not finite"):
        u.finish()


def test_the_one_rank_rendezvous_retries_a_port_another_process_took(monkeypatch):
    """Two runs on one machine can pick the same free port: the rendezvous takes another."""
    from eurus_prime.engines.train import deepspeed_trainer

    for key in ("MASTER_PORT", "MASTER_ADDR", "RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    ports = iter(["1111", "2222"])
    monkeypatch.setattr(deepspeed_trainer, "_free_port", lambda: next(ports))
    tried = []

    class FakeDeepSpeed:
        def init_distributed(self, **kwargs):
            tried.append(os.environ["MASTER_PORT"])
            if len(tried) == 1:
                raise RuntimeError("The server socket has failed to listen ... EADDRINUSE, address already in use")

    deepspeed_trainer._init_single_process(FakeDeepSpeed())
    assert tried == ["1111", "2222"]
    # the port it chose is gone again: a child process must not inherit the listening port
    assert "MASTER_PORT" not in os.environ
    # a port the user set is theirs: no silent retry on another one
    monkeypatch.setenv("MASTER_PORT", "3333")
    tried.clear()
    with pytest.raises(RuntimeError, match="EADDRINUSE"):
        deepspeed_trainer._init_single_process(FakeDeepSpeed())
