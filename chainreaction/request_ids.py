"""The request ids of the writes a node applied, so that a retried put applies once.

A frontend that got no ack resends a put with the same request id (``rid``). A head that
knows the rid answers with the version it gave that write instead of applying it again
with a new one (``NodeCore._write_at_head``). Every chain member remembers the rids it
applies, so a member that becomes head after a failure knows them too; a range copy
carries them to a new member (``SyncChunk.rids``), and they are persisted beside the data
(``Store.put_rid``), so a restarted node still knows them. Bounded: the oldest are
forgotten first (a retry comes within seconds, the bound is ``NodeConfig.dedup_size``).

One version per rid: a head that crashed after applying a put, before anyone acknowledged
it, still holds that version (an orphan) when the retry has been applied again, with a new
version, by the head that took over (fuzz seed 1021255). Last-writer-wins keeps the larger
of the two everywhere, so every table keeps the larger too: a retry is then answered with
the version readers see, wherever it lands (docs/protocol.md §6.6).
"""

from __future__ import annotations

import collections

from .ring import RangeSet, hash_point
from .storage import Store
from .versions import Version


class RequestIds:
    def __init__(self, store: Store, limit: int) -> None:
        self.store = store
        self.limit = limit
        self._table: collections.OrderedDict[bytes, tuple] = collections.OrderedDict()

    def __contains__(self, rid: bytes) -> bool:
        return rid in self._table

    def get(self, rid: bytes) -> tuple | None:
        """``(key, version)`` the write with ``rid`` was applied as, if we know it."""
        return self._table.get(rid)

    def remember(self, rid: bytes, key: str, version: Version, persist: bool = True) -> Version:
        """Note that the write ``rid`` was applied as ``version``; returns the version it
        is known by (the larger, if it was applied twice)."""
        known = self._table.get(rid)
        if known is not None and known[0] == key and known[1] >= version:
            return known[1]
        entry = (key, version)
        self._table[rid] = entry
        if persist:
            self.store.put_rid(rid, key, version)
        if len(self._table) > self.limit:
            old, _ = self._table.popitem(last=False)
            self.store.forget_rid(old)
        return version

    def load(self) -> None:
        """After a restart: the ones the store kept (a retry after it applies once)."""
        for rid, key, version in self.store.rids():
            self.remember(rid, key, version, persist=False)

    def within(self, ranges: RangeSet) -> list[tuple[bytes, str, Version]]:
        """``(rid, key, version)`` of the keys in ``ranges``, for a range copy."""
        return [(rid, key, version) for rid, (key, version) in self._table.items()
                if hash_point(key) in ranges]
