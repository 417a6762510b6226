"""What several DCs change at a node: getting local writes into the DC's shipping log
without waiting for it, and "stable" for clients meaning Global-Write-Stable
(docs/protocol.md §7). Owned by ``NodeCore``. With one DC (``config.geo`` off) none of
this applies: stable at the tail is stable, and nothing is shipped.

Theory of operation
-------------------
A local write is DC-Write-Stable as soon as the tail stores it, as with one DC: nothing
on the local data path waits for the DC's remote proxy (a proxy that is down, stopped or
slow must not slow the DC). The proxy must still log every local write, and log it after
its causal past in this DC, since the receivers of other DCs apply the log in order
(``after``). Stability no longer says "logged", so the order is carried explicitly:

* **Local dependencies.** A local write carries, until it is logged, what of this DC it
  depends on: ``deps`` (``(key, clock)`` pairs: that version of that key, or a newer one)
  and ``past`` (a position of this DC's log), which the frontend put in the ``Put`` and
  every ``Update``, ``SyncItem`` and ``Ship`` carries on. The proxy logs a write only
  once each of them is logged (remote_proxy/core.py).
* **Shipping.** The tail sends a local write to the proxy (``Ship``) when it stores it
  stable, and again on the redrive until the proxy answers with its position
  (``Shipped``); the tail then records ``seq`` and tells its predecessors (``Stable``
  with ``seq``), and the record drops what it carried.
* **Replacing an unlogged local write** (``replacing``): the new record takes over its
  ``deps`` and ``past`` (a write that depended on the old one is satisfied by a newer
  version of the key being logged, so that newer version must come after the old one's
  past), and the old one is *kept*, durably (``Store.put_unlogged``), and shipped until
  logged. Kept because the newer version may itself depend on a write that depends on
  exactly the old one (the old one read, another key written, this key written again):
  only the old one can come first in the log then. A write of another DC that replaces
  it (the write was *overtaken*) leaves it to be shipped at once.

Every node tracks what it must see logged (``pending``): its current records that are
local, stable here and not known logged, and the writes it kept. The key's tail ships its
record at once and on each redrive; the rest waits, counted from when it was tracked and
from when the proxy was last heard back: a kept write ``resend_after_s`` (the tail may
never have had it; after an outage the tails' records go first, and a kept version comes
in when the proxy needs it, or is answered with a newer one's position), a current record
at another node ``max_ship_resend_s`` (the tail's ``Stable`` with the
position was lost). A node that becomes tail ships what it tracks. Resends double their
interval per write up to ``max_ship_resend_s``; at most ``max_ships_per_tick`` leave per
redrive, so a backlog leaves paced. While the proxy is silent (neither
``GeoProgress``, sent every second at least, nor ``Shipped`` for ``proxy_silence_s``),
only one probe leaves per ``resend_after_s``: a dead proxy costs the DC nothing; once it
speaks again, everything pending is shipped.

A version is Global-Write-Stable once its ``seq`` is within the proxy's
``GeoProgress.global_stable`` for its DC; that, not DC stability, is what reads report to
clients as "stable".
"""

from __future__ import annotations

import collections
import heapq

import attrs

from . import messages as m
from .effects import Send
from .fields import merge_local_deps
from .node_config import NodeConfig
from .ring import Ring
from .storage import Record, Store
from .versions import Version


@attrs.define(slots=True, eq=False)
class _Pending:
    """A local write this node must see logged."""

    key: str
    record: Record
    kept: bool  # replaced here (in ``Store.unlogged``), not the current record
    since: float  # tracked since
    interval: float  # the next resend waits this long
    next_at: float = 0.0
    turn: int = 0  # bumped on every reschedule: older heap items are stale
    gone: bool = False


