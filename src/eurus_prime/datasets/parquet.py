"""Parquet tables written atomically.

kedro-datasets' ``pandas.ParquetDataset`` streams straight into the final file, so a crash
mid-write leaves a truncated ``.parquet`` that a later ``load`` (the latest version) would read.
This dataset writes a hidden temporary sibling and renames it into place: a reader sees the
whole table or no table. Remote filesystems (``s3://``, ...) keep the parent's behaviour, where
object stores already make a put atomic.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from kedro.io.core import DatasetError, get_filepath_str
from kedro_datasets.pandas import ParquetDataset

from eurus_prime.datasets.atomic import write_stream_atomically


class AtomicParquetDataset(ParquetDataset):
    """``pandas.ParquetDataset`` whose local saves are atomic (temporary file, fsync, rename)."""

    def save(self, data: pd.DataFrame) -> None:
        if self._protocol != "file":
            return super().save(data)
        if "partition_cols" in self._save_args:
            raise DatasetError(f"{type(self).__name__} does not support save argument 'partition_cols'")
        target = Path(get_filepath_str(self._get_save_path(), self._protocol))
        if target.is_dir():
            raise DatasetError(f"{type(self).__name__}: {target} is a directory")
        write_stream_atomically(target, lambda f: data.to_parquet(f, **self._save_args))
        self._invalidate_cache()


class StoredTableView(AtomicParquetDataset):
    """A read-only view of a versioned table's latest stored version, or an empty table when none
    is stored yet. A stage that extends a table it also writes reads it through one of these (a
    node cannot take its own output as an input): ``rollouts_before`` is ``rollouts`` as stored
    when the stage starts."""

    def load(self) -> pd.DataFrame:
        if not self._exists():
            return pd.DataFrame()
        return super().load()

    def save(self, data: pd.DataFrame) -> None:
        raise DatasetError(f"{type(self).__name__} ({self._filepath}) is read-only: save through the table it views")
