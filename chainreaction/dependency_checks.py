"""Dependency checks at a chain's tail (docs/protocol.md §3.3). Owned by ``NodeCore``.

Before a put, its frontend asks the tail of each dependency's key whether that version
(or a newer one) is stable there (``DepCheck``). ``NodeCore`` first checks that the request
is for its ring, that it is the key's tail and that it holds its chain lease; then
``DependencyChecks``:

* ``check``: answers ``DepReply true`` at once if the tail holds the version or a newer one,
  stable (or the key was deleted and its tombstone collected above that version), else
  parks the check until ``dep_wait_s`` from now (``overloaded`` beyond ``max_waiters``);
* ``wake``: answers the checks parked on a key as soon as the version the tail holds
  satisfies them, stable (the node calls it whenever a record becomes stable here: at the
  tail, from a ``Shipped``, from a range copy);
* ``expire``: answers ``DepReply false`` at the deadline (the frontend sends it again, to
  the tail of the current ring);
* ``redirect``: after a ring change, refuses (``not_tail``) the checks of the keys this node
  is no longer the tail of, and answers those the node can answer now.

Replies go out in the order the checks came (``waiters.Waiters``): the simulator's trace
depends on it. The store and tombstones are the node's (read only here), the clock is the
node's (it stamps every ``true`` reply), the counters are the node's stats counters.
"""

from __future__ import annotations

import collections

import attrs

from . import messages as m
from .effects import Send
from .node_config import NodeConfig
from .ring import Ring
from .storage import Store
from .tombstones import Tombstones
from .versions import HybridClock, Version
from .waiters import Waiters


@attrs.define(slots=True)
class _Waiter:
    """A dependency check the tail holds until it has ``version`` (or newer), stable."""

    src: str
    op: int
    version: Version


class DependencyChecks:
    """The dependency checks node ``name`` answers as a tail (``config``: ``dep_wait_s``,
    ``max_waiters``; ``counters``: the node's stats counters, shared)."""

    def __init__(self, name: str, store: Store, tombstones: Tombstones, clock: HybridClock,
                 config: NodeConfig, counters: collections.Counter) -> None:
        self.name = name
        self.store = store
        self.tombstones = tombstones
        self.clock = clock
        self.config = config
        self.counters = counters
        self._waiters = Waiters(config.max_waiters)  # key -> dependency checks (_Waiter)

    def __len__(self) -> int:
        return len(self._waiters)

    def __contains__(self, key: str) -> bool:
        """Whether checks are waiting on ``key`` (its record must stay)."""
        return key in self._waiters

    def check(self, src: str, msg: m.DepCheck, now: float) -> list:
        """A check the node accepted as the tail of ``msg.key`` (its epoch is the node's):
        the reply now, or nothing (parked until it can be answered, or its deadline)."""
        record = self.store.get(msg.key)
        if record is not None and record.stable and record.version >= msg.version or (
                record is None and self.tombstones.covers(msg.version)):
            return [Send(src, m.DepReply(msg.op, msg.key, True, self.clock.last))]
        if not self._waiters.add(_Waiter(src, msg.op, msg.version),
                                 now + self.config.dep_wait_s, slot=msg.key):
            return self._refuse(src, msg.op, m.OVERLOADED, "too many dependency checks waiting",
                                msg.epoch)
        self.counters["dep_check_waited"] += 1
        return []

    def wake(self, key: str) -> list:
        """The record of ``key`` may have become stable: answer the checks it satisfies."""
        if key not in self._waiters:
            return []
        record = self.store.get(key)
        if record is None or not record.stable:
            return []
        woken = self._waiters.wake(lambda w: record.version >= w.version, slot=key)
        return [Send(w.src, m.DepReply(w.op, key, True, self.clock.last)) for w in woken]

    def expire(self, now: float) -> list:
        out: list = []
        for key, w in self._waiters.expire(now):
            self.counters["dep_check_timeout"] += 1
            out.append(Send(w.src, m.DepReply(w.op, key, False)))
        return out

    def redirect(self, ring: Ring) -> list:
        """After a ring change: waiters at a node that is no longer the tail must retry."""
        out: list = []
        for key in self._waiters.slots():
            if ring.chain(key)[-1] != self.name:
                for w in self._waiters.pop(key):
                    out += self._refuse(w.src, w.op, m.NOT_TAIL, "ring changed", ring.epoch)
        for key in self._waiters.slots():
            out += self.wake(key)
        return out

    def _refuse(self, src: str, op: int, code: str, detail: str, epoch: int) -> list:
        self.counters["error_" + code] += 1  # (as NodeCore._error counts its refusals)
        return [Send(src, m.Error(op, code, detail, epoch))]
