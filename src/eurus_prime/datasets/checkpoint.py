"""Hugging Face model/tokenizer folders as (versioned) Kedro datasets.

``filepath`` is a local folder, or a hub id such as ``PRIME-RL/Eurus-2-7B-SFT`` when no such
local folder exists (load only; nothing in the default world downloads). Saves are atomic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractVersionedDataset, DatasetError, Version

from eurus_prime.datasets.atomic import write_dir_atomically

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class Checkpoint:
    """A causal LM and its tokenizer, the unit that moves between stages."""

    model: Any
    tokenizer: Any


class _HFFolderDataset(AbstractVersionedDataset):
    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._raw = filepath
        self._load_args = dict(load_args or {})
        self.metadata = metadata
        super().__init__(filepath=PurePosixPath(filepath), version=version)

    def _source(self) -> str:
        """The folder to load from, or the hub id when there is no such local folder."""
        path = Path(str(self._get_load_path()))
        if path.exists():
            return str(path)
        if self._version is None and _HUB_ID.match(self._raw):
            return self._raw
        raise DatasetError(
            f"no checkpoint at {path}; for the tiny world's SFT model run "
            f"`kedro run --pipelines=bootstrap` (or `make train`)"
        )

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._raw, "version": self._version, "load_args": self._load_args}

    def _exists(self) -> bool:
        try:
            return Path(str(self._get_load_path())).exists()
        except DatasetError:
            return False


class HFTokenizerDataset(_HFFolderDataset):
    """A tokenizer folder, loaded with ``AutoTokenizer``."""

    def load(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self._source(), **self._load_args)

    def save(self, tokenizer) -> None:
        write_dir_atomically(Path(str(self._get_save_path())), tokenizer.save_pretrained)


class HFCheckpointDataset(_HFFolderDataset):
    """A model + tokenizer folder, loaded as a ``Checkpoint`` with ``AutoModelForCausalLM``."""

    def load(self) -> Checkpoint:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = self._source()
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, **self._load_args)
        return Checkpoint(model=model, tokenizer=tokenizer)

    def save(self, checkpoint: Checkpoint) -> None:
        if not isinstance(checkpoint, Checkpoint):
            raise DatasetError(
                f"{type(self).__name__} saves a Checkpoint, got {type(checkpoint).__name__}"
            )

        def write(tmp: Path) -> None:
            checkpoint.model.save_pretrained(tmp)
            checkpoint.tokenizer.save_pretrained(tmp)

        write_dir_atomically(Path(str(self._get_save_path())), write)
