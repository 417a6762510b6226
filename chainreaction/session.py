"""Session causality, sans-IO: the metadata rules of DESIGN.md in one place.

Both the SDK (``client.py``) and the simulator's clients use this class, so what the
simulator checks is what users run.

Rules
-----
* The metadata holds ``key -> (version, chain_index per DC, seq)`` for keys read or written
  whose stability the session does not know (Global-Write-Stability with several DCs:
  replies only say "stable" then). chainIndex 0 in a DC = not known to be there yet; ``seq``
  is the version's position in its origin DC's shipping log, when a reply told it.
* A get sends the entry of its key; a put/delete sends all entries (its dependencies) and
  ``floor``, the largest clock the session has seen, so the new version exceeds it.
* Read reply: a newer version replaces the entry (chain_index = the serving position); the
  same version raises chain_index; a stable version drops the entry.
* Write reply: the metadata becomes the single entry of the written key (the write stands
  for everything it depended on), or nothing if it is already stable.
* On a new connection (failover, or moving to another DC) a session with metadata sends
  ``attach`` first: the frontend answers once the session's causal past is applied in
  its DC. Every reply says which DC answered.

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
    chain: dict  # dc -> chainIndex there
    seq: int = 0

    def dep(self, key: str, dc: int | None) -> m.Dep:
        return m.Dep(key, self.version, self.chain.get(dc, 0), self.seq)


class SessionState:
    def __init__(self) -> None:
        self.metadata: dict[str, Entry] = {}
        self.floor = 0
        self.dc: int | None = None  # the DC of the frontend we talk to, once known
        self._next_id = 1

    def _id(self) -> int:
        i = self._next_id
        self._next_id += 1
        return i

    def get_request(self, key: str) -> m.ClientRequest:
        entry = self.metadata.get(key)
        deps = (entry.dep(key, self.dc),) if entry else ()
        return m.ClientRequest(op="get", id=self._id(), key=key, deps=deps)

    def write_request(self, op: str, key: str, value: bytes | None, rid: bytes) -> m.ClientRequest:
        deps = tuple(e.dep(k, self.dc) for k, e in self.metadata.items())
        return m.ClientRequest(op=op, id=self._id(), key=key, value=value, deps=deps,
                               floor=self.floor, rid=rid)

    def attach_request(self, keys=None) -> m.ClientRequest:
        """First request on a new connection: bring the causal past (the entries of
        ``keys``, default all: a request carries at most MAX_DEPS) into that DC."""
        self.dc = None
        keys = self.metadata if keys is None else keys
        deps = tuple(self.metadata[k].dep(k, None) for k in keys)
        return m.ClientRequest(op="attach", id=self._id(), deps=deps, floor=self.floor)

    def on_attach(self, reply: dict) -> None:
        self.dc = reply.get("dc", 0)

    def in_current_dc(self, req: m.ClientRequest) -> m.ClientRequest:
        """``req`` with each dependency's chainIndex for the DC we are attached to now (a
        request built before a failover carries the old DC's positions)."""
        deps = []
        for d in req.deps:
            entry = self.metadata.get(d.key)
            same = entry is not None and entry.version == d.version
            deps.append(attrs.evolve(d, chain_index=entry.chain.get(self.dc, 0) if same else 0))
        return attrs.evolve(req, deps=tuple(deps))

    def stats_request(self) -> m.ClientRequest:
        return m.ClientRequest(op="stats", id=self._id())

    def on_read(self, key: str, reply: dict) -> None:
        version: Version | None = reply.get("version")
        if version is None:
            return
        self.floor = max(self.floor, version.clock)
        dc = self.dc = reply.get("dc", 0)
        entry = self.metadata.get(key)
        if reply.get("stable"):
            if entry is None or version >= entry.version:
                self.metadata.pop(key, None)
            return
        position, seq = reply["chain_index"], reply.get("seq", 0)
        if entry is None or version > entry.version:
            self.metadata[key] = Entry(version, {dc: position}, seq)
        elif version == entry.version:
            entry.chain[dc] = max(entry.chain.get(dc, 0), position)
            entry.seq = max(entry.seq, seq)

    def on_write(self, key: str, reply: dict) -> None:
        version: Version = reply["version"]
        self.floor = max(self.floor, version.clock)
        self.dc = reply.get("dc", 0)
        self.metadata.clear()
        if not reply.get("stable"):
            self.metadata[key] = Entry(version, {self.dc: reply["chain_index"]})
