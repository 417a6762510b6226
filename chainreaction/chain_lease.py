"""Chain leases: a node acts as head or tail of a chain only while every other member of
that chain, on the same ring epoch, has vouched for it recently (docs/protocol.md §5.1).

Why not the manager. A lease from the manager stopped every write in the DC when the
manager died or paused, though nothing had changed. A zombie head or tail (paused, or cut
off, while the ring moved on) must still not act: it would apply a write the new head
never sees, or call a write stable that a new tail lacks. Here the members of a chain
vouch for each other, so the chain runs while its members can talk, manager or not:

* Every node asks every other member of its ring for a lease every ``lease_renew_s``:
  ``LeaseRequest(epoch, stamp)`` (the grants of its chain peers are what it needs; the
  others' show that the links to them work, links.py).
* A peer grants (``LeaseGrant``) only on that same epoch, and only once every lease it
  granted on an older epoch has ended (``_quiet``): it ran out, or its holder has asked
  on the new epoch since (a node drops its leases when it takes a newer ring, so asking
  on the new one proves it holds none on the old one). After a restart on its old store
  it counts every member as such a holder (it cannot know what it granted before). So a
  ring change or a restart costs one round of requests when every node is alive, and a
  lease when one is stopped or cut off: a zombie never asks, its lease must run out.
* The lease runs ``lease_s`` from when the *request* left, on the requester's monotonic
  clock; the granter counts its grants from when the *grant* left, later. Both clocks
  measure real time (no wall clock steps), with ``DRIFT`` of margin.
* A node acts for a chain only if it holds a current lease from every other member, on its
  own epoch, and is not quiet itself (it may have vouched, on an older ring, for a node
  that still acts on it).

Why a zombie cannot act beside the node that replaced it: a later ring's chain for the
same points shares a member M with the zombie's chain (the ring only skips nodes marked
down; custody.py keeps a range with nodes that held it, so a chain of only new nodes
copies from the old ones before acting). The new actor needs M's grant on the new epoch
(or is M, and waits until it is not quiet); M grants that only after its grants on the
old epoch, the zombie's included, have ended.
"""

from __future__ import annotations

import collections
from typing import Callable

from . import messages as m
from .effects import Send
from .ring import Ring
from .storage import Store

DRIFT = 0.05  # a granter waits this much longer than the lease lasts (clock rate error)
LEASE_META = "leases_granted_until"  # a node's store: no lease it granted runs past this


