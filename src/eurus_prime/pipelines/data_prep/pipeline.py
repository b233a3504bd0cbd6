from kedro.pipeline import Pipeline, node, pipeline

from eurus_prime.pipelines.data_prep.nodes import split_prompts, validate_raw_prompts


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                validate_raw_prompts,
                ["raw_prompts", "params:data_prep.quarantine"],
                ["validated_prompts", "prompts_quarantine", "data_prep_metrics"],
                name="validate_prompts",
            ),
            node(
                split_prompts,
                ["validated_prompts", "prompts_quarantine", "params:data_prep.split"],
                ["prompts_train", "prompts_val", "prompts_test", "data_prep_report"],
                name="split_prompts",
            ),
        ]
    )
