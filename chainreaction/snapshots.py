"""Snapshot reads at a chain head: what a GET-TRANSACTION reads (docs/protocol.md §8).

A transaction reads every key at one stamp ``at``, at each key's head: the version that
head had applied at or before ``at`` on its hybrid clock (``Record.applied``: a write of
this DC is applied as it is stamped; another DC's when its head applies it). Before
answering, the head moves its clock past ``at``, so whatever it applies later counts as
after ``at``: the versions at or before ``at`` are all there already, and a transaction
sees each key as it was at one instant of its head's order. Why the instants of
different heads make one causal snapshot: a version is applied at a head only once its
dependencies are stable in the DC, and the clocks on the way (the tail's, through the
frontend's dependency check, into the floor of the dependent write) put each dependency
before it; so everything in the past of a version applied at or before ``at`` was applied
at or before ``at`` too, on its own head. The frontend takes answers of one ring epoch
only: a new head (another node, after a ring change) may have a clock behind ``at``.

Older versions are kept (``Store.put_old``) for ``retain_s`` after the version that
replaced them was applied, long enough for a transaction that chose its stamp from recent
clocks; a read below what is kept (``horizon``) answers with the horizon and the
transaction starts again above it. Records that go without a successor (tombstones
collected, stale copies dropped) and copies of a range (they bring no history) move the
horizon up. A restarted node keeps no old versions, and its clock starts past every stamp
it ever read at (``SNAPSHOT_BOUND``, persisted ahead of them in steps), so no write it
applies after a restart falls below a snapshot it already served.

A backup (tools/backup.py) is a transaction over every key: it pages through the keys
each head holds (``SnapshotScan``) at one stamp, which may take longer than ``retain_s``.
Each page *pins* its stamp for ``PIN_S``: nothing a pinned stamp reads is collected, nor
are tombstones (a collection would move the horizon past it).
"""

from __future__ import annotations

import collections

import attrs

from . import messages as m
from .effects import Send
from .storage import Record, Store
from .versions import HybridClock

SNAPSHOT_BOUND = "snapshot_bound"  # store meta: no snapshot was read at or above it
BOUND_STEP_US = 1_000_000  # the bound is persisted this far ahead, once per step
PIN_S = 10.0  # a backup's stamp stays readable this long after its last page
# ... unless the old versions kept for it grow past this: the pins go (the backup starts
# again at a later stamp) rather than the node's disk filling up under a write load
PIN_MAX_BYTES = 512 * 2**20


