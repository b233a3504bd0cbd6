"""prime_iteration: thin nodes over ``eurus_prime.prime`` (``rollouts``, ``prm``, ``policy``).

Each node returns its tables, its checkpoint where it makes one, and a dict of MLflow metrics
stepped by the iteration (``rollout/...``, ``filter/...``, ``prm/...``, ``adv/...``, ``ppo/...``,
``eval/...``, ``time/<node>``).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import pandas as pd

from eurus_prime.datasets import Checkpoint
from eurus_prime.engines.train import ranks
from eurus_prime.eval.evaluation import EvalConfig, accuracy_report, evaluate_prompts
from eurus_prime.prime import critic as critic_lib
from eurus_prime.prime import policy as policy_lib
from eurus_prime.prime import prm as prm_lib
from eurus_prime.prime import prm_eval as prm_eval_lib
from eurus_prime.prime import rollouts as rollouts_lib
from eurus_prime.prime.config import PrimeConfig, should_evaluate
from eurus_prime.prime.prm_eval import PrmEvalConfig
from eurus_prime.runs.guard import monitor

log = logging.getLogger(__name__)


@contextmanager
def _timed(metrics: dict, name: str):
    start = time.perf_counter()
    yield
    metrics[f"time/{name}"] = time.perf_counter() - start


def _stepped(metrics: dict[str, float], iteration: int) -> dict:
    return {k: {"value": float(v), "step": int(iteration)} for k, v in metrics.items()}


def sample_prompts(
    prompts_train: pd.DataFrame,
    group_buffer_in: pd.DataFrame,
    drawn_prompts_before: pd.DataFrame,
    prime: PrimeConfig,
    iteration: int,
    draw: int,
) -> pd.DataFrame:
    """Draw ``draw`` of this iteration's prompts (oversampled), after its earlier draws; draw 0
    takes the previous iteration's buffered groups first."""
    return rollouts_lib.sample_prompts(
        prompts_train, prime, iteration, int(draw), buffer=group_buffer_in, earlier=drawn_prompts_before
    )


def generate_rollouts(
    policy_in: Checkpoint,
    drawn_prompts: pd.DataFrame,
    rollouts_before: pd.DataFrame,
    prime: PrimeConfig,
    iteration: int,
) -> tuple[pd.DataFrame, dict]:
    """n samples per prompt of the last draw from the current policy, after the earlier draws'."""
    m: dict[str, float] = {}
    with _timed(m, "generate_rollouts"):
        rollouts = rollouts_lib.generate_rollouts(
            policy_in,
            drawn_prompts,
            prime,
            iteration,
            policy_in.version,
            on_progress=monitor.step,
            earlier=rollouts_before,
        )
    m.update(rollouts_lib.rollout_metrics(rollouts, prime))
    return rollouts, _stepped(m, iteration)


def verify_outcomes(rollouts: pd.DataFrame, outcomes_before: pd.DataFrame, iteration: int) -> tuple[pd.DataFrame, dict]:
    """Outcome verifier score of every rollout (the earlier draws' verdicts kept)."""
    m: dict[str, float] = {}
    with _timed(m, "verify_outcomes"):
        outcomes = rollouts_lib.verify_rollouts(rollouts, on_progress=monitor.step, earlier=outcomes_before)
    m.update(rollouts_lib.outcome_metrics(outcomes))
    return outcomes, _stepped(m, iteration)


