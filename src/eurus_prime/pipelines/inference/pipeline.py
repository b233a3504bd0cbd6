from kedro.pipeline import Pipeline, node, pipeline

from eurus_prime.pipelines.inference.nodes import answer_questions


def create_pipeline(**kwargs) -> Pipeline:
    """Answer ``inference_questions`` (a JSONL/Parquet file of ``question`` [``ability``, ``id``])."""
    return pipeline(
        [
            node(
                answer_questions,
                ["inference_questions", "params:inference"],
                "inference_answers",
                name="answer_questions",
            ),
        ]
    )
