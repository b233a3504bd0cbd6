"""Project pipelines, registered explicitly.

Kedro 1.5+ imports only ``pipelines/<name>/`` when run with ``--pipelines=<name>`` if the registry
uses ``find_pipelines()``; composites built on top of it then fail to import. So every pipeline,
stage or composite, is built here from the stage modules.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from eurus_prime.pipelines.bootstrap import pipeline as bootstrap
from eurus_prime.pipelines.data_prep import pipeline as data_prep
from eurus_prime.pipelines.evaluation import pipeline as evaluation
from eurus_prime.pipelines.inference import pipeline as inference
from eurus_prime.pipelines.prime_iteration import pipeline as prime_iteration


def register_pipelines() -> dict[str, Pipeline]:
    """``bootstrap`` makes the tiny world and its SFT model and evaluates it; ``tinyworld``,
    ``data_prep``, ``sft``, ``sft_eval`` and ``prm_eval_set`` are its stages, runnable alone once their inputs exist.
    ``prime_iteration`` is one PRIME step; training runs it again and again (``eurus-prime train``);
    ``prime_iteration_ppo`` is the same with a critic (``prime.advantage_estimator: gae``).
    ``evaluation`` compares checkpoints on suites (``eurus-prime evaluate``); ``inference`` answers a
    file of questions (``eurus-prime chat`` answers one, streaming)."""
    world = bootstrap.create_world_pipeline()
    prep = data_prep.create_pipeline()
    sft = bootstrap.create_pipeline()
    sft_eval = evaluation.create_sft_pipeline()
    prm_set = evaluation.create_prm_eval_set_pipeline()
    return {
        "tinyworld": world,
        "data_prep": prep,
        "sft": sft,
        "sft_eval": sft_eval,
        "prm_eval_set": prm_set,
        "prime_iteration": prime_iteration.create_pipeline(),
        "prime_iteration_ppo": prime_iteration.create_ppo_pipeline(),
        "evaluation": evaluation.create_pipeline(),
        "inference": inference.create_pipeline(),
        "bootstrap": world + prep + sft + sft_eval + prm_set,
        "__default__": world + prep + sft + sft_eval + prm_set,
    }
