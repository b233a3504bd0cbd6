"""Reports as files (Markdown, HTML, PNG), versioned like the tables and written atomically.

A node returns the file's content, ``str`` for text and ``bytes`` for binary formats; the dataset
writes it through ``write_file_atomically``. Loading gives the content back the same way (text for
``.md``/``.html``/``.csv``/``.txt``, bytes otherwise), so a later node, a notebook or a test can
read a report without knowing where its version lives.

``mlflow_artifact_path`` also logs each saved file to the active MLflow run (kedro-mlflow opens
one per ``kedro run``), under that artifact folder. kedro-mlflow's own ``MlflowArtifactDataset``
cannot wrap a versioned dataset under Kedro 1.x (its inner dataset gets a save version of its own,
which the catalog rejects), so the versioned file and the artifact are handled here together.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractVersionedDataset, DatasetError, Version

from eurus_prime.datasets.atomic import write_file_atomically

TEXT_SUFFIXES = (".md", ".html", ".csv", ".txt", ".json")


class AtomicFileDataset(AbstractVersionedDataset[bytes | str, bytes | str]):
    """One file whose content a node makes: text for ``TEXT_SUFFIXES``, bytes otherwise."""

    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
        mlflow_artifact_path: str | None = None,
    ) -> None:
        self._text = PurePosixPath(filepath).suffix in TEXT_SUFFIXES
        self._artifact_path = mlflow_artifact_path
        self.metadata = metadata
        super().__init__(filepath=PurePosixPath(filepath), version=version)

    def load(self) -> bytes | str:
        path = Path(str(self._get_load_path()))
        if not path.exists():
            raise DatasetError(f"no file at {path}")
        return path.read_text(encoding="utf-8") if self._text else path.read_bytes()

    def save(self, data: bytes | str) -> None:
        if isinstance(data, str) != self._text:
            kind = "str" if self._text else "bytes"
            raise DatasetError(f"{self._filepath}: expected {kind} content, got {type(data).__name__}")
        target = Path(str(self._get_save_path()))
        write_file_atomically(target, data)
        if self._artifact_path is not None:
            import mlflow

            if mlflow.active_run() is not None:
                mlflow.log_artifact(str(target), artifact_path=self._artifact_path)

    def _exists(self) -> bool:
        try:
            return Path(str(self._get_load_path())).exists()
        except DatasetError:
            return False

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version, "mlflow_artifact_path": self._artifact_path}
