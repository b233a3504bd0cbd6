"""Raw prompts from a local Parquet/JSON/JSONL file or a Hugging Face hub dataset (load only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io.core import AbstractDataset, DatasetError

_READERS = {
    ".parquet": pd.read_parquet,
    ".json": pd.read_json,
    ".jsonl": lambda p: pd.read_json(p, lines=True),
}


class PromptSourceDataset(AbstractDataset[None, pd.DataFrame]):
    """Load prompts in the Eurus-2-RL-Data schema.

    ``filepath`` is a local ``.parquet``, ``.json`` or ``.jsonl`` file; otherwise ``hub_id`` (e.g.
    ``PRIME-RL/Eurus-2-RL-Data``) is loaded with ``datasets.load_dataset(hub_id, split=split)``.
    The loaded frame carries ``attrs["source"]`` so validation errors can name the file.
    """

    def __init__(
        self,
        filepath: str | None = None,
        hub_id: str | None = None,
        split: str = "train",
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not filepath and not hub_id:
            raise DatasetError("PromptSourceDataset needs a filepath or a hub_id")
        self._filepath, self._hub_id, self._split = filepath, hub_id, split
        self._load_args = dict(load_args or {})
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        if self._filepath and Path(self._filepath).exists():
            suffix = Path(self._filepath).suffix
            if suffix not in _READERS:
                raise DatasetError(
                    f"{self._filepath}: unsupported prompt file type {suffix!r}; use one of {sorted(_READERS)}"
                )
            frame = _READERS[suffix](self._filepath)
            frame.attrs["source"] = self._filepath
            return frame
        if self._hub_id:
            import datasets

            ds = datasets.load_dataset(self._hub_id, split=self._split, **self._load_args)
            frame = ds.to_pandas()
            frame.attrs["source"] = f"{self._hub_id}[{self._split}]"
            return frame
        raise DatasetError(f"prompt file {self._filepath} does not exist and no hub_id is set")

    def save(self, data: None) -> None:
        raise DatasetError("PromptSourceDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "hub_id": self._hub_id, "split": self._split}
