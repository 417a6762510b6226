"""Per-datacenter manager: sans-IO core for membership and the ring.

Theory of operation
-------------------
Nodes and frontends send a ``Heartbeat`` every interval, carrying the epoch of the ring
they know. The manager

* adds a node it has not heard of (or that restarted at a new address) to the ring;
* removes a node silent for ``failure_timeout_s``, unless the silence is the manager's own:
  after a gap between two of its ticks longer than half the timeout (it was paused or
  starved and read nobody's heartbeats), every peer's silence starts again from now. Without
  that, a manager resuming from a pause evicted every member at once and rebuilt the ring
  one heartbeat at a time, each intermediate ring handing all ranges to the few nodes in it
  (a total outage of every chain, as far as the nodes can tell);
* publishes every change as a new ``Ring`` with ``epoch + 1`` to every node and frontend
  (``RingUpdate``, with the previous ring so a joining node knows whom to copy from);
* answers a heartbeat or ``GetRing`` that shows an older epoch with the current ring, so a
  process that missed a broadcast catches up on its next heartbeat.

**Clocks.** Every heartbeat carries the sender's clock (``sent_at_us``) and the largest
hybrid clock it has made or seen (``clock_us``). The manager measures each process's
offset (``sent_at_us`` minus its own clock on arrival: network delay only makes a clock look
behind) and answers each heartbeat with ``HeartbeatAck``: how far the sender runs ahead of
the lower median offset of the DC's live processes and its own (``ahead_us``), and the
largest clock any of them reported (``store_clock_us``). A median, so neither one bad
clock nor the manager's own shifts the reference; the lower one, so a tie holds clocks
back rather than letting one run ahead. What the processes do with it: docs/protocol.md
§3.1 ("Clocks").

A restarted node at the same address is not a ring change: it re-learns the ring from the
heartbeat reply and copies its ranges from its chain peers (see ``node.py``).

The manager holds no durable state. After a restart it waits ``startup_grace_s`` to hear
from the live nodes, then publishes a ring whose epoch is above every epoch they reported,
so epochs never go backwards.
"""

from __future__ import annotations


from typing import Callable

import attrs

from . import messages as m
from .core import Core
from .effects import Send
from .ring import Member, Ring


@attrs.frozen
class ManagerConfig:
    replication: int = 3
    vnodes: int = 16
    failure_timeout_s: float = 1.5
    startup_grace_s: float = 0.0
    tick_s: float = 0.05  # how often silence is checked (failure detection)


@attrs.define(slots=True)
class _Peer:
    role: str
    addr: str
    incarnation: int
    last_seen: float
    offset_us: int | None = None  # its clock minus ours, at its last heartbeat


