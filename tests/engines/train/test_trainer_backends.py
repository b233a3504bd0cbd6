"""The ``deepspeed`` trainer backend against the ``torch`` one (``engines/train/``).

DeepSpeed runs on CPU here (``DS_ACCELERATOR=cpu``, gloo): one rank inside this process for each
ZeRO stage, and two ranks on loopback under torchrun (``prime.deepspeed.num_procs: 2``,
``engines/train/ranks.py``, started by the Kedro node). The same PRM and PPO updates, two iterations in
a row (so the AdamW moments saved with the checkpoint are continued), must leave the same weights.

Tolerance: the largest |w_deepspeed - w_torch| over all parameters must be under 1e-5 (one rank:
the same micro-batches, only summation order differs; two ranks: different padding per
micro-batch and an all-reduce), while the updates themselves move weights by > 1e-3.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from unittest import mock

import numpy as np
import pytest
import torch

from eurus_prime.engines.train import deepspeed_trainer
from eurus_prime.engines.train.base import optimizer_state_dict
from eurus_prime.pipelines.prime_iteration import nodes
from eurus_prime.prime import policy as policy_lib
from eurus_prime.prime import prm as prm_lib
from eurus_prime.prime.config import PrimeConfig
from tests.prime.test_degenerate import _tables
from tests.prime.test_stages import CFG, _ckpt

TOL = 1e-5


@pytest.fixture()
def deepspeed_installed():
    """Skip the test without deepspeed; the torch-only tests here run either way."""
    pytest.importorskip("deepspeed", reason="needs deepspeed (pip install -e '.[deepspeed]')")


needs_deepspeed = pytest.mark.usefixtures("deepspeed_installed")
BASE = dataclasses.replace(CFG, policy_lr=2e-3, prm_lr=2e-3, micro_batch=2, prm_mini_batch=6, ppo_mini_batch=6)


def _inputs(tok):
    rollouts, outcomes, report = _tables(tok, [5, 7, 3, 6, 4, 8, 2, 9, 5, 6, 3, 7, 4, 4, 6], seed=3)
    ckpt = _ckpt(tok)
    rewards = prm_lib.compute_process_rewards(ckpt, ckpt, ckpt, rollouts, report, BASE)
    # Fixed advantages for both backends: batch-normalised process rewards would amplify the PRM
    # updates' float-level differences (1e-7) into 1e-5 differences of the policy's inputs.
    rng = np.random.default_rng(0)
    adv = rollouts[["prompt_id", "sample_idx"]].assign(
        advantages=[rng.normal(size=n).astype(np.float32) for n in rollouts["response_length"]]
    )
    return ckpt, rollouts, outcomes, rewards, adv


def _two_iterations(ckpt, rollouts, outcomes, rewards, adv, cfg: PrimeConfig):
    """update_prm and update_policy, twice, the second continuing the first's optimizer state."""
    prm, policy = copy.deepcopy(ckpt), copy.deepcopy(ckpt)
    stats = []
    for iteration in (0, 1):
        # the Kedro nodes: they hand the update to engines/train/ranks.py where num_procs > 1
        prm, prm_rewards, prm_stats, _ = nodes.update_prm(prm, rollouts, rewards, outcomes, cfg, iteration)
        policy, ppo_stats, _ = nodes.update_policy(policy, rollouts, rewards, adv, cfg, iteration)
        stats.append((prm_stats, ppo_stats, prm_rewards))
    return prm, policy, stats


def _max_diff(a, b) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


@pytest.fixture(scope="module")
def torch_result(tiny_tokenizer):
    inputs = _inputs(tiny_tokenizer)
    return inputs, _two_iterations(*inputs, BASE)


