"""Backend chain node: sans-IO core.

Theory of operation (DESIGN.md "Single datacenter", ChainReaction paper section 7.2)
---------------------------------------------------------------------------------
A node's role for a key follows from its position in the key's chain on the current ring.

* **Head** (``Put``): assigns the version from a hybrid clock (above the key's version and
  the session's floor), stores it, forwards an ``Update`` down the chain. The node at
  position ``eager`` (k) sends the ``PutAck``; the rest of the chain is reached lazily.
* **Every node** (``Update``): stores the version if it is newer, forwards it to its
  successor. The **tail** marks it stable (DC-Write-Stable), sends ``Stable`` up to its
  predecessor (each predecessor passes it on) and a ``StableNotice`` to the frontend.
* **Reads** (node_reads.py) are answered by any chain node whose copy is at least the reader's
  ``min_version`` and whose range is not being synced; otherwise ``ReadMiss`` and the
  frontend walks up the chain.
* **Dependency checks** are answered by the tail, which waits (bounded) until it holds
  that version or a newer one, stable: ``dependency_checks.DependencyChecks``, after the
  node's epoch, tail and lease checks.

Failures and membership changes. Every node keeps ``_unstable``: the keys whose newest
version it has not yet seen reach the tail. On every ring change, and periodically, it
*redrives* them: forward to the current successor, or, if it is now the tail, mark them
stable. That repairs chains when a node dies (the predecessor now talks to the successor)
and retries updates lost with a broken connection. Versions are applied by "newest wins",
so re-sending is always harmless.

A node that becomes a chain member of a range it does not hold (a node appended at the
tail after a failure, a node back after it was marked down, an empty disk) is in
*quarantine* for that range while it copies it from a node that holds it (custody.py, the
manager's record of who holds each range): ``state_transfer.RangeCopier``. In quarantine
it neither settles writes of the range as tail nor redrives them: only a holder knows
whether an old write was superseded by a delete collected meanwhile.

A restarted node reloads its unstable records as *orphans* and reinjects them at the head
of their chain (``NodeCore.recover``): an acknowledged write that only reached this node
before it crashed is not lost.

Clocks (docs/protocol.md §3.1). Versions come from a hybrid clock whose physical part is
held back to at most ``max_clock_ahead_s`` ahead of the DC's median clock, as the manager
measures it (``HeartbeatAck.ahead_us``). A floor is never refused here (the frontend
decides which floors the store made). Head and tail act only under chain leases
(``chain_lease.py``): the manager is off the data path.

Several DCs (``config.geo``). A write of another DC arrives from our proxy as a ``Put``
carrying its version: the head keeps it if it is newer (last writer wins; a concurrent one
is counted as a conflict) and it travels the chain as usual. A local write is
DC-Write-Stable at the tail, as with one DC; it carries what of this DC it depends on
(``deps``, ``past``) until the DC's proxy has logged it, and the tail ships it to the
proxy without waiting; "stable" for clients means Global-Write-Stable:
``shipping.Shipping``.

The settings of a node and of these parts: ``node_config.NodeConfig`` (importable from here).
"""

from __future__ import annotations

from typing import Callable

import attrs

from . import messages as m
from .core import Core, Identity
from .dependency_checks import DependencyChecks
from .effects import Send
from .node_config import NodeConfig
from .node_log import FLOOR_PROMISED_META, NodeLogPositions
from .node_reads import NodeReads
from .node_sync import NodeSync, Unstable as _Unstable
from .chain_lease import ChainLeases
from .request_ids import RequestIds
from .range_release import ReleasedRanges
from .ring import hash_point
from .ring_requests import RingRequests
from .shipping import Shipping
from .snapshots import Snapshots
from .state_transfer import RangeCopier
from .storage import Record, Store, store_identity
from .tombstones import Tombstones
from .versions import DcTime, HybridClock, VClock, Version
from .waiters import Waiters


