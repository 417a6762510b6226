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

A restarted node at the same address is not a ring change: it re-learns the ring from the
heartbeat reply and copies its ranges from its chain peers (see ``node.py``).

The manager holds no durable state. After a restart it waits ``startup_grace_s`` to hear
from the live nodes, then publishes a ring whose epoch is above every epoch they reported,
so epochs never go backwards.
"""

from __future__ import annotations

import collections

import attrs

from . import messages as m
from .effects import Send
from .ring import Member, Ring


@attrs.frozen
class ManagerConfig:
    replication: int = 3
    vnodes: int = 16
    failure_timeout_s: float = 1.5
    startup_grace_s: float = 0.0


@attrs.define(slots=True)
class _Peer:
    role: str
    addr: str
    incarnation: int
    last_seen: float


class ManagerCore:
    def __init__(self, config: ManagerConfig, now: float) -> None:
        self.config = config
        self.ring = Ring(0, (), config.replication, config.vnodes)
        self.previous: Ring | None = None
        self.counters: collections.Counter = collections.Counter()
        self._peers: dict[str, _Peer] = {}
        self._epoch_floor = 0
        self._grace_until = now + config.startup_grace_s
        self._dirty = False
        self._last_tick = now

    def handle(self, src: str, msg, now: float) -> list:
        if isinstance(msg, m.Heartbeat):
            return self._on_heartbeat(msg, now)
        if isinstance(msg, m.GetRing):
            if self.ring.epoch <= msg.epoch:
                return []  # nothing newer to tell (e.g. still in the start-up grace)
            return [Send(src, m.RingUpdate(self.ring, self.previous))]
        if isinstance(msg, m.StatsRequest):
            return [Send(src, m.StatsReply(msg.op, self.stats()))]
        self.counters["unexpected_message"] += 1
        return []

    def tick(self, now: float) -> list:
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
        return {
            "epoch": self.ring.epoch,
            "nodes": [n for n, p in sorted(self._peers.items()) if p.role == "node"],
            "frontends": [n for n, p in sorted(self._peers.items()) if p.role == "frontend"],
            **self.counters,
        }

    def _on_heartbeat(self, msg: m.Heartbeat, now: float) -> list:
        self._epoch_floor = max(self._epoch_floor, msg.epoch)
        peer = self._peers.get(msg.name)
        if peer is None or peer.addr != msg.addr or peer.role != msg.role:
            self._peers[msg.name] = _Peer(msg.role, msg.addr, msg.incarnation, now)
            self.counters[f"{msg.role}_joined"] += 1
            if msg.role == "node" or (peer is not None and peer.role == "node"):
                self._dirty = True
        else:
            if peer.incarnation != msg.incarnation:
                self.counters[f"{msg.role}_restarted"] += 1
                peer.incarnation = msg.incarnation
            peer.last_seen = now
        out = self._publish_if_dirty(now)
        if not out and msg.epoch < self.ring.epoch:
            out.append(Send(msg.name, m.RingUpdate(self.ring, self.previous)))
        elif (msg.role == "node" and msg.epoch == self.ring.epoch
              and msg.name in self.ring.names):
            # Half the failure timeout: the lease ends well before we may replace it.
            lease_ms = int(self.config.failure_timeout_s * 500)
            out.append(Send(msg.name, m.HeartbeatAck(self.ring.epoch, msg.sent_at_us,
                                                     lease_ms)))
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
        self.counters["ring_published"] += 1
        update = m.RingUpdate(self.ring, self.previous)
        return [Send(name, update) for name in sorted(self._peers)]
