"""The ``torch`` backend on two ranks of one process group (an SPMD campaign's updates): each rank
takes its share of a mini-batch's micro-batches and the gradients are averaged, so two ranks
leave the weights and statistics one process leaves (``engines/train/torch_trainer.py``).

Two processes on loopback (gloo) run the same PRM and PPO updates, two iterations in a row, as
``test_trainer_backends`` does for DeepSpeed; the tolerance is the same (1e-5; updates move
weights by > 1e-3)."""

from __future__ import annotations

import os
import pickle
import socket
import sys

import numpy as np
import pytest
import torch

from tests.engines.train.test_trainer_backends import BASE, TOL, _inputs, _max_diff, _two_iterations


def _rank(rank: int, world: int, port: int, folder: str) -> None:
    import torch.distributed as dist

    from eurus_prime.engines.train.base import make_trainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    with open(os.path.join(folder, "inputs.pkl"), "rb") as f:
        inputs = pickle.load(f)
    trainer = make_trainer("torch", inputs[0].model, None, lr=1e-3, weight_decay=0.0, grad_clip=1.0, micro_batch=2)
    seen = (trainer.rank, trainer.world_size)
    prm, policy, stats = _two_iterations(*inputs, BASE)
    if rank == 0:
        with open(os.path.join(folder, "out.pkl"), "wb") as f:
            pickle.dump(
                {"prm": prm.model.state_dict(), "policy": policy.model.state_dict(), "stats": stats, "seen": seen}, f
            )
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torch_backend_on_two_ranks_matches_one_process(tiny_tokenizer, tmp_path):
    inputs = _inputs(tiny_tokenizer)
    prm_t, policy_t, stats_t = _two_iterations(*inputs, BASE)  # one process
    with open(tmp_path / "inputs.pkl", "wb") as f:
        pickle.dump(inputs, f)
    sys.path.insert(0, os.getcwd())
    torch.multiprocessing.spawn(_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    with open(tmp_path / "out.pkl", "rb") as f:
        out = pickle.load(f)
    assert out["seen"] == (0, 2)  # the trainer saw the process group

    class _M:
        def __init__(self, sd):
            self._sd = sd

        def state_dict(self):
            return self._sd

    assert _max_diff(_M(out["policy"]), policy_t.model) < TOL
    assert _max_diff(_M(out["prm"]), prm_t.model) < TOL
    moved = _max_diff(_M(out["policy"]), inputs[0].model)
    assert moved > 1e-3  # the updates did move the weights
    for (prm_s_t, ppo_s_t, _), (prm_s_d, ppo_s_d, _) in zip(stats_t, out["stats"]):
        np.testing.assert_allclose(ppo_s_d["pg_loss"], ppo_s_t["pg_loss"], atol=1e-5)
        np.testing.assert_allclose(prm_s_d["loss"], prm_s_t["loss"], atol=1e-5)
