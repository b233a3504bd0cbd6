"""The project's data catalog (``settings.DATA_CATALOG_CLASS``): Kedro's, plus the SPMD rule that
only rank 0 writes (``engines/spmd.py``).

With several ranks, a save to any stored dataset (a table, a checkpoint, a report, MLflow
metrics) is made by rank 0 alone; every rank then meets at a barrier, so no rank loads it before
it is written. Before that, every rank runs the dataset's ``prepare_save`` where it has one (a
checkpoint gathers a kept DeepSpeed engine's optimizer partitions there, a collective). A rank that skipped a checkpoint's save keeps its own (identical) object resident as
the version rank 0 saved (``HFCheckpointDataset.adopt_saved``). In-memory datasets are saved on
every rank: they are each rank's own. With one process this is Kedro's catalog unchanged.
"""

from __future__ import annotations

from typing import Any

from kedro.io import DataCatalog, MemoryDataset

from eurus_prime.engines import spmd


class SpmdDataCatalog(DataCatalog):
    """Kedro's ``DataCatalog`` whose stored datasets only rank 0 saves (module docstring)."""

    def save(self, ds_name: str, data: Any) -> None:
        if spmd.env_world()[1] <= 1:
            super().save(ds_name, data)
            return
        dataset = self[ds_name]
        if isinstance(dataset, MemoryDataset):
            super().save(ds_name, data)
            return
        prepare = getattr(dataset, "prepare_save", None)
        if prepare is not None:  # collectives a save needs (gathering a kept engine's optimizer state)
            prepare(data)
        if spmd.is_writer():
            super().save(ds_name, data)
            spmd.barrier()
            return
        spmd.barrier()  # rank 0 has written it
        adopt = getattr(dataset, "adopt_saved", None)
        if adopt is not None:
            adopt(data)