class ManagerCore(Core):
    role = "manager"

    def __init__(self, config: ManagerConfig, now: float, name: str = "manager",
                 monotonic: Callable[[], float] | None = None) -> None:
        super().__init__(name, now, monotonic=monotonic)
        self.config = config
        self.ring = Ring(0, (), config.replication, config.vnodes)
        self.previous: Ring | None = None
        self._peers: dict[str, _Peer] = {}
        self._epoch_floor = 0
        self._grace_until = now + config.startup_grace_s
        self._dirty = False
        self._last_tick = now
        self._store_clock_us = 0  # the largest hybrid clock any process reported
        self._handlers = {m.Heartbeat: self._on_heartbeat, m.GetRing: self._on_get_ring}
        self.timers.add("housekeeping", self._housekeeping, now, delay=config.tick_s)

    def _on_get_ring(self, src: str, msg: m.GetRing, now: float) -> list:
        if self.ring.epoch <= msg.epoch:
            return []  # nothing newer to tell (e.g. still in the start-up grace)
        return [Send(src, m.RingUpdate(self.ring, self.previous))]

    def _housekeeping(self, now: float) -> list:
        self.timers.after("housekeeping", self.config.tick_s, now)
        return self.tick(now)

    def tick(self, now: float) -> list:
        """Failure detection: evict members silent for the failure timeout."""
        stalled = now - self._last_tick > self.config.failure_timeout_s / 2
        self._last_tick = now
        if stalled:
            self.counters["own_stall_forgiven"] += 1
            for peer in self._peers.values():
                peer.last_seen = max(peer.last_seen, now)
        for name, peer in list(self._peers.items()):
            if now - peer.last_seen > self.config.failure_timeout_s:
                del self._peers[name]
                self.counters[f"{peer.role}_failed"] += 1
                if peer.role == "node":
                    self._dirty = True
        return self._publish_if_dirty(now)

    def stats(self) -> dict:
        median = self._median_offset_us()
        return {
            "epoch": self.ring.epoch,
            "nodes": [n for n, p in sorted(self._peers.items()) if p.role == "node"],
            "frontends": [n for n, p in sorted(self._peers.items()) if p.role == "frontend"],
            # how far each process's clock ran ahead of the DC's median (negative: behind)
            "clock_offset_ms": {n: round((p.offset_us - median) / 1000)
                                for n, p in sorted(self._peers.items())
                                if p.offset_us is not None},
            "store_clock_us": self._store_clock_us,
            **self.counters,
        }

    def _median_offset_us(self) -> int:
        """The lower median of every live process's clock offset, ours (0) included."""
        offsets = sorted([0] + [p.offset_us for p in self._peers.values()
                                if p.offset_us is not None])
        return offsets[(len(offsets) - 1) // 2]

    def _on_heartbeat(self, src: str, msg: m.Heartbeat, now: float) -> list:
        self._epoch_floor = max(self._epoch_floor, msg.epoch)
        peer = self._peers.get(msg.name)
        if peer is None or peer.addr != msg.addr or peer.role != msg.role:
            self._peers[msg.name] = _Peer(msg.role, msg.addr, msg.incarnation, now)
            self.counters[f"{msg.role}_joined"] += 1
            if msg.role == "node" or (peer is not None and peer.role == "node"):
                self._dirty = True
            peer = self._peers[msg.name]
        else:
            if peer.incarnation != msg.incarnation:
                self.counters[f"{msg.role}_restarted"] += 1
                peer.incarnation = msg.incarnation
            peer.last_seen = now
        if msg.sent_at_us:
            peer.offset_us = msg.sent_at_us - int(now * 1_000_000)
        self._store_clock_us = max(self._store_clock_us, msg.clock_us)
        out = self._publish_if_dirty(now)
        if not out and msg.epoch < self.ring.epoch:
            out.append(Send(msg.name, m.RingUpdate(self.ring, self.previous)))
        elif msg.epoch == self.ring.epoch and self.ring.epoch:
            lease_ms = 0
            if msg.role == "node" and msg.name in self.ring.names:
                # Half the failure timeout: the lease ends well before we may replace it.
                lease_ms = int(self.config.failure_timeout_s * 500)
            ahead_us = 0
            if peer.offset_us is not None:
                ahead_us = max(0, peer.offset_us - self._median_offset_us())
            out.append(Send(msg.name, m.HeartbeatAck(self.ring.epoch, msg.sent_at_us,
                                                     lease_ms, ahead_us,
                                                     self._store_clock_us)))
        return out

    def _publish_if_dirty(self, now: float) -> list:
        if not self._dirty or now < self._grace_until:
            return []
        self._dirty = False
        members = tuple(
            Member(name, p.addr) for name, p in sorted(self._peers.items()) if p.role == "node"
        )
        epoch = max(self.ring.epoch, self._epoch_floor) + 1
        self.previous = self.ring
        self.ring = Ring(epoch, members, self.config.replication, self.config.vnodes)
        # Epochs never go backwards, not even across our restarts (the floor is the
        # largest epoch any member reported): a node ignores rings not newer than its own.
        assert self.ring.epoch > self.previous.epoch and self.ring.epoch > self._epoch_floor
        self.counters["ring_published"] += 1
        update = m.RingUpdate(self.ring, self.previous)
        return [Send(name, update) for name in sorted(self._peers)]