@needs_deepspeed
@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_deepspeed_one_rank_matches_torch(torch_result, stage):
    inputs, (prm_t, policy_t, stats_t) = torch_result
    cfg = dataclasses.replace(BASE, trainer_backend="deepspeed", deepspeed={"zero_stage": stage})
    prm_d, policy_d, stats_d = _two_iterations(*inputs, cfg)
    start = inputs[0].model
    moved = max(_max_diff(policy_t.model, start), _max_diff(prm_t.model, start))
    assert moved > 1e-3, moved
    assert _max_diff(policy_d.model, policy_t.model) < TOL
    assert _max_diff(prm_d.model, prm_t.model) < TOL
    for (prm_s_t, ppo_s_t, _), (prm_s_d, ppo_s_d, _) in zip(stats_t, stats_d):
        np.testing.assert_allclose(ppo_s_d["pg_loss"], ppo_s_t["pg_loss"], atol=1e-5)
        np.testing.assert_allclose(ppo_s_d["grad_norm"], ppo_s_t["grad_norm"], rtol=1e-4)
        np.testing.assert_allclose(prm_s_d["loss"], prm_s_t["loss"], atol=1e-5)
    # the optimizer state saved with the checkpoint is DeepSpeed's, per rank
    state = optimizer_state_dict(policy_d.optimizer_state)
    assert state["deepspeed"]["zero_stage"] == stage
    assert len(state["deepspeed"]["ranks"]) == 1
    # a plain module comes back: its own storage, no engine, fp32, saveable
    assert all(p.dtype == torch.float32 for p in policy_d.model.parameters())
    assert not hasattr(next(policy_d.model.parameters()), "ds_id")


@needs_deepspeed
@pytest.mark.parametrize("stage", [0, 2, 3])
def test_a_kept_engine_is_continued_and_updates_as_a_new_engine_per_update(torch_result, stage, tmp_path):
    """``keep_engine`` (the default): the second iteration's updates continue the first's engines
    (one engine start per model, not per update) and leave the same weights as an engine started
    afresh from the saved state each update. At ZeRO 0-2 the model handed back is the engine's own
    module; at ZeRO-3 a plain fp32 model that each update overwrites in place. The checkpoint saves
    and loads: weights and the gathered optimizer state; a model read back from disk starts a new
    engine from it."""
    from eurus_prime.datasets.checkpoint import HFCheckpointDataset

    inputs, (prm_t, policy_t, _) = torch_result
    fresh = dataclasses.replace(
        BASE, trainer_backend="deepspeed", deepspeed={"zero_stage": stage, "keep_engine": False}
    )
    kept = dataclasses.replace(BASE, trainer_backend="deepspeed", deepspeed={"zero_stage": stage})
    starts = deepspeed_trainer.ENGINE_STARTS["count"]
    prm_f, policy_f, _ = _two_iterations(*inputs, fresh)
    assert deepspeed_trainer.ENGINE_STARTS["count"] - starts == 4  # 2 models x 2 iterations
    starts = deepspeed_trainer.ENGINE_STARTS["count"]
    gathers = []
    gather = deepspeed_trainer.DeepSpeedTrainer._gather_full_state
    with mock.patch.object(
        deepspeed_trainer.DeepSpeedTrainer, "_gather_full_state", lambda self: gathers.append(1) or gather(self)
    ):
        prm_k, policy_k, _ = _two_iterations(*inputs, kept)
    assert deepspeed_trainer.ENGINE_STARTS["count"] - starts == 2  # one per model
    # the full weights are gathered at most once per update (the finiteness check and the handed-on
    # model share the copy), and not at all where the engine's own module is handed on
    assert len(gathers) == (0 if stage < 3 else 4)
    kept_state = policy_k.optimizer_state
    assert isinstance(kept_state, deepspeed_trainer.KeptEngine)
    # the model the stages use: the engine's module at ZeRO 0-2, a plain copy (not partitioned) at 3
    assert (kept_state.module is kept_state.engine.module) == (stage < 3)
    assert kept_state.module is policy_k.model and not hasattr(next(policy_k.model.parameters()), "ds_id")
    assert _max_diff(policy_k.model, policy_f.model) < 1e-6
    assert _max_diff(prm_k.model, prm_f.model) < 1e-6
    assert _max_diff(policy_k.model, policy_t.model) < TOL
    # Saved: the weights, and the partitions gathered from the live engine.
    ds = HFCheckpointDataset(str(tmp_path / "policy"))
    ds.save(policy_k)
    loaded = ds.load()
    loaded.version = policy_k.version  # the rollouts' policy (the sync guard checks it)
    assert _max_diff(loaded.model, policy_k.model) == 0.0
    saved = loaded.optimizer_state["deepspeed"]
    assert saved["zero_stage"] == stage and len(saved["ranks"]) == 1
    # From disk: a new engine, the AdamW moments continued from the file, the same step as the
    # kept engine takes.
    starts = deepspeed_trainer.ENGINE_STARTS["count"]
    _, rollouts, outcomes, rewards, adv = inputs
    from_disk, _, _ = nodes.update_policy(loaded, rollouts, rewards, adv, kept, 2)
    assert deepspeed_trainer.ENGINE_STARTS["count"] - starts == 1
    handed = policy_k.optimizer_state
    model_before = policy_k.model
    continued, _, _ = nodes.update_policy(policy_k, rollouts, rewards, adv, kept, 2)
    assert deepspeed_trainer.ENGINE_STARTS["count"] - starts == 1
    assert continued.model is model_before  # updated in place, as the resident slot expects
    assert _max_diff(from_disk.model, continued.model) < 1e-6
    # The state handed over is stale once the engine has stepped on; its snapshot taken for the
    # save stays what was saved.
    assert continued.optimizer_state is not handed
    with pytest.raises(RuntimeError, match="a later update has taken over"):
        handed.take()
    assert handed.state_dict() is not None


