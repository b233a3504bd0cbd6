from kedro.pipeline import Pipeline, node, pipeline

from eurus_prime.pipelines.bootstrap.nodes import (
    build_initial_model,
    build_tiny_tokenizer,
    make_world,
    supervised_finetune,
)


def create_world_pipeline(**kwargs) -> Pipeline:
    """Generate the world's raw prompts and demonstrations (``params:world``)."""
    return pipeline(
        [
            node(
                make_world,
                ["params:world", "params:tinyworld", "params:chainworld", "params:countdownworld"],
                ["raw_prompts", "sft_demonstrations"],
                name="make_world",
            )
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Tokenizer, initial model and SFT from the demonstrations."""
    return pipeline(
        [
            node(
                build_tiny_tokenizer,
                ["sft_demonstrations", "params:tokenizer"],
                "tokenizer",
                name="build_tokenizer",
            ),
            node(build_initial_model, ["tokenizer", "params:model"], "initial_model", name="build_model"),
            node(
                supervised_finetune,
                ["initial_model", "sft_demonstrations", "params:sft"],
                ["sft_model", "sft_history", "sft_metrics"],
                name="supervised_finetune",
            ),
        ]
    )
