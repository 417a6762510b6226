"""A node's delete tombstones and their collection (docs/protocol.md §7.1).

A tombstone may go once three things hold:

* its DC's proxy says so (``GeoProgress.collectable``): it is Global-Write-Stable and every
  write of any DC that could be concurrent with it and older is applied here, so none can
  arrive after it and come back to life;
* it is older than the grace period (``grace_s`` by its stamp): no write older than it is
  still on its way. (A node back from a crash with older unstable writes hands them only
  to a holder of their range, custody.py, which drops those its floor covers.)
* it is stable here and nothing waits on the key;
* it is stamped below ``GeoProgress.collect_below``: every write of every DC stamped
  below that is applied here already. The floor covers *any* key, so without this a
  write stamped below it that arrives later (its DC logged it late, or a partition
  outlasted the grace period: fuzz seed 7300574) would be dropped as collected, though
  nothing superseded it. How the proxies learn that bound: remote_proxy/stability.py.

What it leaves behind is the **floor**: the newest version this node collected, persisted
before the records go and passed on to nodes copying a range (``SyncChunk.gc_floor``). An
absent key at a node whose floor covers a version counts as "that version or newer, and
deleted": a new write to it gets a larger stamp, reads and dependency checks of a session
that still holds the tombstone are answered, and a copy drops stale records its sources
have collected.
"""

from __future__ import annotations

from typing import Callable

import cbor2

from .storage import Record, Store
from .versions import Version

FLOOR_META = "gc_floor"
SWEEP_EVERY_S = 1.0


class Tombstones:
    def __init__(self, store: Store, grace_s: float) -> None:
        self.store = store
        self.grace_s = grace_s
        raw = store.get_meta(FLOOR_META)
        self.floor: Version | None = Version(*cbor2.loads(raw)) if raw else None
        self.keys: dict[str, int] = {}  # key -> stamp of the tombstone stored there
        self.collectable: dict[int, int] = {}  # origin dc -> log position (GeoProgress)
        self.collect_below = 0  # every write stamped below is applied here (GeoProgress)
        self.collected = 0
        self._next_sweep = float("-inf")

    def note(self, key: str, record: Record) -> None:
        """Every record stored goes past here."""
        if record.value is None:
            self.keys[key] = record.version.clock

    def covers(self, version: Version) -> bool:
        """Whether a missing record may stand for ``version`` (collected at or above it)."""
        return self.floor is not None and version <= self.floor

    def raise_floor(self, version: Version | None) -> None:
        if version is not None and not self.covers(version):
            self.floor = version
            self.store.put_meta(FLOOR_META, cbor2.dumps([version.clock, version.dc]))

    def sweep(self, now: float, busy: Callable[[str], bool]) -> list[str]:
        """Collect what may go (at most once a second); returns the keys that went."""
        if now < self._next_sweep or not self.keys or not self.collectable:
            return []
        self._next_sweep = now + SWEEP_EVERY_S
        victims, floor = [], self.floor
        old_enough = (now - self.grace_s) * 1e6
        for key, stamp in list(self.keys.items()):
            if stamp > old_enough or stamp >= self.collect_below:
                continue  # (the common case: no store read)
            record = self.store.get(key)
            if record is None or record.value is not None:
                del self.keys[key]
                continue
            version = record.version
            if (not record.stable or not record.seq or version.clock >= self.collect_below
                    or record.seq > self.collectable.get(version.dc, 0)
                    or now - version.clock / 1e6 < self.grace_s or busy(key)):
                continue
            victims.append(key)
            floor = version if floor is None else max(floor, version)
        if victims:
            self.raise_floor(floor)  # durable before the records go
            for key in victims:
                self.store.delete(key)
                del self.keys[key]
            self.collected += len(victims)
        return victims
