"""State transfer: both sides of copying key ranges between chain members (sans-IO).

Theory of operation (docs/protocol.md §3.5, §6.4, §6.6)
-------------------------------------------------------
A node that becomes a chain member of a range it does not hold (appended at the tail
after a failure, back after it was marked down, on an empty disk) holds that range in
*quarantine*: it copies it from a node that holds it (the ring's custody, custody.py; the
ones up first, in turn) with ``SyncRequest``, answered by ``SyncChunk``s, and meanwhile
the node stores and forwards updates flowing through it, holds writes (if head; refuses
them while no holder is up), makes dependency checks wait (if tail) and refuses reads.
When every chunk has arrived the range leaves quarantine and the node serves it. (Without
custody in the ring update, the candidates are the previous chain's members.)

``RangeCopier`` is that machinery, owned by ``NodeCore`` and driven by it:

* requesting side: ``on_new_ring`` decides what to copy under a new ring (and forgets
  copies of the old one), ``retry`` asks a silent source again, ``on_refused`` rotates to
  the next candidate or merges partial copies, ``accept``/``complete`` track the chunks of
  a copy, ``drop_collected`` cleans up after a complete one; ``copying(arc)`` is the
  quarantine test.
* source side: ``serve`` starts a stream of the records (and request ids) in the asked
  ranges, ``serve_held`` the requests that came before we had their ring, ``pump`` sends
  the next few chunks of every stream (a copy is paced over ticks, link buffers stay
  bounded).

What a chunk's records mean for the node (newest wins, orphans, waking dependency
checks, remembering request ids) stays in ``NodeCore``: the copier keeps the protocol's
state, the node keeps the data's. Both share the node's store (read here to serve and to
drop what the source collected), its tombstones (the collected floor travels with every
chunk) and its counters.
"""

from __future__ import annotations

import collections
from typing import Callable

import attrs

from . import messages as m
from .effects import Send
from .node_config import NodeConfig
from .request_ids import RequestIds
from .ring import RangeSet, Ring, hash_point, segments
from .storage import Store
from .tombstones import Tombstones
from .versions import Version


@attrs.define(slots=True)
class Sync:
    """A copy we are receiving."""

    sources: list  # candidates, first is asked; rotated when it refuses
    ranges: tuple
    arcs: set
    sent_at: float
    received: set = attrs.Factory(set)  # chunk seqs received
    total: int = 0  # number of chunks, known once the last one arrived
    refusals: int = 0
    partial_ok: bool = False  # one of several copies merged (every candidate was syncing)
    from_holders: bool = False  # the sources are the range's holders (custody.py)
    keys: set = attrs.Factory(set)  # keys the source sent, or that we stored meanwhile
    gc_floor: Version | None = None  # the newest tombstone the source had collected


@attrs.define(slots=True)
class _Stream:
    """A copy we are sending: the rest of a store scan, emitted a few chunks per step."""

    dst: str
    sync_id: int
    ranges: tuple
    items: object  # iterator of (key, Record) restricted to the requested ranges
    rids: list = attrs.Factory(list)  # (rid, key, version) we applied, same ranges
    seq: int = 0


