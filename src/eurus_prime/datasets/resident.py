"""Models kept in memory across stages and iterations: the checkpoint a stage saves, or loads, is
handed to the next stage that asks for the same version, instead of being read from disk again.

A checkpoint dataset with ``resident: <slot>`` in the catalog (``policy``, ``prm``, ``reference``,
``critic``) keeps the last checkpoint it saved or loaded in that slot of this process. A load
is served from the slot when all of these hold, and from disk otherwise:

- the slot's checkpoint came from (or was saved to) the folder the load resolves to: the same
  versioned folder, so the same version, with the same head and load arguments;
- its weights have not changed since: every parameter and buffer is the same tensor with the same
  in-place version counter (``Tensor._version``; an optimizer step, ``copy_`` or ``add_`` moves
  it). An update stage trains the policy it was handed in place, so the object no longer matches
  the version it came from, and a second load of that version (a retried stage) reads the disk.

One object per slot: ``policy_out`` of iteration *i* replaces ``policy_in`` of iteration *i* and
is served as ``policy_in`` of iteration *i* + 1, so a campaign holds one policy, one PRM, one
reference (and one critic) at a time, as the single-stage loads did at their peak. Distinct slots
never share an object, even where two datasets resolve to one folder (iteration 0's policy, PRM
and reference are all the SFT model): training one cannot change another.

Saves still write the disk every time (the tables and checkpoints of every iteration stay
rerunnable); what the slot saves is the reads. ``EURUS_PRIME_RESIDENT=0`` turns it off (every
load reads the disk, as before).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

SLOTS = ("policy", "prm", "reference", "critic")
ENV_SWITCH = "EURUS_PRIME_RESIDENT"


def enabled() -> bool:
    """Whether resident serving is on (``EURUS_PRIME_RESIDENT``, default on)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def fingerprint(model: Any) -> tuple:
    """Which tensors the model holds, where their storage is and how often each was changed in
    place: equal fingerprints mean equal weights (a tensor's ``_version`` counts its in-place
    writes; assigning ``.data`` moves its storage)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return tuple((id(t), t._version, t.data_ptr(), t.device.type) for t in tensors)


@dataclass
class _Entry:
    key: tuple
    checkpoint: Any
    print: tuple


class ResidentModels:
    """The process's slots (module docstring). Thread-safe; ``hits``/``misses`` count serves."""

    def __init__(self) -> None:
        self._slots: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, slot: str, key: tuple) -> Any | None:
        """The slot's checkpoint if it holds ``key``'s version, unchanged; else None."""
        with self._lock:
            entry = self._slots.get(slot) if enabled() else None
            if entry is None or entry.key != key:
                self.misses += 1
                return None
            if fingerprint(entry.checkpoint.model) != entry.print:
                del self._slots[slot]  # trained in place since: no longer that version
                self.misses += 1
                log.debug("resident %s: changed since %s was stored; reading the disk", slot, key[0])
                return None
            self.hits += 1
            return entry.checkpoint

    def put(self, slot: str, key: tuple, checkpoint: Any) -> None:
        """Keep ``checkpoint`` as the slot's, as the version ``key`` (replacing what it held)."""
        if not enabled():
            return
        with self._lock:
            self._slots[slot] = _Entry(key, checkpoint, fingerprint(checkpoint.model))

    def held(self) -> dict[str, str]:
        """What each slot holds: the folder of its version."""
        with self._lock:
            return {slot: str(entry.key[0]) for slot, entry in self._slots.items()}

    def clear(self) -> None:
        """Drop every slot (the end of a campaign; tests)."""
        with self._lock:
            self._slots.clear()


RESIDENT = ResidentModels()