class NodeCore(NodeReads, NodeSync, NodeLogPositions, Core):
    """One backend node (the contract: core.py). ``store`` is injected (RocksStore in
    production, MemoryStore in tests); with an ``identity`` it heartbeats its manager."""

    role = "node"

    def __init__(self, name: str, store: Store, config: NodeConfig, now: float,
                 identity: Identity | None = None,
                 monotonic: Callable[[], float] | None = None) -> None:
        super().__init__(name, now, manager=config.manager, identity=identity,
                         heartbeat_s=config.heartbeat_s, monotonic=monotonic)
        self.store = store
        self.config = config
        self.clock = HybridClock()
        self.dc_time = DcTime(config.max_clock_ahead_s, monotonic)
        self._unstable: dict[str, _Unstable] = {}
        self._floor_sent_at = float("-inf")  # our last UnloggedFloor (node_log.py)
        self.shipping = Shipping(config, self.counters, store, now)
        self._rids = RequestIds(store, config.dedup_size)  # a retried put applies once
        self._held_puts = Waiters(config.max_held_puts)  # (src, Put) held during a copy
        self._ring_requests = RingRequests(config.manager)
        self.leases = ChainLeases(name, config.lease_s, config.lease_renew_s, monotonic,
                                  config.require_lease, self.counters, now, store)
        self._tombstones = Tombstones(store, config.tombstone_grace_s)
        self.copier = RangeCopier(name, store, self._tombstones, config, self.counters, now,
                                  self.leases.older_leases_run)
        self.released = ReleasedRanges(name, store, self.counters)  # range_release.py
        self._now, self._keys, self._keys_counted_at = now, 0, None  # (stats: "keys")
        self.dep_checks = DependencyChecks(name, store, self._tombstones, self.clock, config,
                                           self.counters)
        self.recover(now)
        self._parked_reads: dict = {}  # key -> [(src, SnapshotRead, until)] (node_reads.py)
        self._parked_count = 0
        self.snapshots = Snapshots(store, self.clock, config.snapshot_retention_s,
                                   self.counters)
        self._handlers: dict[type, Callable] = {
            m.RingUpdate: self._on_ring_update,
            m.HeartbeatAck: self._on_heartbeat_ack,
            m.LeaseRequest: self.leases.on_request,
            m.LeaseGrant: self.leases.on_grant,
            m.Put: self._on_put,
            m.Update: self._on_update,
            m.Stable: self._on_stable,
            m.Read: self._on_read,
            m.SnapshotRead: self._on_snapshot_read,
            m.SnapshotScan: self._on_snapshot_scan,
            m.DepCheck: self._on_dep_check,
            m.SyncRequest: self._on_sync_request,
            m.SyncChunk: self._on_sync_chunk,
            m.PutAck: self._on_put_ack,
            # for an orphan we reinjected: nothing to do
            m.StableNotice: lambda src, msg, now: [],
            m.Shipped: self._on_shipped,
            m.GeoProgress: self._on_geo_progress,
            m.Error: self._on_error,
        }
        self.timers.add("housekeeping", self._housekeeping, now, delay=config.tick_s)

    # Messages whose writes belong together: a record, the rid it was applied under, the
    # replaced write kept until logged, a record marked logged and the kept copy dropped.
    # They land at once or, after a crash, not at all (Store.atomic): a restarted node
    # never holds a write without its rid (a retry would apply it twice) or without the
    # kept write it replaced.
    _ATOMIC = frozenset({m.Put, m.Update, m.Stable, m.Shipped})

    def handle(self, src: str, msg, now: float) -> list:
        if type(msg) in self._ATOMIC:
            with self.store.atomic():
                return super().handle(src, msg, now)
        return super().handle(src, msg, now)

    def recover(self, now: float) -> None:
        """Take back what the store holds after a restart (nothing, on a first start): the
        request ids applied (a retry after our restart applies once), a clock above every
        version and collected tombstone, the tombstones to collect, and the unstable
        records as *orphans*, which the redrive reinjects at the head of their chain.
        Once the ring comes we serve the ranges we hold and copy the others from their
        holders (custody.py)."""
        self._rids.load()
        self._load_store_id(now)
        if self._tombstones.floor is not None:
            self.clock.observe(self._tombstones.floor.clock)
        promised = self.store.get_meta(FLOOR_PROMISED_META)
        if promised:
            self.clock.observe(int.from_bytes(promised, "big"))
        for key, rec in self.store.items():
            self.clock.observe(rec.applied)  # (at least its version's clock)
            # (An orphan is kept however long we were down: maybe an acknowledged write only
            # we hold. If a newer tombstone was collected meanwhile, we no longer hold its
            # range (custody.py): the copy drops it (``drop_collected``), and every node
            # that collected the tombstone drops it as a late write.)
            self._tombstones.note(key, rec)
            if not rec.stable:
                self._unstable[key] = _Unstable(rec.version, float("-inf"), orphan=True)
        self.shipping.load(now)  # local writes not known logged yet: shipped again

    def _load_store_id(self, now: float) -> None:
        """The manager tells an empty disk (a replacement, holding nothing) from the one it
        knew by this id (custody.py)."""
        self.store_id, created = store_identity(self.store, hash_point(self.name) ^ int(now * 1e6))
        self.copier.store_id = self.store_id
        self.counters["store_created"] += created
        if not created:
            self.leases.restarted(now)

    def syncing_arcs(self) -> tuple:  # (heartbeats report them)
        return self.copier.syncing_arcs()

    def unreachable(self, now: float) -> tuple:
        return self.leases.unreachable(self.config.link_silence_s, now)

    # -- timers -----------------------------------------------------------------------------

    def _housekeeping(self, now: float) -> list:
        self.timers.after("housekeeping", self.config.tick_s, now)
        return self.tick(now)

    def tick(self, now: float) -> list:
        """Expire waiters and held puts, pace copies, resend silent sync requests, redrive
        unstable writes, collect tombstones."""
        self.observe_time(now)
        self._now = now
        out: list = []
        out += self.dep_checks.expire(now)
        out += self._expire_held_puts(now)
        out += self.copier.pump()
        out += self.copier.retry(now, self.epoch)
        out += self.copier.serve_held(self.ring, self._rids)  # (held while we could not)
        out += self.leases.renew(now)
        out += self._expire_snapshot_reads(now)
        if self.ring is not None and self.ring.serving:
            out += self._redrive(now, force=False)
        released = self.released.sweep(now, self._in_flight)
        if released:
            self.snapshots.records_dropped(released)
        collected = [] if self.snapshots.pinned(now) else self._tombstones.sweep(
            self.dc_time.now(now), self._key_busy)  # (a backup reads: see snapshots.py)
        if collected:
            self.counters["tombstones_collected"] += len(collected)
            self.snapshots.records_dropped(collected)
        self.snapshots.sweep(max(self.clock.last, int(self.dc_time.now(now) * 1e6)), now)
        return out

    def _key_busy(self, key: str) -> bool:
        """Something still depends on the record of ``key`` being there."""
        return (key in self._unstable or key in self.dep_checks
                or (self.ring is not None and self.copier.copying(self.ring.arc_of(key))))

    def _put(self, key: str, record: Record) -> Record:
        """Store ``record``; returns it as stored."""
        if self.snapshots.enabled:  # (no store read on this path otherwise)
            record = self.snapshots.replaced(key, self.store.get(key), record)
        self.store.put(key, record)
        self._tombstones.note(key, record)
        self.copier.note_stored(key)
        return record

    def syncing(self) -> bool:
        return self.copier.syncing()

    def stats(self) -> dict:
        return {
            "name": self.name,
            "epoch": self.epoch,
            "serving": self.ring is not None and self.name in self.ring and not self.syncing(),
            "unstable": len(self._unstable),
            "unlogged": len(self.shipping.pending),
            "syncing_ranges": self.copier.arcs_in_quarantine(),
            "held_puts": len(self._held_puts),
            "dep_waiters": len(self.dep_checks),
            "tombstones": len(self._tombstones.keys),
            "keys": self._key_count(),
            "removed": self.released.everything,
            "clock_ahead_ms": round(self.dc_time.ahead_s * 1000),
            "clock_us": self.clock.last,
            **self.snapshots.stats(),
            **self.counters,
        }

    @property
    def store_clock_us(self) -> int:
        """The largest hybrid clock we made or saw (heartbeats carry it to the manager)."""
        return self.clock.last

    def _error(self, src: str, op: int, code: str, detail: str) -> list:
        self.counters["error_" + code] += 1
        return [Send(src, m.Error(op, code, detail, self.epoch))]

    # -- chain leases (chain_lease.py) ---------------------------------------------------------

    def _on_heartbeat_ack(self, src: str, msg: m.HeartbeatAck, now: float) -> list:
        self.dc_time.note(msg.ahead_us, msg.sent_at_us,
                          self.heartbeats_sent.get(msg.sent_at_us))
        return []

    def _check_lease(self, src: str, op: int, chain: tuple, now: float) -> list | None:
        """Refuse to act as head or tail of ``chain`` unless its other members vouch for our
        ring: after a pause or a cut our ring may be stale and another node may have taken
        over (a delayed Put applied here would come back with a new version)."""
        if self.leases.holds(chain, now):
            return None
        self.counters["refused_without_lease"] += 1
        return self._error(src, op, m.NOT_READY, "no current lease from the chain's members")

    def _check_epoch(self, src: str, op: int, epoch: int) -> list | None:
        self.leases.note_epoch(epoch)
        if self.ring is None or not self.ring.serving:
            return self._error(src, op, m.NOT_READY, "node has no ring yet")
        if epoch != self.ring.epoch:
            return self._error(
                src, op, m.WRONG_EPOCH, f"request epoch {epoch}, node epoch {self.ring.epoch}"
            )
        return None

    def _became_stable(self, key: str, record: Record, chain: tuple, pos: int,
                       origin: str) -> list:
        """Tail bookkeeping once ``record`` is stable: tell the chain, frontend, waiters."""
        out: list = []
        if pos > 1:
            out.append(Send(chain[pos - 2], m.Stable(key, record.version, record.seq,
                                                     record.logged_at)))
        if origin:
            out.append(Send(origin, m.StableNotice(key, record.version, record.rid,
                                                   record.logged_at, self.clock.last)))
        out += self.dep_checks.wake(key)
        return out

    def _settle_at_tail(self, key: str, record: Record, chain: tuple, pos: int, origin: str,
                        now: float) -> list:
        """The tail stored ``record`` stable (``Shipping.at_tail``): announce it, and ship
        it if it is a local write not logged yet (several DCs), without waiting."""
        assert record.stable
        self._drop_unstable(key, record.version)
        out = self._became_stable(key, record, chain, pos, origin)
        return out + self.shipping.stable(key, record, True, now)

    def _update_of(self, key: str, record: Record, origin: str, op: int, ack_at: int) -> m.Update:
        return m.Update(key, record.version, record.value, record.rid, origin, op, ack_at,
                        self.epoch, record.vclock, record.seq, record.logged_at,
                        record.deps, record.past, record.applied_at)

    # -- writes -----------------------------------------------------------------------------

    def _as_head(self, src: str, op: int, key: str, epoch: int, now: float) -> tuple:
        """(refusal, arc, chain): the refusal is None if we are the head of ``key`` on
        ``epoch``, our ring's, and hold the chain's lease."""
        refused = self._check_epoch(src, op, epoch)
        if refused:
            return refused, None, None
        arc = self.ring.arc_of(key)
        chain = self.ring.chain_of_arc(arc)
        if chain[0] != self.name:
            return self._error(src, op, m.NOT_HEAD, f"head of {key!r} is {chain[0]}"), arc, chain
        return self._check_lease(src, op, chain, now), arc, chain

    def _on_put(self, src: str, msg: m.Put, now: float) -> list:
        refused, arc, chain = self._as_head(src, msg.op, msg.key, msg.epoch, now)
        if refused:
            return refused
        # (No check of msg.floor here: the frontend refuses floors the store did not make,
        # docs/protocol.md §3.1 "Clocks"; a floor made by the store must be honoured.)
        if self.copier.copying(arc):
            if self.copier.no_holder_up(arc, self.ring):
                return self._error(src, msg.op, m.UNAVAILABLE,
                                   "every replica holding this range is down")
            if not self._held_puts.add((src, msg), now + self.config.held_put_timeout_s):
                return self._error(src, msg.op, m.OVERLOADED, "too many writes held during sync")
            self.counters["put_held_for_sync"] += 1
            return []
        return self._write_at_head(src, msg, chain, now)

    def _write_at_head(self, src: str, msg: m.Put, chain: tuple, now: float) -> list:
        if msg.version is not None:
            return self._apply_remote_at_head(src, msg, chain, now)
        seen = self._rids.get(msg.rid)
        known = seen[1] if seen is not None and seen[0] == msg.key else None
        current = self.store.get(msg.key)
        if known is not None:
            # A retry of a put we already applied: answer with the same version, apply once.
            self.counters["put_duplicate"] += 1
            floor = self._tombstones.floor
            if (current.version < known if current is not None
                    else floor is None or floor < known):
                # Neither it nor anything newer is here (e.g. its rid came with a copy and
                # its only copy is on a disk that was lost). Acknowledging it would promise
                # a write nobody holds (sim fuzz seed 91368); applying it again might apply
                # it twice, were a copy still somewhere.
                self.counters["put_duplicate_lost"] += 1
                return self._error(src, msg.op, m.UNAVAILABLE,
                                   "this write was applied once and has since been lost")
            eager = min(self.config.eager, len(chain))
            if current is None or current.version != known or current.stable or eager == 1:
                # Superseded (the newer version travels the chain) or already stable, as
                # clients mean it (with several DCs: everywhere; a session drops its whole
                # past on a stable write, so DC stability must not be reported as that).
                stable = (current is not None and current.version == known
                          and self.shipping.client_stable(current))
                return [Send(src, m.PutAck(msg.op, msg.key, known, 1, stable))]
            # Not yet acknowledged by k nodes for sure: drive it again, ack at position k.
            return [Send(chain[1], self._update_of(msg.key, current, src, msg.op, eager))]
        # Above the version we hold, or, for a key we hold nothing of, above every tombstone
        # we collected (the key may have been one of them).
        gc_floor = self._tombstones.floor.clock if self._tombstones.floor else 0
        floor = max(msg.floor, current.version.clock if current else gc_floor)
        if self.dc_time.held_back_s:
            self.counters["stamps_held_back"] += 1  # our clock runs ahead of the DC's
        version = Version(self.clock.next(self.dc_time.now(now), floor), self.config.dc)
        vclock = (current.vclock if current else VClock()).advance(self.config.dc, version.clock)
        record = Record(version, msg.value, False, msg.rid, vclock=vclock)
        if self.config.geo and (msg.deps or msg.past):
            # What of this DC the write depends on: the proxy logs it after those.
            record = attrs.evolve(record, deps=msg.deps, past=msg.past)
        record, out = self.shipping.replacing(msg.key, current, record, now)
        self.counters["put_applied"] += 1
        return out + self._store_at_head(src, msg, record, chain, now)

    def _store_at_head(self, src: str, msg: m.Put, record: Record, chain: tuple,
                       now: float) -> list:
        alone = len(chain) == 1
        if alone:
            record = self.shipping.at_tail(record)
        self._put(msg.key, record)
        self._rids.remember(msg.rid, msg.key, record.version)
        eager = min(self.config.eager, len(chain))
        out: list = []
        if eager == 1:
            stable = record.stable and not self.config.geo
            out.append(Send(src, m.PutAck(msg.op, msg.key, record.version, 1, stable)))
        if alone:
            out += self._settle_at_tail(msg.key, record, chain, 1, src, now)
        else:
            self._unstable[msg.key] = _Unstable(record.version, now, orphan=False)
            ack_at = 0 if eager == 1 else eager
            out.append(Send(chain[1], self._update_of(msg.key, record, src, msg.op, ack_at)))
        return out

    def _apply_remote_at_head(self, src: str, msg: m.Put, chain: tuple, now: float) -> list:
        """A write of another DC, sent by our proxy once its causal past is applied here.
        It keeps its version; the newer version wins (last writer wins)."""
        current = self.store.get(msg.key)
        self.clock.observe(msg.version.clock)
        if current is not None and current.vclock.concurrent(msg.vclock):
            self.counters["lww_conflicts"] += 1
        if current is not None and msg.version <= current.version:
            # Older than what we hold (or a resend): nothing to apply, and chain_index 0
            # says so; the proxy then asks the tail for stability of this version or newer.
            self.counters["remote_superseded"] += 1
            return [Send(src, m.PutAck(msg.op, msg.key, current.version, 0, False))]
        if current is None and self._tombstones.covers(msg.version):
            # Older than tombstones collected here (the tail answers for it the same way).
            self.counters["late_write_dropped"] += 1
            return [Send(src, m.PutAck(msg.op, msg.key, msg.version, 0, False))]
        vclock = msg.vclock.merge(current.vclock) if current is not None else msg.vclock
        # applied now, after any snapshot this head read at (snapshots.py)
        applied = self.clock.next(self.dc_time.now(now), msg.floor)
        record = Record(msg.version, msg.value, False, msg.rid, msg.seq, 0, vclock,
                        applied_at=applied)
        self.counters["remote_applied"] += 1
        record, overtaken = self.shipping.replacing(msg.key, current, record, now)
        return overtaken + self._store_at_head(src, msg, record, chain, now)

    def _on_update(self, src: str, msg: m.Update, now: float) -> list:
        if self.ring is None:
            self.counters["update_before_ring"] += 1
            return []  # the sender redrives it once we are in its chain
        if msg.epoch > self.ring.epoch:
            # Our chain may be stale (a tail may have been appended after us): don't act
            # on it. Fetch the ring; the sender redrives the update.
            self.leases.note_epoch(msg.epoch)
            self.counters["update_from_newer_ring"] += 1
            return self._ring_requests.ask(self.epoch, now)
        arc = self.ring.arc_of(msg.key)
        chain = self.ring.chain_of_arc(arc)
        if self.name not in chain:
            self.counters["update_not_in_chain"] += 1
            return []
        pos = chain.index(self.name) + 1
        copying = self.copier.copying(arc)
        # A tail still copying the range does not make writes stable: the chain may be of
        # nodes none of which holds the range (its holders down), and "stable" would keep
        # the write from ever reaching them. It settles them once its copy is done.
        tail = pos == len(chain) and not copying
        if msg.origin == src and not msg.op and copying:
            # An orphan reinjected by a node back from a crash, however old: only a holder
            # of the range knows whether a newer delete was collected meanwhile (custody.py);
            # we are still copying it. Its owner sends it again.
            self.counters["orphan_held_for_sync"] += 1
            return []
        current = self.store.get(msg.key)
        out: list = []
        if pos > 1 and (src != chain[pos - 2] or (
                msg.epoch != self.ring.epoch and not self._same_prefix(msg, chain, pos))):
            # Not from our predecessor (a node still on an older ring, paused while it
            # forwarded: fuzz seed 7671090), or from it but sent on a ring where the chain
            # before us was another (it was the head there, the new head never had the
            # write: seed 7700851). Ours may lack it: we cannot vouch for it.
            return self._orphan_update(msg, current, now)
        wants_ack = msg.ack_at and (pos == msg.ack_at or (pos == len(chain) and msg.ack_at > pos))
        late = current is None and self._tombstones.covers(msg.version)
        if late or current is not None and msg.version < current.version:
            # Superseded by a newer version that travels the same chain: positions 1..pos
            # hold something newer, so the write is done; remember its rid so a retry after
            # a head failure is not applied a second time. (``late``: older than tombstones
            # collected here, e.g. redriven by a head that was cut off for the grace period:
            # it would bring a deleted key back.)
            self.counters["late_write_dropped" if late else "update_superseded"] += 1
            # (acknowledged as the version its rid is known by: one version per rid)
            known = self._rids.remember(msg.rid, msg.key, msg.version)
            if msg.ack_at:
                out.append(Send(msg.origin, m.PutAck(msg.op, msg.key, known, pos, False)))
            return out
        if current is None or msg.version > current.version:
            applied_at = msg.applied_at
            if pos == 1:
                # At the head an Update is an orphan reinjected (or a redrive of an older
                # ring's head): applied here now, in our order, as a Put would be; its old
                # stamp is another head's (snapshots.py; fuzz seed 7570480).
                applied_at = self.clock.next(self.dc_time.now(now),
                                             msg.applied_at or msg.version.clock)
            record = Record(msg.version, msg.value, False, msg.rid, msg.seq, msg.logged_at,
                            msg.vclock, msg.deps, msg.past, applied_at)
            if tail:
                record = self.shipping.at_tail(record)
            record, kept = self.shipping.replacing(msg.key, current, record, now)
            out += kept
            record = self._put(msg.key, record)
            self.clock.observe(max(record.applied, msg.logged_at))
            self._rids.remember(msg.rid, msg.key, msg.version)
            if pos == 1 and record.applied > (msg.applied_at or msg.version.clock):
                # Restamped later than its writer was told: a snapshot between the two
                # stamps would miss an acknowledged write (seed 7730935: a session's own
                # delete, re-applied by the new head after a drain). Below now, none is
                # answered any more (it moves to a later stamp).
                self.snapshots.records_dropped()
        elif current.stable:
            # Already known stable here: a redrive; tell the sender instead of forwarding,
            # and our successor too: a node that joined the chain since may hold this
            # version unstable (copied while it was in flight), and as the new tail it
            # would never settle it (dependency checks on the key would wait forever).
            self._drop_unstable(msg.key, msg.version)
            current = self._learn(msg.key, current, msg, now)
            if msg.ack_at:
                out.append(Send(msg.origin, m.PutAck(msg.op, msg.key, msg.version, pos,
                                                     not self.config.geo)))
            stable = m.Stable(msg.key, msg.version, current.seq, current.logged_at)
            out.append(Send(src, stable))
            if pos < len(chain):
                out.append(Send(chain[pos], stable))
            return out
        else:
            record = self._learn(msg.key, current, msg, now)
            if tail:
                record = self.shipping.at_tail(record)
            if record is not current:
                self._put(msg.key, record)
        if wants_ack:
            stable = record.stable and not self.config.geo
            out.append(Send(msg.origin, m.PutAck(msg.op, msg.key, msg.version, pos, stable)))
        if tail:
            out += self._settle_at_tail(msg.key, record, chain, pos, msg.origin, now)
        elif pos == len(chain):
            self._unstable[msg.key] = _Unstable(msg.version, now, orphan=False, origin=msg.origin)
        else:
            self._unstable[msg.key] = _Unstable(msg.version, now, orphan=False)
            if (msg.epoch != self.ring.epoch or record.seq != msg.seq
                    or record.deps != msg.deps or record.past != msg.past
                    or record.applied_at != msg.applied_at):
                # (on with what we know: the log position, what a write it replaced here
                # carried)
                msg = self._update_of(msg.key, record, msg.origin, msg.op, msg.ack_at)
            out.append(Send(chain[pos], msg))
        return out

    def _drop_unstable(self, key: str, version: Version) -> None:
        pending = self._unstable.get(key)
        if pending is not None and pending.version <= version:
            del self._unstable[key]

    def _on_error(self, src: str, msg: m.Error, now: float) -> list:
        """From a source refusing our SyncRequest, or from the manager: we were removed."""
        if msg.code == m.REMOVED and src.partition("@")[0] == self.config.manager:
            if msg.op and msg.op != self.store_id:  # (the store this name had before ours)
                self.counters["stale_removal_ignored"] += 1
                return []
            self.released.release_everything()
            return []
        return self.copier.on_refused(src, msg, now, self.epoch)

    def _on_put_ack(self, src: str, msg: m.PutAck, now: float) -> list:
        """Ack of an orphan we reinjected at the head: the head has it (or something newer)
        and drives it down. A chain member keeps it an orphan (the chain before us may still
        lack it, fuzz seed 1010157) until it is stable or superseded; the redrive resends it
        meanwhile, no sooner than usual. Out of the chain we are done with it."""
        pending = self._unstable.get(msg.key)
        if pending is not None and pending.orphan and pending.version <= msg.version:
            pending.sent_at = now
            self.counters["orphan_reinjected"] += 1
            if self.ring is not None and self.name not in self.ring.chain(msg.key):
                del self._unstable[msg.key]  # the chain is others': its head drives it
        return []

    def _redrive(self, now: float, force: bool) -> list:
        ring = self.ring
        out = self.shipping.redrive(now, ring, self.name, force)
        for key, pending in list(self._unstable.items()):
            if not force and now - pending.sent_at < self.config.resend_after_s:
                continue
            record = self.store.get(key)
            if record is None or record.version != pending.version or record.stable:
                del self._unstable[key]
                continue
            arc = ring.arc_of(key)
            if self.copier.copying(arc):
                # Not a holder of its range yet: we may be its only chain member and hold
                # an orphan older than a delete the range's holder collected (custody.py).
                # Driven once the copy is done.
                continue
            chain = ring.chain_of_arc(arc)
            pos = chain.index(self.name) + 1 if self.name in chain else 0
            pending.sent_at = now
            self.counters["redrive"] += 1
            # Out of the chain (left out for a broken link, or marked down while alive), we
            # may be the only one holding it (acknowledged at k=1, its update lost): an
            # orphan, reinjected at the head until the head has it.
            pending.orphan = pending.orphan or pos == 0
            if pending.orphan and pos != 1:
                # Reinject at the head with its original version; the head acks to us.
                out.append(Send(chain[0], self._update_of(key, record, self.name, 0, 1)))
            elif pos == len(chain):
                settled = self.shipping.at_tail(record)
                if settled is not record:
                    self._put(key, settled)
                out += self._settle_at_tail(key, settled, chain, pos, pending.origin, now)
            else:
                pending.orphan = False
                out.append(Send(chain[pos], self._update_of(key, record, "", 0, 0)))
        return out

    def _expire_held_puts(self, now: float) -> list:
        out: list = []
        for _slot, (src, put) in self._held_puts.expire(now):
            out += self._error(src, put.op, m.UNAVAILABLE, "range still syncing")
        return out

    def _release_held_puts(self, now: float) -> list:
        """After a copy or a ring change: try them again (a put may be held anew)."""
        out: list = []
        for src, put in self._held_puts.pop():
            with self.store.atomic():  # (as a Put that came now: see _ATOMIC)
                out += self._on_put(src, put, now)
        return out

    # -- membership and state transfer ----------------------------------------------------------

    def _on_ring_update(self, src: str, msg: m.RingUpdate, now: float) -> list:
        if self.ring is not None and msg.ring.epoch <= self.ring.epoch:
            return []
        previous, self.ring = self.ring, msg.ring
        self._previous_ring = previous
        self.counters["ring_changes"] += 1
        self._orphan_behind_new_predecessors(previous)
        if self._gains_head(previous):
            # What we hold was applied by another head, which may have restamped it later
            # than its writer was told (and moved only its own horizon): a snapshot below
            # our clock could miss an acknowledged write (fuzz seed 7790263)
            self.snapshots.records_dropped()
        out = self.leases.on_ring(self.ring, now)
        out += self.copier.on_new_ring(previous, msg, now)
        self.released.on_ring(msg)
        out += self.copier.serve_held(self.ring, self._rids)
        if self.ring.serving:
            out += self._redrive(now, force=True)
            out += self.dep_checks.redirect(self.ring)
        out += self._release_held_puts(now)
        return out

    def _gains_head(self, previous) -> bool:
        """Whether the new ring makes us the head of points another node led (or none)."""
        ring = self.ring
        if not ring.tokens:
            return False
        for point in set(ring.tokens) | set(previous.tokens if previous is not None else ()):
            if ring.chain_at_point(point)[:1] == (self.name,) and (
                    previous is None or not previous.tokens
                    or previous.chain_at_point(point)[:1] != (self.name,)):
                return True
        return False

    def _orphan_behind_new_predecessors(self, previous) -> None:
        """A write still on its way down our chain was vouched for by the nodes before us;
        if the new ring puts others before us (another predecessor, a new head in front of
        it: seed 7700972, a learner graduating to head), they may lack it: a head now second whose update to the old second was lost in the
        ring change, while the new head copied the range from holders that never got it
        (fuzz seed 9). Reinject such writes at the head, as orphans (§6.4), rather than
        pass them on behind a head that does not have them."""
        if previous is None:
            return
        for key, pending in self._unstable.items():
            if pending.orphan:
                continue
            before = self._before(previous.chain(key))
            now_before = self._before(self.ring.chain(key))
            if before is not None and now_before is not None and before != now_before:
                pending.orphan = True
                self.counters["orphaned_by_ring"] += 1

    def _on_sync_request(self, src: str, msg: m.SyncRequest, now: float) -> list:
        self.leases.note_epoch(msg.epoch)  # the copy's end waits for what we granted
        return self.copier.serve(src, msg, self.ring, self._rids)
