"""A node's part in getting local writes into its DC's shipping log (several DCs,
docs/protocol.md §7): the log positions ``Stable``, ``Shipped`` and ``Update`` bring,
and the proxy's ``GeoProgress``. Part of ``NodeCore`` (node.py), split out to keep each
module to one job; what is shipped, kept and resent is ``shipping.Shipping``'s."""

from __future__ import annotations

import attrs

from . import messages as m
from .effects import Send
from .fields import merge_local_deps
from .storage import Record

FLOOR_EVERY_S = 0.25  # at most this often an UnloggedFloor answers a GeoProgress
FLOOR_PROMISED_META = "unlogged_floor"  # the last one told (NodeCore.recover)


class NodeLogPositions:
    """Mixed into ``NodeCore``; uses its ring, store, clock, shipping and unstable keys."""

    def _is_tail(self, key: str) -> bool:
        chain = self.ring.chain(key) if self.ring is not None else ()
        return bool(chain) and chain[-1] == self.name

    def _learn(self, key: str, current: Record, msg: m.Update, now: float) -> Record:
        """An ``Update`` of the version we hold: keep what it knows that we did not (its
        log position; what it carries to be logged after), stored. The record kept."""
        record = current
        if msg.seq and not current.seq:
            record = current.logged(msg.seq, msg.logged_at)
            self.shipping.logged(key, current.version)
        elif not current.seq and msg.deps and (msg.deps != current.deps
                                               or msg.past > current.past):
            record = attrs.evolve(current, deps=merge_local_deps(current.deps, msg.deps),
                                  past=max(current.past, msg.past))
            if record.stable:
                self.shipping.stable(key, record, False, now)  # (what it will ship)
        if record is not current and current.stable:
            self._put(key, record)
        return record

    def _on_stable(self, src: str, msg: m.Stable, now: float) -> list:
        current = self.store.get(msg.key)
        out: list = []
        if current is not None and current.version == msg.version:
            record = current
            if not msg.logged_only and not current.stable:
                record = attrs.evolve(record, stable=True)
            if msg.seq and not current.seq:
                record = record.logged(msg.seq, msg.logged_at)
            if record is not current:
                self._put(msg.key, record)
                if record.stable and not current.stable:
                    # (a local write not logged yet: tracked until it is)
                    out += self.shipping.stable(msg.key, record, self._is_tail(msg.key), now)
        elif current is not None and not msg.logged_only:
            # replaced meanwhile: its kept old copy may now be read (snapshots.py, k > 1)
            self.snapshots.now_stable(msg.key, msg.version)
        if msg.seq:
            self.shipping.logged(msg.key, msg.version)
        self.clock.observe(msg.logged_at)
        if not msg.logged_only:
            self._drop_unstable(msg.key, msg.version)
            out += self._wake_snapshot_reads(msg.key, now)
        if self.ring is None:
            return out
        chain = self.ring.chain(msg.key)
        if self.name in chain:
            pos = chain.index(self.name) + 1
            if pos > 1:
                out.append(Send(chain[pos - 2], msg))
        return out

    def _on_shipped(self, src: str, msg: m.Shipped, now: float) -> list:
        """Our proxy logged a local write we shipped (or a newer version of its key):
        record the position, stop shipping it, and tell our predecessors, who track it
        too. (It was DC-Write-Stable already, or replaced here before it was.)"""
        self.clock.observe(msg.logged_at)
        self.shipping.heard(now)
        tracked = self.shipping.logged(msg.key, msg.version)
        record = self.store.get(msg.key)
        current = record is not None and record.version == msg.version
        if current and not record.seq:
            record = record.logged(msg.seq, msg.logged_at)
            self._put(msg.key, record)
        elif not tracked:
            self.counters["shipped_stale"] += 1  # a duplicate, or known from our chain
            return []
        self.counters["shipped"] += 1
        chain = self.ring.chain(msg.key) if self.ring is not None else ()
        if self.name not in chain or chain[0] == self.name:
            return []
        # Only the tail vouches for stability; anyone else passes on the position only.
        dc_stable = current and record.stable and chain[-1] == self.name
        return [Send(chain[chain.index(self.name) - 1],
                     m.Stable(msg.key, msg.version, msg.seq, msg.logged_at,
                              logged_only=not dc_stable))]

    def _on_geo_progress(self, src: str, msg: m.GeoProgress, now: float) -> list:
        self.shipping.on_progress(msg, now)
        self._tombstones.collectable = dict(msg.collectable)
        self._tombstones.collect_below = msg.collect_below
        if 0 <= now - self._floor_sent_at < FLOOR_EVERY_S:  # (a clock stepped back: send)
            return []
        self._floor_sent_at = now
        floor = self._unlogged_floor(now)
        # Durable before told: after a restart our clock stays above it, even stepped back.
        self.store.put_meta(FLOOR_PROMISED_META, floor.to_bytes(8, "big"))
        return [Send(src, m.UnloggedFloor(floor, self.epoch))]

    def _unlogged_floor(self, now: float) -> int:
        """A stamp at or below every local write we hold unlogged and every one we will
        make (``UnloggedFloor``). The clock moves to now first, so an idle node's floor
        moves with time."""
        self.clock.observe(int(self.dc_time.now(now) * 1_000_000))
        floor = self.clock.last + 1
        own = self.config.dc
        for pending in self._unstable.values():
            if pending.version.dc == own and pending.version.clock < floor:
                floor = pending.version.clock
        return min(floor, self.shipping.oldest_pending(floor))
