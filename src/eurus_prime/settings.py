"""Project settings. There is no need to edit this file unless you want to change values
from the Kedro defaults. For further information, including these default values, see
https://docs.kedro.org/en/stable/configure/configuration_basics/#configuration"""

# Instantiated project hooks (executed in Last-In-First-Out order): dataset load/save timing,
# which the training loop reports as time/io_load and time/io_save, per-node peak RSS
# (memory/<node>_peak_rss_mb), and the stage guard.
from eurus_prime.runs.console import silence_known_noise  # noqa: E402
from eurus_prime.runs.guard.hooks import IO_TIMING, MEMORY, MLFLOW_RUN, OTHER_RANKS, STAGE_GUARD  # noqa: E402

silence_known_noise()  # for `kedro run` too: runs/console.py says which warnings and why

# STAGE_GUARD: completion manifests (data/09_manifests), stage watchdogs, fault-injection points.
# MLFLOW_RUN: typed parameter blocks as flat MLflow params, checkpoint versions as tags.
# Under torchrun (engines/spmd.py) only rank 0 writes: the other ranks run neither, nor kedro-mlflow.
from eurus_prime.datasets.spmd_catalog import SpmdDataCatalog  # noqa: E402
from eurus_prime.engines.spmd import is_writer  # noqa: E402

HOOKS = (IO_TIMING, MEMORY, STAGE_GUARD, MLFLOW_RUN) if is_writer() else (IO_TIMING, MEMORY, OTHER_RANKS)

# Installed plugins for which to disable hook auto-registration.
# Kedro matches the distribution's metadata name, which kedro-mlflow's wheel spells kedro_mlflow.
DISABLE_HOOKS_FOR_PLUGINS = () if is_writer() else ("kedro-mlflow", "kedro_mlflow")

# Kedro's catalog, where a stored dataset is saved by rank 0 alone (datasets/spmd_catalog.py).
DATA_CATALOG_CLASS = SpmdDataCatalog

# Class that manages the KedroSession.
# from kedro.framework.session import KedroSession
# SESSION_CLASS = KedroSession

# Class that manages storing KedroSession data.
# from kedro.framework.session.store import BaseSessionStore
# SESSION_STORE_CLASS = BaseSessionStore
# Keyword arguments to pass to the `SESSION_STORE_CLASS` constructor.
# SESSION_STORE_ARGS = {
#     "path": "./sessions"
# }

# Directory that holds configuration.
# CONF_SOURCE = "conf"

# Class that manages how configuration is loaded.
# from kedro.config import OmegaConfigLoader

# CONFIG_LOADER_CLASS = OmegaConfigLoader

# Keyword arguments to pass to the `CONFIG_LOADER_CLASS` constructor.
from eurus_prime.runs.layout import iter_dir, next_iter_dir  # noqa: E402
from eurus_prime.runs.progress import completed_iterations  # noqa: E402

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Parameters merge key by key (base < env), not block by block: Kedro merges runtime params
    # (`--params=inference.best_of=2`) into base and into the env separately, so with the default
    # destructive merge a block that conf/local does not mention would be replaced by the override
    # alone, silently dropping its other keys.
    "merge_strategy": {"parameters": "soft"},
    # Iteration-scoped paths (conf/base/catalog.yml): ${iter:3} -> iter_0003, ${iter_next:3} ->
    # iter_0004, ${completed_iterations:<manifest folder>} -> the next iteration to run.
    "custom_resolvers": {
        "iter": iter_dir,
        "iter_next": next_iter_dir,
        "completed_iterations": completed_iterations,
    },
    # "config_patterns": {
    #     "spark" : ["spark*/"],
    #     "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
    # }
}

# Class that manages Kedro's library components.
# from kedro.framework.context import KedroContext
# CONTEXT_CLASS = KedroContext

# Class that manages the Data Catalog.
# from kedro.io import DataCatalog
# (DATA_CATALOG_CLASS is set above.)
