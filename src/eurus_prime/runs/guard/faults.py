"""Fault injection: make a named node crash, to test that a run survives it.

Set ``EURUS_PRIME_FAULT=<node>:<kind>@<where>`` (several separated by ``;``), e.g.
``update_prm:exit@write``. The fault fires the first time the running node reaches ``where``:

- ``start``: before the node's function runs (its inputs are loaded);
- ``middle``: inside the node, once its work is done and before it returns its outputs;
- ``write``: while its first output file is being written (the temporary file is complete, the
  rename into place has not happened): a torn write;
- ``saved``: after its first output is saved and before the others and the stage manifest.

``kind`` is ``raise`` (an exception: the process unwinds normally), ``exit`` (``os._exit(137)``,
like ``kill -9``: no cleanup, no ``finally``, no MLflow run end) or ``hang`` (sleep, for the stage
watchdog to catch). Off unless the variable is set; nothing else reads it.

In an SPMD campaign (``torchrun``) every rank reads the variable; ``EURUS_PRIME_FAULT_RANK=<r>``
fires the faults on rank ``r`` alone (its ``RANK``), as when one machine or process of a job dies.
"""

from __future__ import annotations

import os
import time

ENV = "EURUS_PRIME_FAULT"
RANK_ENV = "EURUS_PRIME_FAULT_RANK"
KINDS = ("raise", "exit", "hang")
WHERE = ("start", "middle", "write", "saved")
EXIT_CODE = 137

#: The node the runner is executing (set by the project hooks), so that dataset writers deep in
#: the stack know whose output they are writing.
current_node: str | None = None
_fired: set[str] = set()


class InjectedFault(RuntimeError):
    """The exception a ``raise`` fault throws."""


def parse(spec: str | None) -> list[tuple[str, str, str]]:
    """``"a:exit@write;b:raise@start"`` -> ``[("a", "exit", "write"), ("b", "raise", "start")]``."""
    out = []
    for item in filter(None, (s.strip() for s in (spec or "").split(";"))):
        try:
            node, rest = item.split(":", 1)
            kind, where = rest.split("@", 1)
        except ValueError:
            raise ValueError(f"{ENV}={spec!r}: {item!r} is not <node>:<kind>@<where>") from None
        if kind not in KINDS or where not in WHERE:
            raise ValueError(
                f"{ENV}={spec!r}: kind must be one of {list(KINDS)} and where one of "
                f"{list(WHERE)}, got {kind!r}@{where!r}"
            )
        out.append((node, kind, where))
    return out


def point(where: str, detail: str = "") -> None:
    """A place where an injected fault may fire (a no-op unless ``EURUS_PRIME_FAULT`` names the
    current node and ``where``)."""
    spec = os.environ.get(ENV)
    if not spec or current_node is None:
        return
    only = os.environ.get(RANK_ENV)
    if only is not None and only.strip() != os.environ.get("RANK", "0"):
        return
    for node, kind, at in parse(spec):
        key = f"{node}:{kind}@{at}"
        if node != current_node or at != where or key in _fired:
            continue
        _fired.add(key)
        message = f"injected fault {key}" + (f" ({detail})" if detail else "")
        if kind == "exit":
            os.write(2, f"{message}: os._exit({EXIT_CODE})\n".encode())
            os._exit(EXIT_CODE)
        if kind == "hang":
            while True:
                time.sleep(0.05)
        raise InjectedFault(message)
