"""Ranges a node no longer owns: deleted once the ring's custody no longer names it.

Theory of operation
-------------------
After a ring change a node may hold records of arcs whose chain it is no longer in (a
joiner took its place, or a drain moved them). Custody (custody.py) says who holds each
arc completely: once it does not name us, nobody copies an arc from us or counts on what
we hold of it, so those records are dead weight and go. ``ReleasedRanges`` sweeps the
store, a batch of records per tick (a large store is not deleted in one step of the event
loop), and keeps what is still in flight: a write not yet known stable, which the redrive
reinjects at the arc's head; a write the remote proxy has not logged yet; a key a
dependency check waits on (``busy``). A pass that had to keep some runs again a second
later. A node the manager removed (its ``removed``, never a ring without it alone)
releases everything; a node marked down keeps what it holds: it is in its old chains when
back.
"""

from __future__ import annotations

import collections
from typing import Callable

from . import messages as m
from .ring import RangeSet, hash_point
from .storage import Store

BATCH = 2000  # records looked at per tick
AGAIN_AFTER_S = 1.0  # a pass that kept records in flight runs again this much later
EVERYTHING = ((0, 0),)  # (start, end] with start >= end wraps: the whole circle


class ReleasedRanges:
    def __init__(self, name: str, store: Store, counters: collections.Counter) -> None:
        self.name = name
        self.store = store
        self.counters = counters
        self._ranges: RangeSet | None = None
        self._cursor: str | None = None  # the last key the pass looked at ("" to start)
        self._kept = 0  # records in the ranges kept in this pass (in flight)
        self._next_pass_at = 0.0
        self.everything = False  # removed from the ring: every record goes

    def on_ring(self, msg: m.RingUpdate) -> None:
        """The arcs of ``msg.ring`` we may delete: out of their chain and not their holder.
        (Without custody we cannot tell: nothing goes.)"""
        ring = msg.ring
        if self.everything:
            return
        if msg.custody is None or self.name in ring.down or self.name not in ring.all_names:
            # (Not a member: joining, or a manager that forgot us; only the manager's
            # ``removed`` makes us delete everything, never a ring without us alone: a node
            # back on an empty disk under a removed name got the ring before its rejoin
            # and deleted itself.)
            self._ranges = self._cursor = None
            return
        ranges = [ring.arc_range(arc) for arc, holders in enumerate(msg.custody)
                  if self.name not in holders and self.name not in ring.chain_of_arc(arc)]
        self._start(ranges)

    def release_everything(self) -> None:
        """Removed from the ring (the manager said so): every record goes."""
        if not self.everything:
            self.everything = True
            self._start(EVERYTHING)

    def _start(self, ranges) -> None:
        self._ranges = RangeSet(ranges) if ranges else None
        self._cursor = "" if ranges else None
        self._kept, self._next_pass_at = 0, 0.0

    def covers(self, key: str) -> bool:
        """Whether ``key`` is in a range we release."""
        return self._ranges is not None and hash_point(key) in self._ranges

    @property
    def done(self) -> bool:
        """No pass to run: what we were to delete is gone."""
        return self._cursor is None

    def sweep(self, now: float, busy: Callable[[str, object], bool]) -> list[str]:
        """Delete the next batch of released records; the keys deleted."""
        if self._cursor is None or self._ranges is None or now < self._next_pass_at:
            return []
        deleted: list[str] = []
        looked = 0
        for key, record in self.store.items_after(self._cursor):
            looked += 1
            self._cursor = key
            if hash_point(key) in self._ranges:
                if busy(key, record):
                    self._kept += 1
                else:
                    self.store.delete(key)
                    deleted.append(key)
            if looked >= BATCH:
                break
        else:  # the pass is over: again later if it kept records in flight
            if self._kept:
                self._cursor, self._kept, self._next_pass_at = "", 0, now + AGAIN_AFTER_S
            else:
                self._cursor = None
        self.counters["records_released"] += len(deleted)
        return deleted