class ChainLeases:
    def __init__(self, name: str, lease_s: float, renew_s: float,
                 monotonic: Callable[[], float] | None, required: bool, counters,
                 now: float, store: Store | None = None) -> None:
        self.name = name
        self.lease_s = lease_s
        self.renew_s = renew_s
        self.monotonic = monotonic
        self.required = required  # off only in single-core transcripts
        self.counters = counters
        self.epoch = 0
        self.peers: tuple[str, ...] = ()
        self._heard: dict[str, float] = {}  # peer -> when it last granted (or we began)
        self.until: dict[str, float] = {}  # peer -> when its lease on ``epoch`` ends
        self._newest_seen = 0  # the newest epoch any peer showed us
        self._sent: collections.OrderedDict[int, float] = collections.OrderedDict()
        self._stamp = 0
        self._asked_at = float("-inf")
        self._granted: dict[str, float] = {}  # peer -> when the lease we granted it ends
        # kept in the node's store (LEASE_META): no lease we granted runs past this time on
        # the monotonic clock; renewed well before it is reached
        self._store = store
        self._promised = float("-inf")
        # peers that may still hold a lease we granted on an older epoch -> when it ends
        self._pending: dict[str, float] = {}
        self._restarted_until: float | None = None  # what we granted before may run till
        self._peer_epoch: dict[str, int] = {}  # the newest epoch each peer asked on
        # requests refused while we were quiet or behind, answered once we can
        self._waiting: dict[str, m.LeaseRequest] = {}
        self.last_event = now  # the time of the last event we saw (older_leases_run)

    def _now(self, now: float) -> float:
        self.last_event = now
        return self.monotonic() if self.monotonic is not None else now

    def restarted(self, now: float) -> None:
        """We restarted on a store we had before: any member may still hold a lease we
        granted before the crash, up to what we ``promised`` then (on the monotonic clock,
        which runs on across a process restart; one far ahead of ours was made before a
        reboot, which takes longer than a lease). Until each member has asked on our ring,
        or that time has passed, we vouch for nobody and act on nothing."""
        t = self._now(now)
        bound = t + 2 * self.lease_s * (1 + DRIFT)
        raw = self._store.get_meta(LEASE_META) if self._store is not None else None
        promised = float(raw) if raw else None
        if promised is None:  # (a store from before the promise was kept)
            self._restarted_until = t + self.lease_s * (1 + DRIFT)
        elif t < promised <= bound:
            self._restarted_until = promised

    def on_ring(self, ring: Ring, now: float) -> list:
        """A newer ring: leases on the old epoch end here, and we grant none on the new one
        until every grant on the old one has ended (a peer that asked on this epoch or a
        newer one already holds none). Returns the grants that waited for this ring, and
        our own requests."""
        if ring.epoch == self.epoch:
            return []
        t = self._now(now)
        if self._restarted_until is not None and not self.epoch:  # the first ring since
            self._granted = {peer: self._restarted_until
                             for peer in ring.all_names if peer != self.name}
        self.epoch = ring.epoch
        self.until.clear()
        self._pending = {peer: end for peer, end in self._granted.items()
                         if end > t and self._peer_epoch.get(peer, 0) < ring.epoch}
        self._granted = {peer: self._granted[peer] for peer in self._pending}
        self.peers = tuple(name for name in ring.all_names if name != self.name)
        self._heard = {peer: self._heard.get(peer, t) for peer in self.peers}
        return self._answer_waiting(t) + self.requests(now)

    def note_epoch(self, epoch: int) -> None:
        """A peer is on a newer ring than ours: ours is stale, so we stop acting on it and
        stop vouching on it, before we even know the new ring (the manager may be down)."""
        if epoch > max(self.epoch, self._newest_seen):
            self._newest_seen = epoch
            self.until.clear()
            self.counters["lease_dropped_newer_epoch"] += 1

    def older_leases_run(self) -> bool:
        """Whether a lease we granted on an older epoch may still run."""
        return self._quiet(self._now(self.last_event))

    def renew(self, now: float) -> list:
        """Every ``renew_s`` (the node's housekeeping tick runs more often)."""
        if self._now(now) - self._asked_at < self.renew_s:
            return []
        return self.requests(now)

    def requests(self, now: float) -> list:
        """Ask every other ring member for a lease (renewal; also at once on a new ring)."""
        if not self.peers or not self.required:
            return []
        self._stamp += 1
        self._asked_at = self._sent[self._stamp] = self._now(now)
        if len(self._sent) > 64:
            self._sent.popitem(last=False)
        request = m.LeaseRequest(self.epoch, self._stamp)
        return [Send(peer, request) for peer in self.peers]

    def _quiet(self, t: float) -> bool:
        """Whether a lease we granted on an older epoch may still run."""
        if self._pending:
            self._pending = {peer: end for peer, end in self._pending.items() if end > t}
        return bool(self._pending)

    def _barred(self, t: float) -> bool:
        """Whether we may neither act nor vouch now: quiet, or on a ring known stale."""
        return self._quiet(t) or self.epoch < self._newest_seen

    def on_request(self, src: str, msg: m.LeaseRequest, now: float) -> list:
        t = self._now(now)
        self.note_epoch(msg.epoch)
        if msg.epoch >= self.epoch:
            # on our epoch or a newer one: it holds no lease on an older one
            self._peer_epoch[src] = max(self._peer_epoch.get(src, 0), msg.epoch)
            self._pending.pop(src, None)
        if msg.epoch != self.epoch or self._barred(t):
            self.counters["lease_refused"] += 1
            if msg.epoch >= self.epoch:
                self._waiting[src] = msg  # answered once we are on it and not quiet
            return []  # silence is the refusal; the requester asks again anyway
        return self._grant(src, msg, t) + self._answer_waiting(t)

    def _grant(self, src: str, msg: m.LeaseRequest, t: float) -> list:
        self._granted[src] = end = t + self.lease_s * (1 + DRIFT)
        if end > self._promised:
            self._promised = t + 2 * self.lease_s * (1 + DRIFT)
            if self._store is not None:
                self._store.put_meta(LEASE_META, repr(self._promised).encode())
        self._waiting.pop(src, None)
        return [Send(src, m.LeaseGrant(msg.epoch, msg.stamp))]

    def _answer_waiting(self, t: float) -> list:
        if not self._waiting or self._barred(t):
            return []
        out: list = []
        for peer, request in list(self._waiting.items()):
            if request.epoch == self.epoch:
                out += self._grant(peer, request, t)
            elif request.epoch < self.epoch:
                del self._waiting[peer]
        return out

    def on_grant(self, src: str, msg: m.LeaseGrant, now: float) -> list:
        sent_at = self._sent.get(msg.stamp)
        if msg.epoch != self.epoch or sent_at is None:
            self.counters["lease_grant_stale"] += 1
        else:
            self.until[src] = max(self.until.get(src, float("-inf")), sent_at + self.lease_s)
            self._heard[src] = self._now(now)
        return []

    def unreachable(self, silence_s: float, now: float) -> tuple:
        """The members that granted us nothing for ``silence_s`` (a broken link, or a
        process that is down or stopped: the manager tells them apart)."""
        if not self.required:
            return ()
        t = self._now(now)
        return tuple(peer for peer, at in self._heard.items() if t - at > silence_s)

    def holds(self, chain: tuple, now: float) -> bool:
        """Whether we may act as head or tail of ``chain`` (of our ring) now."""
        if not self.required:
            return True
        t = self._now(now)
        if self._barred(t):
            return False
        until = self.until
        return all(until.get(peer, t) > t for peer in chain if peer != self.name)

    def left(self, chain: tuple, now: float) -> float:
        """Seconds until we may no longer act for ``chain`` (0 or less: we may not now)."""
        t = self._now(now)
        if self._barred(t):
            return 0.0
        ends = [self.until.get(peer, t) for peer in chain if peer != self.name]
        return min(ends, default=float("inf")) - t
