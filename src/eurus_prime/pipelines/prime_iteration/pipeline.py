"""prime_iteration: one PRIME step as ten named nodes, every boundary a stored table.

    sample_prompts -> generate_rollouts -> verify_outcomes -> filter_prompts
      -> compute_process_rewards -> update_prm -> estimate_advantages (and evaluate_prm)
      -> update_policy -> evaluate_policy

Rerun one stage with ``kedro run --pipelines=prime_iteration --nodes=<name> --params=iteration=N``;
it reads that iteration's stored inputs (their latest versions) and writes new versions.

The first four stages run once per *draw*: ``eurus-prime train`` runs them again with
``params:draw`` = 1, 2, ... while fewer than B groups pass the filter (``prime.filter_mode:
regenerate``, the reference's loop). Their tables are cumulative: draw k keeps the rows of draws
0..k-1 (read from the stored tables through the read-only ``*_before`` views) and appends its
own, each row tagged with its ``draw``.
"""

from kedro.pipeline import Pipeline, node, pipeline

from eurus_prime.pipelines.prime_iteration import nodes

CFG = "params:prime"
IT = "params:iteration"

#: The node names, in pipeline order (the resume logic walks them in this order).
STAGES = (
    "sample_prompts",
    "generate_rollouts",
    "verify_outcomes",
    "filter_prompts",
    "compute_process_rewards",
    "update_prm",
    "estimate_advantages",
    "evaluate_prm",
    "update_policy",
    "evaluate_policy",
)


#: ``prime_iteration_ppo``'s nodes in order: PPO with a critic (``prime.advantage_estimator: gae``).
PPO_STAGES = (
    *STAGES[: STAGES.index("update_prm")],
    "compute_values",
    *STAGES[STAGES.index("update_prm") : STAGES.index("update_policy")],
    "update_critic",
    *STAGES[STAGES.index("update_policy") :],
)


def stages_of(name: str) -> tuple[str, ...]:
    """The node names of a PRIME iteration pipeline, in the order resume walks them."""
    if name not in ("prime_iteration", "prime_iteration_ppo"):
        raise ValueError(f"{name!r} is not a PRIME iteration pipeline (prime_iteration, prime_iteration_ppo)")
    return PPO_STAGES if name == "prime_iteration_ppo" else STAGES


def create_ppo_pipeline(**kwargs) -> Pipeline:
    """``prime_iteration`` plus a critic: ``compute_values`` before the advantages, which take its
    values (GAE), and ``update_critic`` after them."""
    base = create_pipeline().filter(node_names=[n for n in STAGES if n != "estimate_advantages"])
    return base + pipeline(
        [
            node(
                nodes.compute_values,
                ["critic_in", "rollouts", "filter_report", CFG, IT],
                ["values", "prime_values_metrics"],
                name="compute_values",
            ),
            node(
                nodes.estimate_advantages_with_values,
                ["prm_rewards", "outcomes", "process_rewards", "values", CFG, IT],
                ["advantages", "prime_adv_metrics"],
                name="estimate_advantages",
            ),
            node(
                nodes.update_critic,
                ["critic_in", "rollouts", "values", "advantages", CFG, IT],
                ["critic_out", "critic_stats", "prime_critic_metrics"],
                name="update_critic",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                nodes.sample_prompts,
                ["prompts_train", "group_buffer_in", "drawn_prompts_before", CFG, IT, "params:draw"],
                "drawn_prompts",
                name="sample_prompts",
            ),
            node(
                nodes.generate_rollouts,
                ["policy_in", "drawn_prompts", "rollouts_before", CFG, IT],
                ["rollouts", "prime_rollout_metrics"],
                name="generate_rollouts",
            ),
            node(
                nodes.verify_outcomes,
                ["rollouts", "outcomes_before", IT],
                ["outcomes", "prime_verify_metrics"],
                name="verify_outcomes",
            ),
            node(
                nodes.filter_prompts,
                ["outcomes", "drawn_prompts", CFG, IT],
                ["filter_report", "group_buffer", "prime_filter_metrics"],
                name="filter_prompts",
            ),
            node(
                nodes.compute_process_rewards,
                ["policy_in", "prm_in", "reference_model", "rollouts", "filter_report", CFG, IT],
                ["process_rewards", "prime_reward_metrics"],
                name="compute_process_rewards",
            ),
            node(
                nodes.update_prm,
                ["prm_in", "rollouts", "process_rewards", "outcomes", CFG, IT],
                ["prm_out", "prm_rewards", "prm_stats", "prime_prm_metrics"],
                name="update_prm",
            ),
            node(
                nodes.evaluate_prm,
                ["prm_out", "prm_eval_set", "process_rewards", "rollouts", "outcomes", "params:prm_eval", CFG, IT],
                ["prm_eval", "prime_prm_eval_metrics"],
                name="evaluate_prm",
            ),
            node(
                nodes.estimate_advantages,
                ["prm_rewards", "outcomes", "process_rewards", CFG, IT],
                ["advantages", "prime_adv_metrics"],
                name="estimate_advantages",
            ),
            node(
                nodes.update_policy,
                ["policy_in", "rollouts", "process_rewards", "advantages", CFG, IT],
                ["policy_out", "ppo_stats", "prime_ppo_metrics"],
                name="update_policy",
            ),
            node(
                nodes.evaluate_policy,
                ["policy_out", "prompts_test", "params:evaluation", CFG, IT],
                ["eval_items", "eval_report", "prime_eval_metrics"],
                name="evaluate_policy",
            ),
        ]
    )
