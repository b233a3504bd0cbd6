"""Hugging Face model/tokenizer folders as (versioned) Kedro datasets.

``filepath`` is a local folder, or a hub id such as ``PRIME-RL/Eurus-2-7B-SFT`` when no such
local folder exists (load only; nothing in the default world downloads). Saves are atomic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractVersionedDataset, DatasetError, Version, VersionNotFoundError

from eurus_prime.datasets.atomic import write_dir_atomically
from eurus_prime.datasets.resident import RESIDENT, SLOTS
from eurus_prime.datasets.versions import has_version

OPTIMIZER_FILE = "optimizer.pt"
#: The file a ``write: false`` version folder holds instead of the checkpoint.
MEMORY_ONLY = "MEMORY_ONLY"


def memory_only_message(folder: str | Path) -> str:
    return (
        f"{folder} holds no weights: train.save_every kept that iteration's checkpoint in the memory of "
        "a process that has ended. `eurus-prime train` replays the iterations after the last saved "
        "checkpoint; to rerun one stage, first train with train.save_every=1 up to it"
    )


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class Checkpoint:
    """A causal LM and its tokenizer, the unit that moves between stages.

    ``version`` names what it was loaded from, ``<folder>@<timestamp>`` for a versioned folder
    (e.g. ``policy/iter_0003@2026-11-25T19.02.11.123Z``) or the hub id: rollouts record it.
    ``optimizer_state`` is the AdamW state of the run that trains it, saved beside the weights
    as ``optimizer.pt`` so that the next iteration continues the optimizer, not a fresh one.
    """

    model: Any
    tokenizer: Any
    version: str = ""
    optimizer_state: dict | None = None


class _HFFolderDataset(AbstractVersionedDataset):
    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        hub_id: str | None = None,
    ) -> None:
        if hub_id is not None and not _HUB_ID.match(hub_id):
            raise DatasetError(f"hub_id {hub_id!r} is not a Hugging Face hub id (owner/name)")
        self._raw = filepath
        self._hub_id = hub_id
        self._load_args = dict(load_args or {})
        self.metadata = metadata
        super().__init__(filepath=PurePosixPath(filepath), version=version)

    def _source(self) -> str:
        """The folder to load from, or the hub id when there is no such local folder."""
        try:
            path = Path(str(self._get_load_path()))
        except VersionNotFoundError:  # versioned, and no version saved yet
            path = None
        if path is not None and path.exists():
            return str(path)
        if self._hub_id is not None:
            return self._hub_id  # no local copy: the hub (Kedro makes `filepath` absolute, so a hub id goes here)
        if self._version is None and _HUB_ID.match(self._raw):
            return self._raw
        where = self._raw if path is None else str(path)
        raise DatasetError(
            f"no checkpoint at {where}{' (no saved version)' if path is None else ''}; the tiny "
            f"world's bootstrap creates it: run `eurus-prime train` (bootstraps the SFT model "
            f"first, then trains) or `kedro run --pipelines=bootstrap`. For another model, point "
            f"the dataset's filepath at a Hugging Face folder or hub id"
        )

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._raw, "hub_id": self._hub_id, "version": self._version, "load_args": self._load_args}

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


HEADS = ("causal_lm", "value")


class HFCheckpointDataset(_HFFolderDataset):
    """A model + tokenizer folder, loaded as a ``Checkpoint`` with ``AutoModelForCausalLM``, or
    with ``head: value`` as a critic (``AutoModelForTokenClassification``, one output; a causal LM
    folder, such as the SFT model a critic starts from, gets a new value head set to 0).

    ``initial`` and ``iteration`` serve the PRIME loop's ``policy_in``/``prm_in``: at iteration 0,
    and only then, a checkpoint with no saved version loads ``initial`` instead (the SFT model: a
    versioned folder, a plain folder or a hub id). At a later iteration a missing checkpoint is an
    error naming the iteration that writes it.

    ``resident`` names a slot (``policy``, ``prm``, ``reference``, ``critic``) that keeps the
    checkpoint this dataset last saved or loaded in memory, and serves it to the next load of the
    same version instead of reading the disk (``eurus_prime.datasets.resident``).

    ``write: false`` (a resident dataset only; the training loop sets it through the runtime
    parameter ``save_checkpoints`` on the iterations ``train.save_every`` skips) keeps a saved
    checkpoint in its slot alone: the version folder on disk holds only a ``MEMORY_ONLY`` note.
    Loads in this process are served from the slot; elsewhere they fail, saying so.
    """

    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        initial: str | None = None,
        iteration: int | None = None,
        hub_id: str | None = None,
        head: str = "causal_lm",
        resident: str | None = None,
        write: bool | str = True,
    ) -> None:
        super().__init__(filepath=filepath, version=version, load_args=load_args, metadata=metadata, hub_id=hub_id)
        if head not in HEADS:
            raise DatasetError(f"head {head!r} is not one of {list(HEADS)}")
        if resident is not None and resident not in SLOTS:
            raise DatasetError(f"{filepath}: resident {resident!r} is not one of {list(SLOTS)}")
        self._initial = initial
        self._iteration = None if iteration is None else int(iteration)
        self._head = head
        self._resident = resident
        self._write = str(write).strip().lower() not in ("false", "0", "no", "off")
        if not self._write and resident is None:
            raise DatasetError(f"{filepath}: write: false needs a resident slot to keep the checkpoint in")

    def _fallback(self) -> HFCheckpointDataset | None:
        if self._initial is None or self._version is None:
            return None
        try:
            self.resolve_load_version()
            return None
        except DatasetError:
            pass
        if self._iteration != 0:
            raise DatasetError(
                f"no checkpoint at {self._raw} for iteration {self._iteration}; iteration "
                f"{(self._iteration or 1) - 1} writes it: run `kedro run --pipelines=prime_iteration "
                f"--params=iteration={(self._iteration or 1) - 1}` (or `eurus-prime train`). With "
                "train.save_every > 1 only every save_every-th iteration writes its checkpoints: "
                "`eurus-prime train` replays the iterations after the last saved one"
            )
        versioned = has_version(self._initial)
        return HFCheckpointDataset(
            self._initial,
            version=Version(None, None) if versioned else None,
            load_args=self._load_args,
            hub_id=self._hub_id,
            head=self._head,
            resident=self._resident,
        )

    def _resident_key(self, source: str | Path) -> tuple:
        """What a resident checkpoint must have come from to serve this load: folder, head, load_args."""
        return (str(Path(source)), self._head, repr(sorted(self._load_args.items())))

    def load(self) -> Checkpoint:
        fallback = self._fallback()
        if fallback is not None:
            return fallback.load()
        source = self._source()
        if self._resident is not None:
            held = RESIDENT.get(self._resident, self._resident_key(source))
            if held is not None:
                held.model.eval()  # as from_pretrained hands it over
                return held
        checkpoint = self._read(source)
        if self._resident is not None:
            RESIDENT.put(self._resident, self._resident_key(source), checkpoint)
        return checkpoint

    def _read(self, source: str) -> Checkpoint:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if (Path(source) / MEMORY_ONLY).exists():
            raise DatasetError(memory_only_message(source))
        tokenizer = AutoTokenizer.from_pretrained(source)
        if self._head == "value":
            model = _value_model(source, self._load_args)
        else:
            model = AutoModelForCausalLM.from_pretrained(source, **self._load_args)
        state = None
        if (Path(source) / OPTIMIZER_FILE).exists():
            state = load_optimizer_state(Path(source) / OPTIMIZER_FILE)
        return Checkpoint(model=model, tokenizer=tokenizer, version=self._version_label(), optimizer_state=state)

    def model_config(self):
        """The checkpoint's ``transformers`` config (``config.json`` only; no weights loaded)."""
        fallback = self._fallback()
        if fallback is not None:
            return fallback.model_config()
        from transformers import AutoConfig

        stand_in = self._memory_only_stand_in()
        return stand_in.model_config() if stand_in is not None else AutoConfig.from_pretrained(self._source())

    def _memory_only_stand_in(self) -> HFCheckpointDataset | None:
        """For a ``MEMORY_ONLY`` version: the dataset whose tokenizer and config it shares (the
        ``initial`` model it was trained from; training changes neither). None for a real version."""
        source = self._source()
        if not (Path(source) / MEMORY_ONLY).exists():
            return None
        if self._initial is None:
            raise DatasetError(memory_only_message(source))
        return HFCheckpointDataset(self._initial, version=Version(None, None) if has_version(self._initial) else None)

    @property
    def _tail(self) -> str:
        """The folder's last two parts, which version labels start with (``policy/iter_0003``)."""
        return "/".join(Path(self._raw).parts[-2:])

    def _version_label(self) -> str:
        tail = self._tail
        if self._version is None:
            return self._raw if _HUB_ID.match(self._raw) and not Path(self._raw).exists() else tail
        if self._hub_id is not None and self._source() == self._hub_id:
            return self._hub_id
        return f"{tail}@{self.resolve_load_version()}"

    def load_tokenizer(self):
        """The checkpoint's tokenizer alone (no weights loaded). A checkpoint that only lived in
        memory (``train.save_every``) has the tokenizer of the model it started from: ``initial``'s."""
        fallback = self._fallback()
        if fallback is not None:
            return fallback.load_tokenizer()
        from transformers import AutoTokenizer

        stand_in = self._memory_only_stand_in()
        return stand_in.load_tokenizer() if stand_in is not None else AutoTokenizer.from_pretrained(self._source())

    def _exists(self) -> bool:
        fallback = self._fallback() if self._iteration == 0 else None
        return fallback._exists() if fallback is not None else super()._exists()

    def save(self, checkpoint: Checkpoint) -> None:
        if not isinstance(checkpoint, Checkpoint):
            raise DatasetError(f"{type(self).__name__} saves a Checkpoint, got {type(checkpoint).__name__}")

        def write(tmp: Path) -> None:
            checkpoint.model.save_pretrained(tmp)
            checkpoint.tokenizer.save_pretrained(tmp)
            if checkpoint.optimizer_state:
                import torch

                from eurus_prime.engines.train.base import optimizer_state_dict

                torch.save(optimizer_state_dict(checkpoint.optimizer_state), tmp / OPTIMIZER_FILE)

        def write_note(tmp: Path) -> None:  # train.save_every skips this iteration: the slot keeps it
            tmp.mkdir(parents=True, exist_ok=True)
            (tmp / MEMORY_ONLY).write_text(
                "This checkpoint was kept in memory only (train.save_every): no weights were written.\n"
            )

        target = Path(str(self._get_save_path()))
        write_dir_atomically(target, write if self._write else write_note)
        if self._resident is not None and self._version is not None:
            self._hold(checkpoint, target, f"{self._tail}@{self.resolve_save_version()}")

    def prepare_save(self, checkpoint: Checkpoint) -> None:
        """SPMD, on every rank before rank 0 saves (``datasets/spmd_catalog.py``): gather an optimizer
        state whose partitions live on the ranks (a kept DeepSpeed engine's), a collective, when this
        save writes the checkpoint. Rank 0's save then writes the gathered state."""
        if self._write and isinstance(checkpoint, Checkpoint) and checkpoint.optimizer_state:
            from eurus_prime.engines.train.base import optimizer_state_dict

            optimizer_state_dict(checkpoint.optimizer_state)

    def _hold(self, checkpoint: Checkpoint, folder: str | Path, label: str) -> None:
        """``checkpoint`` is this dataset's version ``label`` at ``folder`` now: label it so, and
        keep it in the dataset's resident slot."""
        checkpoint.version = label
        if self._resident is not None:
            RESIDENT.put(self._resident, self._resident_key(folder), checkpoint)

    def adopt_saved(self, checkpoint: Checkpoint) -> None:
        """SPMD, on a rank that does not write: rank 0 has just saved this dataset's version of an
        identical checkpoint. Label ``checkpoint`` as that version and keep it resident, as the
        save would have (``datasets/spmd_catalog.py``)."""
        self._clear_version_cache()  # the newest version on disk is the one rank 0 just wrote
        self._hold(checkpoint, self._source(), self._version_label())


def _value_model(source: str, load_args: dict[str, Any]):
    """A critic folder as saved, or a causal LM folder with a new value head (``value_model_from``)."""
    from transformers import AutoConfig, AutoModelForTokenClassification

    from eurus_prime.engines.values import value_model_from

    architectures = AutoConfig.from_pretrained(source).architectures or []
    if any(a.endswith("ForTokenClassification") for a in architectures):
        return AutoModelForTokenClassification.from_pretrained(source, **load_args)
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "newly initialized: score.weight" is the point here
    try:
        return value_model_from(source, **load_args)
    finally:
        transformers.logging.set_verbosity(verbosity)


def load_optimizer_state(path: Path) -> dict:
    """``optimizer.pt`` with ``weights_only=True`` (no arbitrary code on load). The deepspeed
    backend's state carries three plain DeepSpeed classes, allowed by name when it does."""
    import pickle

    import torch

    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL deepspeed." not in str(err):
            raise
    from eurus_prime.engines.train.deepspeed_trainer import deepspeed_state_globals

    with torch.serialization.safe_globals(deepspeed_state_globals()):
        return torch.load(path, weights_only=True)
