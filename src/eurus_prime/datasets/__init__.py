"""Kedro datasets that kedro-datasets lacks: Hugging Face checkpoint folders, prompt sources,
atomic Parquet tables and atomic report files."""

from eurus_prime.datasets.checkpoint import Checkpoint, HFCheckpointDataset, HFTokenizerDataset
from eurus_prime.datasets.files import AtomicFileDataset
from eurus_prime.datasets.parquet import AtomicParquetDataset, StoredTableView
from eurus_prime.datasets.prompt_source import PromptSourceDataset

__all__ = [
    "AtomicFileDataset",
    "AtomicParquetDataset",
    "StoredTableView",
    "Checkpoint",
    "HFCheckpointDataset",
    "HFTokenizerDataset",
    "PromptSourceDataset",
]