class Snapshots:
    def __init__(self, store: Store, clock: HybridClock, retain_s: float, counters) -> None:
        self.store = store
        self.clock = clock
        self.retain_us = int(retain_s * 1_000_000)
        self.counters = counters
        raw = store.get_meta(SNAPSHOT_BOUND)
        self._bound = int(raw) if raw else 0
        clock.observe(self._bound)
        # Nothing older than our start is kept (old versions do not outlive the process).
        self.horizon = clock.last
        # (its successor's applied, key, its applied, its size): in about the order they go
        self._kept: collections.deque = collections.deque()
        self.kept_bytes = 0
        self._pins: dict[int, float] = {}  # a backup's stamp -> until when (node's time)

    @property
    def enabled(self) -> bool:
        return self.retain_us > 0

    def replaced(self, key: str, old: Record | None, new: Record) -> Record:
        """``new`` replaces ``old`` in the store: keep ``old`` for snapshots before it.
        Returns ``new`` as it is to be stored: one applied before ``old`` here (another
        head's order, after a ring change) goes after it, and no snapshot before now is
        answered any more (one may have read ``old`` where ``new`` now comes first)."""
        if not self.retain_us or old is None or old.version == new.version:
            return new
        if new.applied <= old.applied:
            # (strictly after: old versions are kept by key and applied stamp)
            self.counters["snapshot_applied_out_of_order"] += 1
            new = attrs.evolve(new, applied_at=old.applied + 1)
            self.records_dropped()
        self.store.put_old(key, old)
        size = len(key) + len(old.value or b"") + 64
        self._kept.append((new.applied, key, old.applied, size))
        self.kept_bytes += size
        return new

    def now_stable(self, key: str, version) -> None:
        """``version`` of ``key``, replaced here before its ``Stable`` came back, reached
        the tail: its old copy is acknowledged (with k > 1 it would stay unreadable until
        collected, and a snapshot between it and its successor would wait for that)."""
        if not self.retain_us:
            return
        for old in self.store.old_versions(key):
            if old.version == version and not old.stable:
                self.store.put_old(key, attrs.evolve(old, stable=True))
                return

    def copied(self, record: Record) -> None:
        """A record that came with a copy of its range: what was before it is unknown."""
        self.horizon = max(self.horizon, record.applied)

    def records_dropped(self, keys=()) -> None:
        """The records of ``keys`` left the store without a successor (tombstones
        collected, stale copies dropped): a snapshot before now would need them, and one
        after now must not find their predecessors (a later write of the key would leave
        them as its old versions, read at a stamp when the key was absent)."""
        self.horizon = max(self.horizon, self.clock.last)
        for key in keys:
            for old in self.store.old_versions(key):
                self.store.forget_old(key, old.applied)

    def pin(self, at: int, now: float) -> None:
        """A backup reads at ``at``: keep what that needs for ``PIN_S`` from ``now``."""
        self._pins[at] = now + PIN_S

    def pinned(self, now: float) -> bool:
        for at, until in list(self._pins.items()):
            if until <= now:
                del self._pins[at]
        return bool(self._pins)

    def sweep(self, now_us: int, now: float) -> None:
        """Forget old versions replaced more than ``retain_us`` ago (and not after a pinned
        stamp: a version replaced after it is what the stamp reads)."""
        limit = now_us - self.retain_us
        if self.pinned(now) and self.kept_bytes > PIN_MAX_BYTES:
            self.counters["snapshot_pins_dropped"] += len(self._pins)
            self._pins.clear()
        if self._pins:
            limit = min(limit, min(self._pins))
        kept = self._kept
        while kept and kept[0][0] < limit:
            replaced_at, key, applied, size = kept.popleft()
            self.store.forget_old(key, applied)
            self.kept_bytes -= size
            self.horizon = max(self.horizon, replaced_at)
            self.counters["snapshot_old_collected"] += 1

    def stamp(self, at: int) -> None:
        """A read at ``at``: our clock goes past it (durably before the answer leaves, by
        group commit), so nothing applied from now on counts as before it."""
        if at >= self._bound:
            self._bound = max(at, self.clock.last) + BOUND_STEP_US
            self.store.put_meta(SNAPSHOT_BOUND, str(self._bound).encode())
        self.clock.observe(at)

    def version_at(self, key: str, current: Record | None, at: int) -> Record | None:
        """The version of ``key`` applied here at or before ``at`` (a tombstone if it was
        deleted; None: absent, or before what we keep, which ``at >= horizon`` rules out)."""
        if current is None or current.applied <= at:
            return current
        return next((old for old in self.store.old_versions(key) if old.applied <= at),
                    None)

    def read(self, src: str, msg: m.SnapshotRead, current: Record | None, epoch: int,
             visible, stable, tombstones) -> list:
        """Answer ``msg`` from ``current`` and the old versions kept of its key (the node
        checked the epoch, that it is the head and its lease). ``visible(record)``: may
        be read (not a write that may yet be applied again); ``stable(record)``: clients
        may call it stable; ``collected(version)``: a tombstone at or above it was
        collected here; ``tombstones``: the node's (``covers``, ``floor``)."""
        at = msg.at
        self.stamp(at)
        self.counters["snapshot_reads"] += 1
        if at < self.horizon:
            self.counters["snapshot_too_old"] += 1
            return [Send(src, m.SnapshotReply(msg.op, msg.key, False, None, None, False, 0,
                                              epoch, self.horizon))]
        found = self.version_at(msg.key, current, at)
        if current is None:  # (deleted without a successor: the horizon covers the rest)
            if msg.min_version is not None and tombstones.covers(msg.min_version):
                return [Send(src, m.SnapshotReply(msg.op, msg.key, False, None, None, False,
                                                  0, epoch, 0, tombstones.floor))]
        if found is not None and not visible(found):
            # Maybe not acknowledged yet, maybe already in the session's past (acknowledged
            # further down the chain): neither it nor an older one may be answered. The
            # frontend asks again in a moment, at the same stamp.
            self.counters["snapshot_unacknowledged"] += 1
            return [Send(src, m.ReadMiss(msg.op, msg.key, "unacknowledged"))]
        if msg.min_version is not None and (found is None or found.version < msg.min_version):
            # The session has seen a newer version than this head held then (a write
            # acknowledged by a head that died before passing it on): not here.
            self.counters["snapshot_older"] += 1
            return [Send(src, m.ReadMiss(msg.op, msg.key, "older"))]
        if found is None:
            return [Send(src, m.SnapshotReply(msg.op, msg.key, False, None, None, False, 0,
                                              epoch, 0, tombstones.floor))]
        return [Send(src, m.SnapshotReply(
            msg.op, msg.key, found.value is not None, found.value, found.version,
            stable(found), found.seq, epoch))]

    def stats(self) -> dict:
        return {"snapshot_old_versions": len(self._kept),
                "snapshot_old_bytes": self.kept_bytes}