def test_gradient_checkpointing_changes_memory_not_the_update(torch_result):
    inputs, (prm_t, policy_t, _) = torch_result
    prm_c, policy_c, _ = _two_iterations(*inputs, dataclasses.replace(BASE, gradient_checkpointing=True))
    assert _max_diff(policy_c.model, policy_t.model) < 1e-6
    assert _max_diff(prm_c.model, prm_t.model) < 1e-6
    assert not policy_c.model.is_gradient_checkpointing


@needs_deepspeed
def test_optimizer_state_from_another_world_is_refused(torch_result):
    inputs, _ = torch_result
    ckpt = copy.deepcopy(inputs[0])
    ckpt.optimizer_state = {"deepspeed": {"world_size": 8, "zero_stage": 2, "ranks": []}}
    cfg = dataclasses.replace(BASE, trainer_backend="deepspeed", deepspeed={"zero_stage": 2})
    with pytest.raises(ValueError, match=r"saved by 8 rank\(s\) at ZeRO stage 2; this update runs 1 rank\(s\)"):
        policy_lib.update_policy(ckpt, inputs[1], inputs[3], inputs[4], cfg, 0)


@needs_deepspeed
@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_on_two_ranks_matches_torch(torch_result, stage):
    """``num_procs: 2``: each update starts two ranks under torchrun on loopback (gloo) and
    returns what the in-process call returns; two iterations, the optimizer partitions saved by
    rank and handed back."""
    inputs, (prm_t, policy_t, stats_t) = torch_result
    cfg = dataclasses.replace(BASE, trainer_backend="deepspeed", deepspeed={"zero_stage": stage, "num_procs": 2})
    prm_d, policy_d, stats_d = _two_iterations(*inputs, cfg)
    assert policy_d.optimizer_state["deepspeed"]["world_size"] == 2
    assert len(policy_d.optimizer_state["deepspeed"]["ranks"]) == 2
    assert _max_diff(policy_d.model, policy_t.model) < TOL
    assert _max_diff(prm_d.model, prm_t.model) < TOL
    for (prm_s_t, ppo_s_t, rewards_t), (prm_s_d, ppo_s_d, rewards_d) in zip(stats_t, stats_d):
        np.testing.assert_allclose(ppo_s_d["pg_loss"], ppo_s_t["pg_loss"], atol=1e-5)
        np.testing.assert_allclose(prm_s_d["loss"], prm_s_t["loss"], atol=1e-5)
        assert list(rewards_d["prompt_id"]) == list(rewards_t["prompt_id"])


