from kedro.pipeline import Pipeline, node, pipeline

from eurus_prime.pipelines.evaluation.nodes import evaluate_checkpoint


def create_pipeline(**kwargs) -> Pipeline:
    """Evaluate the SFT checkpoint on the held-out test prompts."""
    return pipeline(
        [
            node(
                evaluate_checkpoint,
                ["sft_model", "prompts_test", "params:evaluation"],
                ["sft_eval_items", "sft_eval_report", "sft_eval_metrics"],
                name="evaluate_sft",
            )
        ]
    )
