import os

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from eurus_prime.tasks.tinyworld.model import ModelConfig, build_model  # noqa: E402
from eurus_prime.tasks.tinyworld.tokenizer import TokenizerConfig, build_tokenizer, chat_text  # noqa: E402
from eurus_prime.tasks.tinyworld.world import TinyWorldConfig, generate_world  # noqa: E402

SMALL_WORLD = TinyWorldConfig(n_sft=300, n_train=60, n_val=20, n_test=40, seed=3)
SMALL_MODEL = ModelConfig(
    hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64
)


@pytest.fixture(scope="session")
def small_world() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate_world(SMALL_WORLD)


@pytest.fixture(scope="session")
def tiny_tokenizer(small_world):
    _, demos = small_world
    corpus = [chat_text(list(p), r) for p, r in zip(demos["prompt"], demos["response"])]
    return build_tokenizer(corpus, TokenizerConfig(vocab_size=320))


@pytest.fixture()
def tiny_model(tiny_tokenizer):
    return build_model(SMALL_MODEL, tiny_tokenizer)


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory):
    """A tiny project (tests/pipelines/helpers.TINY_PARAMS) after ``eurus-prime train --iterations 2``:
    the SFT model, two iterations' tables and checkpoints, one evaluated iteration, an MLflow db.
    Shared by the result-inspection tests: treat it as read-only (copy it to change it)."""
    from tests.pipelines.helpers import EURUS_PRIME, make_project, run

    project = make_project(tmp_path_factory.mktemp("trained"))
    env = {**os.environ, "TQDM_DISABLE": "1", "KEDRO_DISABLE_TELEMETRY": "1"}
    run([EURUS_PRIME, "train", "--iterations", "2", "--project", str(project)], project, env=env)
    return project