def filter_prompts(
    outcomes: pd.DataFrame, drawn_prompts: pd.DataFrame, prime: PrimeConfig, iteration: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Keep prompt groups with accuracy in the band; select up to B of them; the surplus goes to
    the group buffer of the next iteration."""
    m: dict[str, float] = {}
    with _timed(m, "filter_prompts"):
        report = rollouts_lib.filter_prompts(outcomes, prime)
        buffer = rollouts_lib.group_buffer(report, iteration)
    m.update(rollouts_lib.filter_metrics(report, drawn_prompts))
    return report, buffer, _stepped(m, iteration)


def compute_process_rewards(
    policy_in: Checkpoint,
    prm_in: Checkpoint,
    reference_model: Checkpoint,
    rollouts: pd.DataFrame,
    filter_report: pd.DataFrame,
    prime: PrimeConfig,
    iteration: int,
) -> tuple[pd.DataFrame, dict]:
    """Old-policy, reference and PRM log-probs of the selected rollouts; implicit rewards."""
    m: dict[str, float] = {}
    with _timed(m, "compute_process_rewards"):
        table = prm_lib.compute_process_rewards(
            policy_in, prm_in, reference_model, rollouts, filter_report, prime, on_progress=monitor.step
        )
    return table, _stepped(m, iteration)


def update_prm(
    prm_in: Checkpoint,
    rollouts: pd.DataFrame,
    process_rewards: pd.DataFrame,
    outcomes: pd.DataFrame,
    prime: PrimeConfig,
    iteration: int,
):
    """Update of the implicit PRM (on ``prime.deepspeed.num_procs`` ranks where that is > 1); the process rewards the advantages use (the
    PRM's, or with ``prime.process_reward: oracle`` the ground-truth first wrong step's)."""
    m: dict[str, float] = {}
    with _timed(m, "update_prm"):
        args = (rollouts, process_rewards, outcomes, prime, iteration)
        if ranks.wanted(prime.trainer_backend, prime.deepspeed) and not prime.prm_frozen(iteration):
            prm_out, prm_rewards, prm_stats = ranks.run(prm_lib.update_prm, prm_in, *args, deepspeed=prime.deepspeed)
        else:
            prm_out, prm_rewards, prm_stats = prm_lib.update_prm(prm_in, *args, on_progress=monitor.step)
    m.update(prm_lib.prm_metrics(process_rewards, prm_rewards, outcomes, prm_stats, prime))
    if prime.process_reward != "implicit":
        prm_rewards = prm_lib.oracle_rewards(prm_rewards, rollouts, outcomes, prm_out.tokenizer, prime.process_reward)
    return prm_out, prm_rewards, prm_stats, _stepped(m, iteration)


def evaluate_prm(
    prm_out: Checkpoint,
    prm_eval_set: pd.DataFrame,
    process_rewards: pd.DataFrame,
    rollouts: pd.DataFrame,
    outcomes: pd.DataFrame,
    prm_eval: PrmEvalConfig,
    prime: PrimeConfig,
    iteration: int,
) -> tuple[pd.DataFrame, dict]:
    """The PRM on its own: on this iteration's fresh rollouts (as loaded, before its update) and,
    every ``prm_eval.every`` iterations, the updated PRM on the fixed set (``prime/prm_eval.py``)."""
    m: dict[str, float] = {}
    with _timed(m, "evaluate_prm"):
        table = prm_eval_lib.evaluate(
            prm_out,
            prm_eval_set,
            process_rewards,
            rollouts,
            outcomes,
            prime,
            prm_eval.samples,
            prm_eval.should_score(iteration),
        )
    m.update(prm_eval_lib.table_metrics(table))
    return table.assign(iteration=iteration), _stepped(m, iteration)


def estimate_advantages(
    prm_rewards: pd.DataFrame, outcomes: pd.DataFrame, process_rewards: pd.DataFrame, prime: PrimeConfig, iteration: int
) -> tuple[pd.DataFrame, dict]:
    """Returns and advantages by ``prime.advantage_estimator`` (RLOO on process and outcome rewards,
    combined and whitened, by default); ``process_rewards`` carries the log-probs of a KL in the reward."""
    m: dict[str, float] = {}
    with _timed(m, "estimate_advantages"):
        adv = policy_lib.estimate_advantages(prm_rewards, outcomes, prime, process_rewards)
    m.update(policy_lib.advantage_metrics(adv))
    return adv, _stepped(m, iteration)


def compute_values(
    critic_in: Checkpoint, rollouts: pd.DataFrame, filter_report: pd.DataFrame, prime: PrimeConfig, iteration: int
) -> tuple[pd.DataFrame, dict]:
    """``prime_iteration_ppo``: the critic's values of the selected rollouts' states."""
    m: dict[str, float] = {}
    with _timed(m, "compute_values"):
        values = critic_lib.compute_values(critic_in, rollouts, filter_report, prime, on_progress=monitor.step)
    return values, _stepped(m, iteration)


def estimate_advantages_with_values(
    prm_rewards: pd.DataFrame,
    outcomes: pd.DataFrame,
    process_rewards: pd.DataFrame,
    values: pd.DataFrame,
    prime: PrimeConfig,
    iteration: int,
) -> tuple[pd.DataFrame, dict]:
    """``prime_iteration_ppo``: GAE against the critic's values (``prime.advantage_estimator: gae``)."""
    m: dict[str, float] = {}
    with _timed(m, "estimate_advantages"):
        adv = policy_lib.estimate_advantages(prm_rewards, outcomes, prime, process_rewards, values)
    m.update(policy_lib.advantage_metrics(adv))
    return adv, _stepped(m, iteration)


def update_critic(
    critic_in: Checkpoint,
    rollouts: pd.DataFrame,
    values: pd.DataFrame,
    advantages: pd.DataFrame,
    prime: PrimeConfig,
    iteration: int,
):
    """``prime_iteration_ppo``: the critic's clipped value loss against the GAE returns (in this
    process, whatever ``prime.deepspeed.num_procs``)."""
    m: dict[str, float] = {}
    with _timed(m, "update_critic"):
        critic_out, stats = critic_lib.update_critic(
            critic_in, rollouts, values, advantages, prime, iteration, on_progress=monitor.step
        )
    m.update(critic_lib.critic_metrics(values, advantages, stats))
    return critic_out, stats, _stepped(m, iteration)


def update_policy(
    policy_in: Checkpoint,
    rollouts: pd.DataFrame,
    process_rewards: pd.DataFrame,
    advantages: pd.DataFrame,
    prime: PrimeConfig,
    iteration: int,
):
    """PPO update of the policy (on ``prime.deepspeed.num_procs`` ranks where that is > 1)."""
    m: dict[str, float] = {}
    with _timed(m, "update_policy"):
        args = (rollouts, process_rewards, advantages, prime, iteration)
        if ranks.wanted(prime.trainer_backend, prime.deepspeed):
            policy_out, stats = ranks.run(policy_lib.update_policy, policy_in, *args, deepspeed=prime.deepspeed)
        else:
            policy_out, stats = policy_lib.update_policy(policy_in, *args, on_progress=monitor.step)
    m.update(policy_lib.ppo_metrics(stats))
    return policy_out, stats, _stepped(m, iteration)


def evaluate_policy(
    policy_out: Checkpoint, prompts_test: pd.DataFrame, evaluation: EvalConfig, prime: PrimeConfig, iteration: int
):
    """Greedy pass@1 of the updated policy on the first ``eval_max_items`` held-out test prompts
    (every ``eval_every`` iterations): the split and order of the SFT model's report, so the two
    compare item for item. Nothing is selected on it."""
    m: dict[str, float] = {}
    if not should_evaluate(prime, iteration):
        log.info(
            "evaluate_policy: iteration %d is not an evaluation iteration (eval_every=%d)", iteration, prime.eval_every
        )
        empty = pd.DataFrame({"group": [], "name": [], "n": [], "accuracy": [], "mean_score": []})
        return pd.DataFrame({"iteration": []}), empty.assign(iteration=[]), {}
    with _timed(m, "evaluate_policy"):
        prompts = prompts_test if prime.eval_max_items is None else prompts_test.head(prime.eval_max_items)
        items = evaluate_prompts(policy_out.model, policy_out.tokenizer, prompts, evaluation, monitor.step)
        report = accuracy_report(items)
    for row in report.itertuples():
        key = "all" if row.group == "all" else row.name
        m[f"eval/{key}"] = row.accuracy
        log.info(
            "iteration %d eval %-12s %-14s n=%-5d accuracy %.3f", iteration, row.group, row.name, row.n, row.accuracy
        )
    return items.assign(iteration=iteration), report.assign(iteration=iteration), _stepped(m, iteration)
