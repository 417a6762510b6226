"""A node's answers to reads and dependency checks (docs/protocol.md §3.3): part of
``NodeCore`` (node.py), split out to keep each module to one job; it uses the node's
ring, store, copier, tombstones, shipping and lease checks."""

from __future__ import annotations

from . import messages as m
from .effects import Send

# A backup's page (SnapshotScan) looks at most at this many keys, returns at most this many
# and about this many bytes of them (well under the frame limit).
SCAN_LOOK_AT = 4096
SCAN_ITEMS = 1024
SCAN_BYTES = 1024 * 1024
SCAN_AHEAD_S = 60.0  # a backup's stamp may be at most this far ahead of our clock
# A snapshot read of a version not known acknowledged waits at most this long for its
# Stable (then ``ReadMiss "unacknowledged"``: the frontend asks again); at most this many.
PARK_S = 0.25
MAX_PARKED = 10_000


class NodeReads:
    """Mixed into ``NodeCore``."""

    def _on_read(self, src: str, msg: m.Read, now: float) -> list:
        refused = self._check_epoch(src, msg.op, msg.epoch)
        if refused:
            return refused
        arc = self.ring.arc_of(msg.key)
        chain = self.ring.chain_of_arc(arc)
        if self.name not in chain:
            return self._error(src, msg.op, m.NOT_IN_CHAIN, f"{self.name} is not in the chain")
        pos = chain.index(self.name) + 1
        if self.copier.copying(arc):
            self.counters["read_miss_syncing"] += 1
            return [Send(src, m.ReadMiss(msg.op, msg.key, "syncing"))]
        record = self.store.get(msg.key)
        if record is None and msg.min_version is not None and self._tombstones.covers(
                msg.min_version):
            # What the session knows of this key was deleted and collected here.
            self.counters["read_collected"] += 1
            return [Send(src, m.ReadReply(msg.op, msg.key, False, None, None, pos, False, 0,
                                          self._tombstones.floor))]
        if msg.min_version is not None and (record is None or record.version < msg.min_version):
            self.counters["read_miss_older"] += 1
            return [Send(src, m.ReadMiss(msg.op, msg.key, "older"))]
        if record is None:
            return [Send(src, m.ReadReply(msg.op, msg.key, False, None, None, pos, False, 0,
                                          self._tombstones.floor))]
        if msg.clean_only and not record.stable:
            self.counters["read_miss_dirty"] += 1
            return [Send(src, m.ReadMiss(msg.op, msg.key, "dirty"))]
        if (not record.stable and pos < self.config.eager
                and (msg.min_version is None or msg.min_version < record.version)):
            # Maybe not acknowledged yet (it reaches k nodes at position k): were we to fail
            # before passing it on, the client's retry would apply the write again with
            # another version, and a session that read this one saw it change (fuzz seed
            # 910438). Below us in the chain it is, or an older one.
            self.counters["read_miss_unacknowledged"] += 1
            return [Send(src, m.ReadMiss(msg.op, msg.key, "unacknowledged"))]
        return [Send(src, m.ReadReply(msg.op, msg.key, record.value is not None, record.value,
                                      record.version, pos, self.shipping.client_stable(record),
                                      record.seq, None, record.applied_at))]

    def _on_snapshot_read(self, src: str, msg: m.SnapshotRead, now: float,
                          until: float | None = None) -> list:
        """A GET-TRANSACTION's read of one key, at the head (snapshots.py). A version not
        known acknowledged (k > 1) is waited for here, up to ``PARK_S`` (``until``), until
        its ``Stable`` comes back: one chain round trip rather than a frontend retry."""
        out = self._snapshot_read(src, msg, now)
        if (len(out) == 1 and isinstance(out[0].msg, m.ReadMiss)
                and out[0].msg.reason == "unacknowledged"):
            until = now + PARK_S if until is None else until
            if now < until and self._parked_count < MAX_PARKED:
                self._parked_reads.setdefault(msg.key, []).append((src, msg, until))
                self._parked_count += 1
                self.counters["snapshot_parked"] += 1
                return []
        return out

    def _wake_snapshot_reads(self, key: str, now: float) -> list:
        """A ``Stable`` for ``key`` came back: its parked snapshot reads try again."""
        parked = self._parked_reads.pop(key, None)
        if not parked:
            return []
        self._parked_count -= len(parked)
        out: list = []
        for src, msg, until in parked:
            out += self._on_snapshot_read(src, msg, now, until)
        return out

    def _expire_snapshot_reads(self, now: float) -> list:
        out: list = []
        for key, parked in list(self._parked_reads.items()):
            due = [p for p in parked if p[2] <= now]
            if not due:
                continue
            self._parked_count -= len(due)
            kept = [p for p in parked if p[2] > now]
            if kept:
                self._parked_reads[key] = kept
            else:
                del self._parked_reads[key]
            out += [Send(src, m.ReadMiss(msg.op, key, "unacknowledged")) for src, msg, _ in due]
        return out

    def _snapshot_read(self, src: str, msg: m.SnapshotRead, now: float) -> list:
        refused, arc, chain = self._as_head(src, msg.op, msg.key, msg.epoch, now)
        if refused:
            return refused
        if not self.snapshots.enabled:
            return self._error(src, msg.op, m.UNAVAILABLE,
                               "this node keeps no old versions (snapshot retention 0)")
        if self.copier.copying(arc):
            self.counters["read_miss_syncing"] += 1
            return [Send(src, m.ReadMiss(msg.op, msg.key, "syncing"))]
        return self.snapshots.read(
            src, msg, self.store.get(msg.key), self.epoch,
            lambda record: self._acknowledged(record, chain, msg.min_version),
            self.shipping.client_stable, self._tombstones)

    def _acknowledged(self, record, chain: tuple, seen=None) -> bool:
        """Whether a head may answer ``record`` at a stamp: as ``_on_read``, a version not
        stable with k > 1 may not be acknowledged yet (applied again later with another
        version), unless the session itself already saw it (``seen`` at or above it)."""
        return (record.stable or min(self.config.eager, len(chain)) <= 1
                or (seen is not None and seen >= record.version))

    def _on_dep_check(self, src: str, msg: m.DepCheck, now: float) -> list:
        refused = self._check_epoch(src, msg.op, msg.epoch)
        if refused:
            return refused
        chain = self.ring.chain(msg.key)
        if chain[-1] != self.name:
            return self._error(src, msg.op, m.NOT_TAIL, f"tail of {msg.key!r} is {chain[-1]}")
        refused = self._check_lease(src, msg.op, chain, now)
        if refused:
            return refused
        return self.dep_checks.check(src, msg, now)

    def _on_snapshot_scan(self, src: str, msg: m.SnapshotScan, now: float) -> list:
        """A backup's page: the keys after ``msg.after`` we are head of, at ``msg.at``
        (snapshots.py). Bounded in keys looked at, found and bytes, so a page never holds
        the node for long."""
        refused = self._check_epoch(src, msg.op, msg.epoch)
        if refused:
            return refused
        snapshots = self.snapshots
        if not snapshots.enabled:
            return self._error(src, msg.op, m.UNAVAILABLE,
                               "this node keeps no old versions (snapshot retention 0)")
        if msg.at < snapshots.horizon:
            self.counters["snapshot_too_old"] += 1
            return [Send(src, m.SnapshotScanReply(msg.op, (), msg.after, False, False,
                                                  snapshots.horizon))]
        ahead = msg.at - max(self.clock.last, int(self.dc_time.now(now) * 1e6))
        if ahead > SCAN_AHEAD_S * 1e6:  # (it would push our clock, and every version, on)
            return self._error(src, msg.op, m.BAD_REQUEST,
                               f"stamp {ahead / 1e6:.0f} s ahead of this node's clock")
        snapshots.stamp(msg.at)
        snapshots.pin(msg.at, now)
        self.counters["snapshot_scans"] += 1
        items: list = []
        size = looked = 0
        last = msg.after
        for key, current in self.store.items_after(msg.after):
            if looked >= SCAN_LOOK_AT or len(items) >= min(msg.limit, SCAN_ITEMS) or (
                    size >= SCAN_BYTES):
                return [Send(src, m.SnapshotScanReply(msg.op, tuple(items), last, False, False))]
            looked += 1
            arc = self.ring.arc_of(key)
            chain = self.ring.chain_of_arc(arc)
            if chain[0] == self.name:
                found = snapshots.version_at(key, current, msg.at)
                if (self.copier.copying(arc) or not self.leases.holds(chain, now) or (
                        found is not None and not self._acknowledged(found, chain))):
                    # (as a transaction's read: not now, maybe in a moment)
                    self.counters["snapshot_scan_waits"] += 1
                    return [Send(src, m.SnapshotScanReply(msg.op, tuple(items), last, False,
                                                          True))]
                if found is not None and found.value is not None:
                    items.append((key, found.value, found.version))
                    size += len(key) + len(found.value) + 16
            last = key
        return [Send(src, m.SnapshotScanReply(msg.op, tuple(items), last, True, False))]
