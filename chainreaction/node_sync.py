"""A node's side of chain repair and membership changes (docs/protocol.md §4, §5):
receiving a range copy, writes it cannot vouch for (orphans), ranges no longer its own,
its removal. Part of ``NodeCore`` (node.py), split out to keep each module to one job; the
copy itself is paced and tracked by ``RangeCopier`` (state_transfer.py), the ranges
released by ``ReleasedRanges`` (range_release.py)."""

from __future__ import annotations

import attrs

from . import messages as m
from .storage import Record
from .versions import Version


@attrs.define(slots=True)
class Unstable:
    """A write we hold that is not known stable at the tail yet (driven until it is)."""

    version: Version
    sent_at: float
    orphan: bool  # reloaded after a restart: reinject at the head, don't trust position
    origin: str = ""  # frontend that wrote it (the tail's StableNotice goes there)


class NodeSync:
    """Mixed into ``NodeCore``."""

    def heartbeat_report(self) -> dict:
        return {"key_count": self._key_count(10.0), "unstable": len(self._unstable)}

    def _key_count(self, max_age_s: float = 1.0) -> int:
        """The keys we hold, counted (iterating the store) at most every ``max_age_s``."""
        if self._keys_counted_at is None or self._now - self._keys_counted_at >= max_age_s:
            self._keys, self._keys_counted_at = self.store.key_count(), self._now
        return self._keys

    def _in_flight(self, key: str, record: Record) -> bool:
        """A record of a released range that must stay a while (range_release.py): what
        the proxy has not logged yet stays until it has (we may be the only node that
        still ships it: a version replaced here, or one copied to the others already
        replaced there; fuzz seed 7701413)."""
        return self._key_busy(key) or (key, record.version) in self.shipping.pending

    @property
    def done_reason(self) -> str | None:
        if self.released.everything and self.released.done and not self.shipping.pending:
            return "removed from the ring by the operator; it holds nothing now"
        return None

    _previous_ring = None  # the ring before ours (``_same_prefix``)

    def _same_prefix(self, msg: m.Update, chain: tuple, pos: int) -> bool:
        """Whether the chain before us on the ring ``msg`` was sent on (our previous one)
        is the one before us now: then our predecessor vouches for it here too."""
        old = self._previous_ring
        if old is None or old.epoch != msg.epoch:
            return False
        return self._before(old.chain(msg.key)) == chain[:pos - 1]

    def _before(self, chain: tuple) -> tuple | None:
        """The members ahead of us in ``chain`` (None: we are not in it)."""
        return chain[:chain.index(self.name)] if self.name in chain else None

    def _orphan_update(self, msg: m.Update, current: Record | None, now: float) -> list:
        """Keep a newer write as an orphan, which the redrive reinjects at the head (the
        head drives it down the chain, or knows something newer); no ack, not passed on."""
        self.counters["update_from_non_predecessor"] += 1
        if current is not None and msg.version <= current.version:
            return []
        if current is None and self._tombstones.covers(msg.version):
            return []
        record = Record(msg.version, msg.value, False, msg.rid, msg.seq, msg.logged_at,
                        msg.vclock, msg.deps, msg.past, msg.applied_at)
        record, kept = self.shipping.replacing(msg.key, current, record, now)
        self._put(msg.key, record)
        self.clock.observe(max(record.applied, msg.logged_at))
        self._rids.remember(msg.rid, msg.key, msg.version)
        self._unstable[msg.key] = Unstable(msg.version, now, orphan=True, origin=msg.origin)
        return kept

    def _on_sync_chunk(self, src: str, msg: m.SyncChunk, now: float) -> list:
        """Apply a chunk of a copy (``RangeCopier.accept`` says whether it is one in
        progress): each record newer than ours is stored as it is, the request ids are
        remembered; the last chunk ends the quarantine."""
        sync = self.copier.accept(src, msg, now)
        if sync is None:
            return []
        out: list = []
        with self.store.atomic():  # a chunk's records and rids land together
            for rid, key, version in msg.rids:
                self._rids.remember(rid, key, version)
            for item in msg.items:
                current = self.store.get(item.key)
                if current is None or item.version > current.version:
                    record = Record(item.version, item.value, item.stable, item.rid, item.seq,
                                    item.logged_at, item.vclock, item.deps, item.past,
                                    item.applied_at)
                    record, kept = self.shipping.replacing(item.key, current, record, now)
                    out += kept
                    record = self._put(item.key, record)
                    self.snapshots.copied(record)
                    self.clock.observe(max(record.applied, item.logged_at))
                    self._rids.remember(item.rid, item.key, item.version)
                    if not item.stable:
                        # Copied, not received from our predecessor: we cannot vouch for the
                        # chain prefix, so drive it like an orphan (reinject at the head). The
                        # source may leave this chain and stop driving it.
                        self._unstable[item.key] = Unstable(item.version, now, orphan=True)
                    else:  # (shipped once we are its tail and serve the range)
                        self.shipping.stable(item.key, record, False, now)
                elif item.version == current.version and (
                        item.stable and not current.stable or item.seq and not current.seq):
                    record = attrs.evolve(current, stable=current.stable or item.stable)
                    if item.seq and not current.seq:
                        record = record.logged(item.seq, item.logged_at)
                        self.shipping.logged(item.key, item.version)
                    self._put(item.key, record)
                    if record.stable:
                        self._drop_unstable(item.key, item.version)
                        self.shipping.stable(item.key, record, False, now)
        self.counters["sync_items_received"] += len(msg.items)
        self.counters["sync_chunks_received"] += 1
        for item in msg.items:
            out += self.dep_checks.wake(item.key)
        if not self.copier.complete(sync, msg):
            return out
        # (a copy may have skipped versions an Update brought first: nothing before now
        # is known whole here, nor are the records it drops)
        dropped = self.copier.drop_collected(sync)
        self.snapshots.records_dropped(dropped)
        for key in dropped:
            self._unstable.pop(key, None)
        out += self._redrive(now, force=True)  # what waited for the copy (orphans among it)
        out += self._release_held_puts(now)
        return out
