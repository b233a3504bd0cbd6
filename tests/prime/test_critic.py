"""PPO's critic (prime/critic.py, engines/values.py, the ``head: value`` checkpoint): values per
response token, read where verl reads them; the clipped value loss drives them to the returns;
the checkpoint round trip."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io.core import Version

from eurus_prime.datasets import Checkpoint, HFCheckpointDataset
from eurus_prime.engines.values import sequence_values
from eurus_prime.prime import critic as critic_lib
from eurus_prime.prime import rollouts as rollouts_lib
from tests.prime.test_stages import CFG, _ckpt


@pytest.fixture(scope="module")
def sft_folder(tmp_path_factory, tiny_tokenizer):
    folder = tmp_path_factory.mktemp("sft") / "sft_model"
    sft = _ckpt(tiny_tokenizer)
    sft.model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def batch(small_world, tiny_tokenizer):
    prompts, _ = small_world
    train = prompts[[e["split"] == "train" for e in prompts["extra_info"]]].reset_index(drop=True)
    sft = _ckpt(tiny_tokenizer)
    drawn = rollouts_lib.sample_prompts(train, CFG, iteration=0)
    rollouts = rollouts_lib.generate_rollouts(sft, drawn, CFG, 0, sft.version)
    report = rollouts_lib.filter_prompts(rollouts_lib.verify_rollouts(rollouts), CFG)
    return rollouts, report


def _critic(sft_folder, iteration=0) -> Checkpoint:
    ds = HFCheckpointDataset(
        str(sft_folder.parent / "critic"),
        version=Version(None, None),
        initial=str(sft_folder),
        iteration=iteration,
        head="value",
    )
    return ds.load()


def test_a_new_critic_is_the_sft_body_with_a_zero_head_and_round_trips(sft_folder, tmp_path, batch):
    critic = _critic(sft_folder)
    assert type(critic.model).__name__ == "Qwen2ForTokenClassification"
    sft_body = _ckpt(critic.tokenizer).model.model.state_dict()
    for name, tensor in critic.model.model.state_dict().items():
        torch.testing.assert_close(tensor, sft_body[name])
    rollouts, report = batch
    values = critic_lib.compute_values(critic, rollouts, report, CFG)
    assert all((v == 0).all() for v in values["values"])  # zero head: every value 0
    # saved and loaded again as a critic: same weights, no new head
    with torch.no_grad():
        critic.model.score.weight.fill_(0.01)
    out = HFCheckpointDataset(str(tmp_path / "critic"), version=Version(None, None), head="value")
    out.save(critic)
    again = HFCheckpointDataset(str(tmp_path / "critic"), version=Version(None, None), head="value").load()
    torch.testing.assert_close(again.model.score.weight, critic.model.score.weight)
    with pytest.raises(Exception, match=r"head 'q' is not one of \['causal_lm', 'value'\]"):
        HFCheckpointDataset(str(tmp_path / "x"), head="q")


def test_values_are_read_at_the_position_before_each_token_whatever_the_padding(sft_folder, batch):
    critic = _critic(sft_folder)
    torch.manual_seed(0)
    with torch.no_grad():
        critic.model.score.weight.normal_()
    rollouts, report = batch
    values = critic_lib.compute_values(critic, rollouts, report, dataclasses.replace(CFG, micro_batch=4))
    rows = rollouts_lib.selected_rollouts(rollouts, report)
    for i in (0, 3, len(rows) - 1):
        p, r = list(rows["prompt_ids"][i]), list(rows["response_ids"][i])
        ids = torch.tensor([p + r])
        alone = critic.model(input_ids=ids).logits[0, len(p) - 1 : len(p) + len(r) - 1, 0]
        np.testing.assert_allclose(values["values"][i], alone.detach().numpy(), atol=1e-5)
        # and sequence_values on that one unpadded row says the same
        one = sequence_values(critic.model, ids, torch.ones_like(ids), len(r))[0]
        np.testing.assert_allclose(one.numpy(), alone.detach().numpy(), atol=1e-6)


def test_update_critic_moves_the_values_to_the_returns_and_refuses_other_values(sft_folder, batch):
    critic = _critic(sft_folder)
    rollouts, report = batch
    cfg = dataclasses.replace(CFG, critic_lr=1e-2, ppo_mini_batch=6, value_clip=10.0)
    values = critic_lib.compute_values(critic, rollouts, report, cfg)
    target = 0.7
    advantages = values[["prompt_id", "sample_idx"]].assign(returns=[np.full(len(v), target) for v in values["values"]])

    def error(v: pd.DataFrame) -> float:
        return float(np.mean([np.mean((x - target) ** 2) for x in v["values"]]))

    before = error(values)
    for step in range(5):
        critic, stats = critic_lib.update_critic(critic, rollouts, values, advantages, cfg, iteration=step)
        critic = dataclasses.replace(critic, version=f"critic@{step}")
        values = critic_lib.compute_values(critic, rollouts, report, cfg)
    assert list(stats.columns) == critic_lib.STATS_COLUMNS and not stats["skipped"].any()
    assert error(values) < 0.2 * before
    metrics = critic_lib.critic_metrics(values, advantages, stats)
    assert metrics["critic/values_mean"] == pytest.approx(np.mean(np.concatenate(list(values["values"]))))
    with pytest.raises(
        ValueError, match=r"the values came from critic critic@4, but the critic being updated is other"
    ):
        critic_lib.update_critic(dataclasses.replace(critic, version="other"), rollouts, values, advantages, cfg, 9)
    with pytest.raises(ValueError, match="advantage rows have no values row"):
        critic_lib.update_critic(critic, rollouts, values.iloc[1:], advantages, cfg, 9)


def test_gae_advantages_need_the_critics_values():
    from eurus_prime.prime import policy as policy_lib

    cfg = dataclasses.replace(CFG, advantage_estimator="gae", samples_per_prompt=2)
    key = {"prompt_id": ["a", "a"], "sample_idx": [0, 1]}
    prm_rewards = pd.DataFrame({**key, "token_rewards": [np.zeros(2, np.float32), np.zeros(3, np.float32)]})
    outcomes = pd.DataFrame({**key, "score": [1.0, 0.0]})
    assert cfg.needs_critic and cfg.pipeline == "prime_iteration_ppo" and CFG.pipeline == "prime_iteration"
    with pytest.raises(ValueError, match="needs the critic's values: run the prime_iteration_ppo pipeline"):
        policy_lib.estimate_advantages(prm_rewards, outcomes, cfg)
    values = pd.DataFrame({**key, "values": [np.array([0.25, 0.5]), np.array([0.1, 0.2, 0.3])]})
    adv = policy_lib.estimate_advantages(prm_rewards, outcomes, cfg, values=values)
    # gamma = lam = 1, no process reward: returns = A + V = the outcome on every token
    np.testing.assert_allclose(adv["returns"][0], [1.0, 1.0])
    np.testing.assert_allclose(adv["returns"][1], [0.0, 0.0, 0.0], atol=1e-7)
    with pytest.raises(ValueError, match=r"rollout \(a, 1\) has no critic value"):
        policy_lib.estimate_advantages(prm_rewards, outcomes, cfg, values=values.iloc[:1])