class Shipping:
    """For a node (``config``: ``geo``, ``dc``, ``proxy``, ``resend_after_s``,
    ``max_ship_resend_s``, ``proxy_silence_s``; ``counters``: the node's stats counters,
    shared)."""

    def __init__(self, config: NodeConfig, counters: collections.Counter, store: Store,
                 now: float) -> None:
        self.config = config
        self.counters = counters
        self.store = store
        self.pending: dict[tuple, _Pending] = {}  # (key, version) -> what must be logged
        self._due: list = []  # (next_at, n, turn, _Pending)
        self._pushed = 0
        self._global_stable: dict[int, int] = {}  # dc -> its log is applied everywhere to here
        self._heard_at = now  # the proxy last spoke (assumed alive at start)
        self._live_since = float("-inf")
        self._probe_at = float("-inf")

    # -- what needs logging ----------------------------------------------------------------

    def needs_log(self, record: Record) -> bool:
        """A local write our proxy has not logged yet, as far as we know (several DCs)."""
        return self.config.geo and record.seq == 0 and record.version.dc == self.config.dc

    def at_tail(self, record: Record) -> Record:
        """What the tail stores: stable (DC-Write-Stable, whether logged or not)."""
        return record if record.stable else attrs.evolve(record, stable=True)

    def client_stable(self, record: Record) -> bool:
        """Stable as clients mean it: Global-Write-Stable (DC stable with one DC)."""
        if not self.config.geo:
            return record.stable
        return (record.stable and record.seq > 0
                and record.seq <= self._global_stable.get(record.version.dc, 0))

    def load(self, now: float) -> None:
        """After a restart: what the store holds that still needs logging."""
        if not self.config.geo:
            return
        for key, record in self.store.items():
            if record.stable and self.needs_log(record):
                self._track(key, record, False, now, now + self.config.resend_after_s)
        for key, record in self.store.unlogged():
            self._track(key, record, True, now, now + self.config.resend_after_s)

    def stable(self, key: str, record: Record, tail: bool, now: float) -> list:
        """``record`` (current) is stable here: track it until logged; the tail ships it."""
        if not self.needs_log(record):
            return []
        entry = self.pending.get((key, record.version))
        if entry is not None and not entry.kept:
            entry.record = record  # (it may carry more now: an Update merged into it)
            if not tail:
                return []
        else:
            entry = self._track(key, record, False, now,
                                now + self.config.resend_after_s)
        if tail and self.live(now):
            return [self._send(entry, now)]
        return []

    def replacing(self, key: str, current: Record | None, record: Record,
                  now: float) -> tuple[Record, list]:
        """``record`` replaces ``current`` here: it takes over what an unlogged
        ``current`` carried, and an unlogged local ``current`` is kept until logged (see
        the theory above; an overtaken one leaves at once). Returns what to store and
        what to send."""
        if not self.config.geo or current is None or record.version <= current.version:
            return record, []
        if (current.deps or current.past) and (record.version.dc != self.config.dc
                                               or record.seq == 0):
            record = attrs.evolve(record,
                                  deps=merge_local_deps(record.deps, current.deps),
                                  past=max(record.past, current.past))
        if not self.needs_log(current):
            return record, []
        self.counters["unlogged_kept"] += 1
        self.store.put_unlogged(key, current)
        entry = self.pending.get((key, current.version))
        if entry is None:
            entry = self._track(key, current, True, now, now + self.config.resend_after_s)
        entry.kept = True
        entry.record = current
        if record.version.dc != self.config.dc and self.live(now):
            # Overtaken by another DC's write: the tail may never have had it.
            self.counters["ship_overtaken"] += 1
            return record, [self._send(entry, now)]
        return record, []

    def oldest_pending(self, bound: int) -> int:
        """The smallest stamp of what we must see logged, or ``bound`` if none is lower."""
        for entry in self.pending.values():
            if entry.record.version.clock < bound:
                bound = entry.record.version.clock
        return bound

    def logged(self, key: str, version: Version) -> bool:
        """The proxy logged ``version`` of ``key`` (or subsumed it under a newer one):
        nothing more to ship for it. Whether we tracked it."""
        entry = self.pending.pop((key, version), None)
        if entry is None:
            return False
        entry.gone = True
        if entry.kept:
            self.store.forget_unlogged(key, version)
        return True

    # -- the proxy ----------------------------------------------------------------------------

    def live(self, now: float) -> bool:
        return now - self._heard_at < self.config.proxy_silence_s

    def heard(self, now: float) -> None:
        """The proxy spoke (``GeoProgress``, ``Shipped``). After a silence, everything
        pending is due again."""
        if not self.live(now):
            self.counters["proxy_back"] += 1
            self._live_since = now
            self._due = []
            for entry in self.pending.values():
                entry.interval = self.config.resend_after_s
                self._schedule(entry, now)
        self._heard_at = now

    def on_progress(self, msg: m.GeoProgress, now: float) -> None:
        self._global_stable = dict(msg.global_stable)
        self.heard(now)

    def redrive(self, now: float, ring: Ring | None, name: str, force: bool) -> list:
        """Ship what is due: the tail what it tracks, other nodes only what stayed unlogged
        a while (see above); one probe per round while the proxy is silent. ``force``: a
        new ring, what we are now tail of leaves at once."""
        if not self.pending or ring is None or not ring.serving:
            return []
        cfg = self.config
        live = self.live(now)
        # Out of the ring (removed, drained, marked down while alive) no chain has us: no
        # tail's ``Stable`` will bring a position and no ``GeoProgress`` keeps the proxy
        # live, so each answer to a probe would open a new wait of max_ship_resend_s, one
        # write drained per wait (fuzz seed 7760021). Only the proxy can tell: ship it all.
        member = name in ring
        if force and live:
            for entry in list(self.pending.values()):
                if entry.next_at > now and self._is_tail(entry.key, ring, name):
                    self._schedule(entry, now)
        out: list = []
        while self._due and self._due[0][0] <= now and len(out) < cfg.max_ships_per_tick:
            _at, _n, turn, entry = self._due[0]
            if turn != entry.turn or entry.gone:
                heapq.heappop(self._due)
                continue
            if not live:
                if now >= self._probe_at:  # is it back? (its answer says so)
                    self._probe_at = now + cfg.resend_after_s
                    self.counters["ship_probe"] += 1
                    out.append(self._send(entry, now))
                break
            heapq.heappop(self._due)
            if member and (entry.kept or not self._is_tail(entry.key, ring, name)):
                wait = cfg.resend_after_s if entry.kept else cfg.max_ship_resend_s
                start = max(entry.since, self._live_since) + wait
                if now < start:
                    self._schedule(entry, start)
                    continue
            self.counters["ship_resent"] += 1
            out.append(self._send(entry, now))
        return out

    # -- helpers ------------------------------------------------------------------------------

    def _track(self, key: str, record: Record, kept: bool, now: float,
               next_at: float) -> _Pending:
        entry = _Pending(key, record, kept, now, self.config.resend_after_s)
        old = self.pending.get((key, record.version))
        if old is not None:
            old.gone = True
        self.pending[(key, record.version)] = entry
        self._schedule(entry, next_at)
        return entry

    def _schedule(self, entry: _Pending, at: float) -> None:
        entry.turn += 1
        entry.next_at = at
        self._pushed += 1
        heapq.heappush(self._due, (at, self._pushed, entry.turn, entry))

    def _send(self, entry: _Pending, now: float) -> Send:
        """Ship ``entry`` and plan its next resend (doubling the wait)."""
        self._schedule(entry, now + entry.interval)
        entry.interval = min(2 * entry.interval, self.config.max_ship_resend_s)
        self.counters["ship_sent"] += 1
        rec = entry.record
        return Send(self.config.proxy, m.Ship(entry.key, rec.version, rec.value, rec.rid,
                                              rec.vclock, rec.deps, rec.past))

    @staticmethod
    def _is_tail(key: str, ring: Ring, name: str) -> bool:
        chain = ring.chain(key)
        return bool(chain) and chain[-1] == name
