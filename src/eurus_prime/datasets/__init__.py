"""Kedro datasets that kedro-datasets lacks: Hugging Face checkpoint folders and prompt sources."""

from eurus_prime.datasets.checkpoint import Checkpoint, HFCheckpointDataset, HFTokenizerDataset
from eurus_prime.datasets.parquet import AtomicParquetDataset
from eurus_prime.datasets.prompt_source import PromptSourceDataset

__all__ = ["AtomicParquetDataset", "Checkpoint", "HFCheckpointDataset", "HFTokenizerDataset", "PromptSourceDataset"]