def test_config_errors_name_the_parameter():
    with pytest.raises(
        ValueError,
        match=r"prime.trainer_backend = 'fsdp' is invalid: valid values are \['torch', "
        r"'deepspeed'\]",
    ):
        PrimeConfig(trainer_backend="fsdp")
    with pytest.raises(ValueError, match=r"prime.deepspeed.zero_stage = 4 is invalid"):
        PrimeConfig(deepspeed={"zero_stage": 4})
    with pytest.raises(ValueError, match=r"prime.deepspeed has unknown keys \['stage'\]"):
        PrimeConfig(deepspeed={"stage": 2})
    with pytest.raises(ValueError, match="offload_param needs zero_stage 3"):
        PrimeConfig(deepspeed={"zero_stage": 2, "offload_param": True})


def test_missing_deepspeed_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # import deepspeed -> ImportError
    with pytest.raises(ImportError, match=r'pip install -c constraints-cpu.txt -e "\.\[deepspeed\]"'):
        deepspeed_trainer.require_deepspeed()


def test_score_device_moves_each_model_for_its_pass_and_back(torch_result, monkeypatch):
    """``prime.score_device`` (cuda:0 at 7B; here ``cpu:0``, the only device, spelled unlike the
    models' home ``cpu``): each model is moved there before its scoring pass and put back where it
    was after it; the same rewards. The moves are observed through a spy on each model's ``.to``."""
    inputs, _ = torch_result
    rollouts = inputs[1]
    report = rollouts[["prompt_id"]].drop_duplicates().assign(selected=True)
    events: list[tuple] = []

    def spied(name):
        ckpt = copy.deepcopy(inputs[0])
        ckpt.version = name  # three checkpoints, scored once each
        real_to = ckpt.model.to

        def to(*args, **kwargs):
            events.append((name, "to", torch.device(args[0] if args else kwargs["device"])))
            return real_to(*args, **kwargs)

        ckpt.model.to = to
        return ckpt

    real_score = prm_lib.score_responses

    def score(model, *args, **kwargs):
        name = next(c.version for c in (policy, prm, reference) if c.model is model)
        events.append((name, "score", next(model.parameters()).device))
        return real_score(model, *args, **kwargs)

    monkeypatch.setattr(prm_lib, "score_responses", score)
    policy, prm, reference = spied("policy"), spied("prm"), spied("reference")
    plain = prm_lib.compute_process_rewards(policy, prm, reference, rollouts, report, BASE)
    assert [e[1] for e in events] == ["score"] * 3  # no score_device: no model moves
    events.clear()
    moved = prm_lib.compute_process_rewards(
        policy, prm, reference, rollouts, report, dataclasses.replace(BASE, score_device="cpu:0")
    )
    cpu = torch.device("cpu")
    # to score_device, the pass (a CPU tensor's device has no index), back home: once per model
    one_pass = [("to", torch.device("cpu:0")), ("score", cpu), ("to", cpu)]
    for name in ("policy", "reference", "prm"):
        assert [e[1:] for e in events if e[0] == name] == one_pass, name
    assert len(events) == 3 * len(one_pass)
    for col in ("old_logprobs", "ref_logprobs", "prm_logprobs", "implicit_reward"):
        for a, b in zip(plain[col], moved[col]):
            np.testing.assert_array_equal(a, b)
    for ckpt in (policy, prm, reference):
        assert next(ckpt.model.parameters()).device == cpu
