"""What ``eurus-prime train`` shows on the terminal, and where the rest goes.

By default the terminal gets a short header, live progress bars (one per stage, on a terminal
only), one line per iteration and the final table. Everything else, Kedro's dataset and node
messages, transformers', MLflow's and Python warnings, goes to one log file per campaign under
``data/08_reporting/logs/``; errors still reach the terminal. ``--verbose`` leaves logging as
Kedro configures it (everything on the terminal).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

#: Where the campaign log files go (relative to the project).
LOG_DIR = Path("data/08_reporting/logs")
#: Known noise, silenced where it arises rather than hidden wholesale: Kedro registers this
#: project's custom resolvers (``settings.CONFIG_LOADER_ARGS``) through an OmegaConf call that
#: OmegaConf has deprecated, once per session (about 140 warnings in one ``make train``).
#: kedro-mlflow registers its own resolver through the same call.
NOISE = (
    (r"register_new_resolver\(\) is deprecated", "kedro.config.omegaconf_config"),
    (r"register_new_resolver\(\) is deprecated", "kedro_mlflow.framework.hooks.mlflow_hook"),
)


def silence_known_noise() -> None:
    """Ignore the warnings in ``NOISE`` (each by message and the module that issues it), and tell
    DeepSpeed the accelerator on a machine without CUDA (it would warn that it guessed the CPU)."""
    for message, module in NOISE:
        warnings.filterwarnings("ignore", message=message, category=UserWarning, module=module)
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def campaign_log(project: Path) -> Path:
    """A new log file for this run of ``eurus-prime train``: ``train_<UTC time>.log``; under
    torchrun each rank past 0 has its own, ``train_<UTC time>.rank<k>.log``."""
    from eurus_prime.engines.spmd import env_world

    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime())
    rank = env_world()[0]
    return Path(project) / LOG_DIR / f"train_{stamp}{f'.rank{rank}' if rank else ''}.log"


def logging_config(log_file: Path) -> dict[str, Any]:
    """All records (INFO and up) to ``log_file``; only errors to the terminal."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "filename": str(log_file),
                "formatter": "plain",
                "level": "INFO",
                "encoding": "utf-8",
            },
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "plain",
                "level": "ERROR",
            },
        },
        "loggers": {
            # loggers that bring their own handler get ours instead
            name: {"level": "INFO", "handlers": ["file", "console"], "propagate": False}
            for name in ("mlflow", "alembic", "kedro_mlflow")
        }
        | {"kedro": {"level": "INFO"}, "eurus_prime": {"level": "INFO"}},
        "root": {"level": "INFO", "handlers": ["file", "console"]},
    }


def quiet(log_file: Path) -> None:
    """Send logging, warnings and library progress bars of this process to ``log_file``."""
    import yaml

    log_file.parent.mkdir(parents=True, exist_ok=True)
    silence_known_noise()
    config = logging_config(log_file)
    # Kedro applies KEDRO_LOGGING_CONFIG when it is first imported (its "Using ... as logging
    # configuration" line then lands in the file too); configure_logging covers a Kedro imported earlier.
    config_file = log_file.parent / "logging.yml"
    config_file.write_text(yaml.safe_dump(config))
    os.environ["KEDRO_LOGGING_CONFIG"] = str(config_file)
    import mlflow  # noqa: F401  (configures its logger on import: ours must come after)
    import transformers.utils.logging as transformers_logging
    from huggingface_hub.utils import disable_progress_bars
    from kedro.framework.project import configure_logging

    configure_logging(config)
    logging.captureWarnings(True)
    transformers_logging.disable_default_handler()
    transformers_logging.enable_propagation()
    transformers_logging.disable_progress_bar()  # "Loading weights", "Writing model shards"
    disable_progress_bars()
    os.environ["EURUS_PRIME_LOG_FILE"] = str(log_file)


def is_terminal() -> bool:
    return sys.stderr.isatty()