class RangeCopier:
    """Copies in both directions for node ``name`` (``config``: ``sync_*``,
    ``max_sync_streams``; ``counters``: the node's stats counters, shared)."""

    def __init__(self, name: str, store: Store, tombstones: Tombstones, config: NodeConfig,
                 counters: collections.Counter, now: float,
                 older_leases_run: Callable[[], bool] = lambda: False) -> None:
        self.name = name
        # Whether a lease we granted on an older ring may still run (chain_lease.py): a
        # node of that ring may still act on the range, so the requester, which acts as
        # soon as its copy is complete, must wait: we serve once none runs.
        self.older_leases_run = older_leases_run
        self.store = store
        self.tombstones = tombstones
        self.config = config
        self.counters = counters
        self._syncs: dict[int, Sync] = {}
        self._syncing_arcs: dict[int, set] = {}  # arc -> ids of the copies it waits for
        # Arcs of the current ring whose listed holders are all out of our chain while the
        # manager does not list us: we hold them (copied, or served before), but act on
        # them only once a ring lists us (custody.py): otherwise writes would become
        # stable that no listed holder has, and the next node copying from the listed
        # holders would miss them (fuzz seeds 8, 2600915, 2601133). Heartbeats report
        # them as not copying, which is how the manager comes to list us.
        self._unlisted: set[int] = set()
        self._awaiting: set[int] = set()  # of those, the ones already copied
        # newest request per (requester, ranges), served once we have its ring
        self._held_requests: dict[tuple, m.SyncRequest] = {}
        self._streams: list[_Stream] = []
        self._next_sync_id = int(now * 1_000_000) % 2**62  # distinct across restarts
        self.store_id = 0  # the node's store (custody names holders with theirs)

    # -- requesting side --------------------------------------------------------------------

    def syncing(self) -> bool:
        return bool(self._syncs)

    def copying(self, arc: int) -> bool:
        """Whether ``arc`` of the current ring is in quarantine (copying, or copied and
        waiting for the manager to list us as its holder)."""
        return arc in self._syncing_arcs or arc in self._awaiting

    def arcs_in_quarantine(self) -> int:
        return len(self._syncing_arcs) + len(self._awaiting)

    def syncing_arcs(self) -> tuple:
        return tuple(sorted(self._syncing_arcs))

    def no_holder_up(self, arc: int, ring: Ring) -> bool:
        """Whether ``arc`` waits for a copy none of whose sources is up: every replica
        that holds it is down (or its disk was lost), so it cannot be served safely."""
        ids = self._syncing_arcs.get(arc)
        if not ids:
            return False
        return all(not any(src in ring for src in self._syncs[sid].sources) for sid in ids)

    def note_stored(self, key: str) -> None:
        """Every record the node stores goes past here. Stored during a copy (from the
        chain or a remote proxy): current, whatever the source holds; a source that fell
        behind may lack it (``drop_collected`` keeps it)."""
        for sync in self._syncs.values():
            sync.keys.add(key)

    def on_new_ring(self, previous: Ring | None, msg: m.RingUpdate, now: float) -> list:
        """Under ``msg.ring`` (replacing ``previous``, our last ring): copy every range we
        now serve and did not, from the members of its previous chain still in the ring.
        Copies under ``previous`` are dropped (asked again here if still wanted)."""
        new = msg.ring
        # A ring we never saw in between (partitioned from the manager, or stopped): we may
        # have been removed and re-added meanwhile, so what we hold can be stale: copy as a
        # restart. A restarted manager's first ring has an empty ``previous``; then only an
        # epoch gap tells: a node stopped while it was evicted, back after the manager
        # restarted, kept serving as tail a range whose writes went past it (sim fuzz seed
        # 81642: the DC never applied that key again).
        missed = previous is not None and (
            msg.previous.epoch != previous.epoch
            if msg.previous is not None and msg.previous.members
            else new.epoch > previous.epoch + 1)
        if missed:
            self.counters["ring_missed"] += 1
        fresh = previous is None or missed
        if not fresh:
            old = previous
        elif msg.previous is None or new.epoch <= 1:
            old = None  # first ring of the cluster: nobody has anything to copy from
        elif msg.previous.members and self.name not in msg.previous:
            old = msg.previous  # we are being (re)added: copy from the previous chains
        else:
            # Restarted while still a member (or the manager restarted too and forgot the
            # previous ring): copy from our chain peers.
            old = new
        old_syncing = set(self._syncing_arcs)  # (copied ones waiting for a listing served)
        holders = self._holders(msg)
        self._unlisted.clear()
        self._awaiting.clear()

        wanted: dict[str, list] = {}
        for start, end, old_chain, new_chain, new_arc in segments(old, new):
            if self.name not in new_chain:
                continue
            served_before = (
                not fresh
                and self.name in old_chain
                and previous.arc_of_point(end) not in old_syncing
            )
            listed = holders[new_arc] if holders is not None else None
            if listed and not any(n in new_chain for n in listed):
                self._unlisted.add(new_arc)
                if served_before:
                    self._awaiting.add(new_arc)
                    continue
            if served_before:
                continue
            if holders is None:  # (no custody known: the previous chain's members)
                sources = tuple(n for n in old_chain if n != self.name and n in new)
                if not sources:
                    continue  # no previous member to copy from: what we hold is all there is
            else:
                sources = holders[new_arc]
                if sources is None:
                    continue  # we hold it, or nobody does: nothing to copy
            wanted.setdefault(sources, []).append(((start, end), new_arc))

        self._syncs.clear()
        self._syncing_arcs.clear()
        out: list = []
        for sources, parts in sorted(wanted.items()):
            self.counters["sync_started"] += 1
            out += self._request(list(sources), tuple(r for r, _ in parts),
                                 {a for _, a in parts}, now, new.epoch,
                                 from_holders=holders is not None)
        return out

    def _holders(self, msg: m.RingUpdate) -> list | None:
        """Per arc of ``msg.ring``, whom to copy it from: its holders (custody.py), those up
        first; None where we hold it (listed with our store) or nobody does. (An empty
        tuple: only we are listed, but with a store we no longer have; we wait for a new
        ring.) None for the whole ring when the manager sent no custody."""
        if msg.custody is None:
            return None
        ring = msg.ring
        old = msg.previous if msg.previous is not None and msg.previous.serving else None
        ours = dict(msg.store_ids).get(self.name) == self.store_id
        out: list = []
        for arc, listed in enumerate(msg.custody):
            if not listed or (ours and self.name in listed):
                out.append(None)
                continue
            # The ones up first, and among them the earliest in the arc's previous chain:
            # by the prefix property it holds what the later ones hold, and more (a write
            # still on its way down, e.g. from a head now second; fuzz seed 1001587).
            was = old.chain_at_point(ring.tokens[arc]) if old is not None else ()
            others = sorted((n for n in listed if n != self.name), key=lambda n: (
                n not in ring, was.index(n) if n in was else len(was), n))
            out.append(tuple(others))
        return out

    def retry(self, now: float, epoch: int) -> list:
        """Ask again for every copy whose source went silent (``sent_at`` moves with every
        chunk received, so a slow but steady copy is left alone)."""
        out: list = []
        for sid, sync in list(self._syncs.items()):
            if sync.sources and now - sync.sent_at >= self.config.sync_retry_s:
                self.counters["sync_request_resent"] += 1
                self._drop(sid)
                if sync.from_holders:  # it may be down: the next holder, in turn
                    sync.sources.append(sync.sources.pop(0))
                out += self._request(sync.sources, sync.ranges, sync.arcs, now, epoch,
                                     sync.refusals, sync.partial_ok, sync.keys,
                                     sync.from_holders)
        return out

    def on_refused(self, src: str, msg: m.Error, now: float, epoch: int) -> list:
        """A source refused our SyncRequest (it is syncing that range itself): ask the
        next candidate at the next retry."""
        sync = self._syncs.get(msg.op)
        if sync is None or sync.sources[0] != src or msg.code != m.NOT_READY:
            return []  # (a busy source says "overloaded": the retry timer asks again)
        self.counters["sync_refused"] += 1
        sync.refusals += 1
        sync.sources.append(sync.sources.pop(0))
        if sync.from_holders or sync.refusals < 2 * len(sync.sources):
            # (A holder refusing is not done installing the ring that says it holds the
            # range: ask again, never merge copies from nodes that do not hold it.)
            return []
        # Every candidate is itself copying this range (several members restarted at
        # once). No single copy is known complete, but together they hold everything the
        # chain acknowledged: copy from all of them and keep the newest of each key. The
        # range stays in quarantine until every one of those copies is done.
        self.counters["sync_merged_copies"] += 1
        self._drop(msg.op)
        out: list = []
        for source in sync.sources:
            out += self._request([source], sync.ranges, sync.arcs, now, epoch,
                                 partial_ok=True, keys=sync.keys)
        return out

    def accept(self, src: str, msg: m.SyncChunk, now: float) -> Sync | None:
        """The copy ``msg`` belongs to, if it is one in progress and from the source we
        asked; then the node applies the chunk's records and calls ``complete``."""
        sync = self._syncs.get(msg.sync_id)
        if sync is None:
            self.counters["sync_chunk_stale"] += 1
            return None
        if src != sync.sources[0] or (msg.total and msg.seq >= msg.total):
            self.counters["sync_chunk_bad"] += 1
            return None
        sync.sent_at = now  # progress: the retry timer restarts
        if msg.gc_floor is not None and (sync.gc_floor is None or msg.gc_floor > sync.gc_floor):
            sync.gc_floor = msg.gc_floor
        sync.keys.update(item.key for item in msg.items)
        return sync

    def complete(self, sync: Sync, msg: m.SyncChunk) -> bool:
        """Count ``msg`` (applied) in; True once it and every chunk before it arrived
        (chunks may come in any order): the copy's arcs leave quarantine."""
        sync.received.add(msg.seq)
        if msg.total:
            sync.total = msg.total
        if not sync.total or len(sync.received) < sync.total:
            return False
        self._drop(msg.sync_id)
        self.counters["sync_done"] += 1
        return True

    def drop_collected(self, sync: Sync) -> list[str]:
        """After a complete copy: a record we held before it started that the source no
        longer holds, at or below the source's collected floor, was deleted there meanwhile
        (we were away), or is a write older than the grace period that never made it along
        the chain. (What we stored during the copy is newer than that: kept.) Returns the
        keys deleted from the store."""
        self.tombstones.raise_floor(sync.gc_floor)
        if sync.gc_floor is None or sync.partial_ok:
            return []  # (a merged partial copy says nothing of what its sources lack)
        wanted = RangeSet(sync.ranges)
        dropped = []
        for key, record in self.store.items():
            if (key not in sync.keys and record.version <= sync.gc_floor
                    and hash_point(key) in wanted):
                self.store.delete(key)
                dropped.append(key)
                self.counters["stale_records_dropped"] += 1
        return dropped

    def _request(self, sources: list, ranges: tuple, arcs: set, now: float, epoch: int,
                 refusals: int = 0, partial_ok: bool = False,
                 keys: set | None = None, from_holders: bool = False) -> list:
        """Ask ``sources[0]`` for ``ranges`` (no sources: the ranges wait in quarantine for
        a ring naming a holder). A retry passes on the ``keys`` the attempts before it
        stored: they stay, whatever the next source lacks."""
        sid = self._next_sync_id
        self._next_sync_id += 1
        self._syncs[sid] = Sync(sources, ranges, arcs, now, refusals=refusals,
                                partial_ok=partial_ok, keys=set(keys or ()),
                                from_holders=from_holders)
        for arc in arcs:
            self._syncing_arcs.setdefault(arc, set()).add(sid)
        if not sources:
            self.counters["sync_waiting_for_holder"] += 1
            return []
        return [Send(sources[0], m.SyncRequest(sid, epoch, ranges, partial_ok))]

    def _drop(self, sid: int) -> None:
        sync = self._syncs.pop(sid)
        for arc in sync.arcs:
            ids = self._syncing_arcs.get(arc)
            if ids is not None:
                ids.discard(sid)
                if not ids:
                    del self._syncing_arcs[arc]
                    if arc in self._unlisted:
                        self._awaiting.add(arc)

    def _overlaps(self, ranges: tuple) -> bool:
        """Whether any (start, end] in ``ranges`` overlaps a range we are copying."""
        if not self._syncs:
            return False
        mine = RangeSet(r for sync in self._syncs.values() for r in sync.ranges)
        theirs = RangeSet(ranges)
        return any(end in mine for _, end in ranges) or any(
            end in theirs for sync in self._syncs.values() for _, end in sync.ranges)

    # -- source side ------------------------------------------------------------------------

    def serve(self, src: str, msg: m.SyncRequest, ring: Ring | None,
              rids: RequestIds) -> list:
        """Start streaming ``msg.ranges`` to ``src`` under ``ring`` (our current one)
        with their records and ``rids`` (the request ids the node applied there)."""
        if ring is None or msg.epoch > ring.epoch or self.older_leases_run():
            # Serve once we have that ring and what we granted on older ones has ended (the
            # housekeeping tick tries again); a retry replaces the request it retries.
            self._held_requests[(src, msg.ranges)] = msg
            return []
        if not msg.partial_ok and self._overlaps(msg.ranges):
            # We are still copying part of that range ourselves: not a complete source.
            return self._refuse(src, msg.sync_id, m.NOT_READY, "source is syncing that range",
                                ring.epoch)
        wanted = RangeSet(msg.ranges)
        items = ((k, r) for k, r in self.store.items() if hash_point(k) in wanted)
        # A retry (same requester, same ranges) supersedes the copy it retries.
        self._streams = [s for s in self._streams
                         if s.dst != src or s.ranges != msg.ranges or s.sync_id > msg.sync_id]
        if len(self._streams) >= self.config.max_sync_streams:
            return self._refuse(src, msg.sync_id, m.OVERLOADED, "too many copies in progress",
                                ring.epoch)
        # Also the request ids we applied there, overwritten writes included: if the
        # requester becomes head, a late retry of one of them (its ack was lost) must not
        # be applied a second time with a new version.
        self._streams.append(_Stream(src, msg.sync_id, msg.ranges, items, rids.within(wanted)))
        self.counters["sync_served"] += 1
        return self.pump()

    def serve_held(self, ring: Ring | None, rids: RequestIds) -> list:
        """The requests held until we had their ring, and no older lease of ours ran."""
        held, self._held_requests = self._held_requests, {}
        out: list = []
        for (requester, _ranges), request in held.items():
            out += self.serve(requester, request, ring, rids)
        return out

    def pump(self) -> list:
        """Emit the next chunks of every copy in progress; the last has ``total`` set."""
        out: list = []
        cfg = self.config
        for stream in list(self._streams):
            for _ in range(cfg.sync_chunks_per_step):
                chunk, size, last = [], 0, True
                for key, rec in stream.items:
                    chunk.append(m.SyncItem(key, rec.version, rec.value, rec.stable, rec.rid,
                                            rec.seq, rec.logged_at, rec.vclock, rec.deps,
                                            rec.past, rec.applied_at))
                    size += len(key.encode()) + len(rec.value or b"") + len(rec.rid) + 32
                    if len(chunk) >= cfg.sync_chunk_items or size >= cfg.sync_chunk_bytes:
                        last = False
                        break
                rids = stream.rids[:cfg.sync_chunk_items]
                del stream.rids[:cfg.sync_chunk_items]
                last = last and not stream.rids
                total = stream.seq + 1 if last else 0
                out.append(Send(stream.dst, m.SyncChunk(stream.sync_id, stream.seq, total,
                                                        tuple(chunk), self.tombstones.floor,
                                                        tuple(rids))))
                self.counters["sync_items_sent"] += len(chunk)
                stream.seq += 1
                if last:
                    self._streams.remove(stream)
                    break
        return out

    def _refuse(self, src: str, sync_id: int, code: str, detail: str, epoch: int) -> list:
        self.counters["error_" + code] += 1  # (as NodeCore._error counts its refusals)
        return [Send(src, m.Error(sync_id, code, detail, epoch))]
