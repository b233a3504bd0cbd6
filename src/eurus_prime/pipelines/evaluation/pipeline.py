from kedro.pipeline import Pipeline, node, pipeline

from eurus_prime.pipelines.evaluation import nodes


def create_sft_pipeline(**kwargs) -> Pipeline:
    """Evaluate the SFT checkpoint on the held-out test prompts (the bootstrap's last stage)."""
    return pipeline(
        [
            node(
                nodes.evaluate_checkpoint,
                ["sft_model", "prompts_test", "params:evaluation"],
                ["sft_eval_items", "sft_eval_report", "sft_eval_metrics"],
                name="evaluate_sft",
            ),
        ]
    )


def create_prm_eval_set_pipeline(**kwargs) -> Pipeline:
    """The fixed set every iteration's PRM is measured on (the bootstrap's, after the SFT)."""
    return pipeline(
        [
            node(
                nodes.build_prm_eval_set,
                ["sft_model", "prompts_val", "params:prm_eval", "params:prime"],
                "prm_eval_set",
                name="build_prm_eval_set",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Compare checkpoints (``params:evaluation_suites.checkpoints``, default SFT vs the latest
    policy) on suites (the held-out splits, benchmark files): greedy pass@1 and, with ``best_of``,
    majority vote and PRM-ranked best-of-N."""
    cfg = "params:evaluation_suites"
    return pipeline(
        [
            node(
                nodes.load_eval_suites,
                ["prompts_test", "prompts_val", cfg],
                "eval_suite_prompts",
                name="load_eval_suites",
            ),
            node(
                nodes.evaluate_suites,
                ["eval_suite_prompts", cfg],
                ["eval_suite_items", "eval_suite_samples"],
                name="evaluate_suites",
            ),
            node(
                nodes.summarise_evaluation,
                "eval_suite_items",
                ["eval_table", "eval_markdown", "eval_chart", "eval_suite_metrics"],
                name="summarise_evaluation",
            ),
        ]
    )
