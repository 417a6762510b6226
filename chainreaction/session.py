"""Session causality, sans-IO: the metadata rules of DESIGN.md in one place.

Both the SDK (``client.py``) and the simulator's clients use this class, so what the
simulator checks is what users run.

Rules
-----
* The metadata holds ``key -> (version, chain_index)`` for keys read or written whose
  DC-Write-Stability the session does not know.
* A get sends the entry of its key; a put/delete sends all entries (its dependencies) and
  ``floor``, the largest clock the session has seen, so the new version exceeds it.
* Read reply: a newer version replaces the entry (chain_index = the serving position); the
  same version raises chain_index; a stable version drops the entry.
* Write reply: the metadata becomes the single entry of the written key (the write stands
  for everything it depended on), or nothing if it is already stable.

The frontend remembers which versions its tails reported stable and skips dependency
checks for those, so the client needs no stability notices of its own.
"""

from __future__ import annotations

import attrs

from . import messages as m
from .versions import Version


@attrs.define(slots=True)
class Entry:
    version: Version
    chain_index: int


class SessionState:
    def __init__(self) -> None:
        self.metadata: dict[str, Entry] = {}
        self.floor = 0
        self._next_id = 1

    def _id(self) -> int:
        i = self._next_id
        self._next_id += 1
        return i

    def get_request(self, key: str) -> m.ClientRequest:
        entry = self.metadata.get(key)
        deps = (m.Dep(key, entry.version, entry.chain_index),) if entry else ()
        return m.ClientRequest(op="get", id=self._id(), key=key, deps=deps)

    def write_request(self, op: str, key: str, value: bytes | None, rid: bytes) -> m.ClientRequest:
        deps = tuple(m.Dep(k, e.version, e.chain_index) for k, e in self.metadata.items())
        return m.ClientRequest(op=op, id=self._id(), key=key, value=value, deps=deps,
                               floor=self.floor, rid=rid)

    def stats_request(self) -> m.ClientRequest:
        return m.ClientRequest(op="stats", id=self._id())

    def on_read(self, key: str, reply: dict) -> None:
        version: Version | None = reply.get("version")
        if version is None:
            return
        self.floor = max(self.floor, version.clock)
        entry = self.metadata.get(key)
        if reply.get("stable"):
            if entry is None or version >= entry.version:
                self.metadata.pop(key, None)
            return
        if entry is None or version > entry.version:
            self.metadata[key] = Entry(version, reply["chain_index"])
        elif version == entry.version:
            entry.chain_index = max(entry.chain_index, reply["chain_index"])

    def on_write(self, key: str, reply: dict) -> None:
        version: Version = reply["version"]
        self.floor = max(self.floor, version.clock)
        self.metadata.clear()
        if not reply.get("stable"):
            self.metadata[key] = Entry(version, reply["chain_index"])
