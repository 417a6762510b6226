"""The origin side of a remote proxy: this DC's shipping log and its batches to every
peer DC (sans-IO; the theory of operation is in ``core.py``). Owned by ``ProxyCore``;
apart from the receiving side, of which it needs only the ``needs`` of each entry (the
proxy passes them in, with the log time from its clock).

The proxy logs a local write once what it depends on in this DC is logged (``core.py``);
``append`` logs it, durably, and gives its position. Each entry carries what a receiver
must have applied of this DC's log first (``core.py``): ``waits``, the positions of its
dependencies (``logged_between``: the first version of the key logged at or after the one it
depends on), and ``after``, a prefix (the session's ``past``). Only those: writes with
unrelated pasts apply in parallel at the receivers, and one session's slow write holds up
only what depends on it. ("Everything logged before the write's clock" made a receiver
apply one origin's writes one chain round trip after another; a prefix up to the
dependencies still tied every session of an origin to the slowest.) ``needs`` comes from
the receiver side, which knows how far other DCs' logs were started here.

``ship`` sends the log to every peer in order (``ShipBatch``: up to ``max_batch_entries``
entries or ``max_batch_bytes``; at most one batch per ``batch_interval_s`` per peer, so a
write on an idle link leaves at once and one on a busy link waits at most that interval).
Flow control is a window, as in TCP: at most ``window_entries`` beyond what the peer has
*applied*, so a peer that applies slowly slows the sender instead of being flooded, and
its memory stays bounded however far it falls behind (the rest waits in our log, on
disk). Nothing is dropped and resent for being too much: a resend happens only when the
peer acknowledged nothing new for ``resend_after_s`` (the link was down, a batch lost,
the peer restarted), from its acknowledged position, with the timeout doubling up to
``max_resend_after_s`` while nothing moves. ``truncate`` drops what every DC has applied.

The proxy keeps its timers: ``next_due`` says when the ``ship`` timer should next fire.
In memory: the newest ``max_cached_entries`` entries (older ones are re-read from the
log), per key the newest position in the log not truncated (a repeated ``Ship`` keeps
its position), and per key the versions not truncated with their positions.
"""

from __future__ import annotations

import bisect
import collections
from typing import TYPE_CHECKING

import attrs

from chainreaction import messages as m
from chainreaction.effects import Send
from chainreaction.versions import Version

from .log import LoggedWrite, ProxyLog

if TYPE_CHECKING:  # (core.py imports this module)
    from .core import ProxyConfig


@attrs.define(slots=True)
class Peer:
    """The link to one peer DC's proxy, as the shipper sees it."""

    name: str
    sent: int = 0  # last seq sent
    acked: int = 0  # last contiguous seq it received
    applied: int = 0  # last seq it applied (its ShipAck's applied vector, our DC)
    acked_at: float = 0.0  # when ``acked`` last moved (or shipping resumed)
    resend_after_s: float = 0.0  # the resend timeout now (doubles while nothing moves)
    entries_sent: int = 0


class Shipper:
    """This DC's log and its shipping (``config``: ``dc``, ``peers``, ``batch_*``,
    ``max_batch_*``, ``window_entries``, ``*resend_after_s``, ``max_cached_entries``;
    ``counters``: the proxy's stats counters, shared)."""

    def __init__(self, log: ProxyLog, config: ProxyConfig,
                 counters: collections.Counter) -> None:
        self.log = log
        self.config = config
        self.counters = counters
        self.peers = {dc: Peer(name) for dc, name in config.peers}
        self._next_seq = log.last_seq() + 1
        self._cache: collections.OrderedDict[int, LoggedWrite] = collections.OrderedDict()
        self._index: dict[str, tuple] = {}  # key -> (version, seq, logged_at), recent log
        self._last_logged_at = 0  # the newest entry's log time (0: none retained)
        # key -> _KeyPositions of its retained versions; keys of retained seqs, in order
        self._positions: dict[str, _KeyPositions] = {}
        self._keys_in_order: collections.deque[str] = collections.deque()
        self._first_seq = log.first_seq() or self._next_seq
        for write in log.read(self._first_seq, self._next_seq - 1):
            self._retain(write)
        # peer dc -> when its next batch may leave (unsent entries only); one batch per
        # batch_interval_s per peer, the first after an idle spell at once
        self._due_at: dict[int, float] = {}
        self._last_batch_at: dict[int, float] = {}
        for peer in self.peers.values():  # what was truncated, every DC had applied
            peer.sent = peer.acked = peer.applied = self._first_seq - 1
            peer.resend_after_s = config.resend_after_s

    @property
    def last_logged(self) -> int:
        return self._next_seq - 1

    @property
    def retained(self) -> int:
        """How many entries the log holds (not truncated yet)."""
        return self.last_logged - self._first_seq + 1

    @property
    def last_logged_at(self) -> int:
        """The log time of the newest entry retained (0: none); a restarted proxy's clock
        moves past it."""
        return self._last_logged_at

    def next_due(self) -> float | None:
        """When the earliest batch is due (the proxy's ``ship`` timer), if any is."""
        return min(self._due_at.values()) if self._due_at else None

    # -- the log ------------------------------------------------------------------------------

    def find(self, key: str, version: Version) -> tuple[int, int] | None:
        """``(seq, logged_at)`` if ``version`` of ``key``, or a newer one, is in the recent
        log: a repeated ``Ship`` keeps its position."""
        known = self._index.get(key)
        if known is not None and known[0] >= version:
            return known[1], known[2]
        return None

    def newest_retained(self):
        """``(key, version, seq)`` of the newest version of each key the log retains."""
        return ((key, version, seq) for key, (version, seq, _at) in self._index.items())

    def logged_between(self, key: str, low: int, high: int) -> list:
        """The positions of every version of ``key`` logged from the first with a clock of
        at least ``low`` to the first with one of at least ``high`` (those retained)."""
        positions = self._positions.get(key)
        return [] if positions is None else positions.between(low, high)

    def append(self, msg: m.Ship, logged_at: int, needs: tuple, now: float,
               after: int = 0, waits: tuple = ()) -> int:
        """Log a local write at log time ``logged_at`` (the proxy's clock), after prefix
        ``after`` and positions ``waits`` (its dependencies), and make its batches due;
        its position."""
        seq = self._next_seq
        assert after < seq and all(0 < w < seq for w in waits), (after, waits, seq)
        entry = m.ShipEntry(msg.key, msg.version, msg.value, msg.rid, msg.vclock, after, needs,
                            waits)
        write = LoggedWrite(seq, entry, logged_at)
        # Log times strictly increase along the log (a restarted proxy's clock moves past
        # the last one retained).
        assert logged_at > self._last_logged_at, (logged_at, self._last_logged_at)
        self.log.append(write, seen_dc=self.config.dc)  # (the newest of its key: see core)
        self._next_seq += 1
        assert self.log.last_seq() == seq == self.last_logged
        self._retain(write)
        for dc in self.peers:
            if dc not in self._due_at:
                self._due_at[dc] = self._next_batch_at(dc, now)
        return seq

    def truncate(self, upto: int) -> None:
        """Every DC has applied our log up to ``upto``: drop it."""
        if upto < self._first_seq:
            return
        self.log.truncate(upto)
        for seq in range(self._first_seq, upto + 1):
            key = self._keys_in_order.popleft()
            positions = self._positions[key]
            positions.drop_first(seq)
            if not positions:
                del self._positions[key]
            write = self._cache.pop(seq, None)
            if write is not None:
                known = self._index.get(write.entry.key)
                if known is not None and known[1] == seq:
                    del self._index[write.entry.key]
        self._first_seq = upto + 1

    def _retain(self, write: LoggedWrite) -> None:
        self._cache[write.seq] = write
        if len(self._cache) > self.config.max_cached_entries:
            self._cache.popitem(last=False)
        self._index[write.entry.key] = (write.entry.version, write.seq, write.logged_at)
        self._last_logged_at = write.logged_at
        key = write.entry.key
        positions = self._positions.get(key)
        if positions is None:
            positions = self._positions[key] = _KeyPositions()
        positions.append(write.entry.version.clock, write.seq)
        self._keys_in_order.append(key)

    def _write_at(self, seq: int) -> LoggedWrite | None:
        write = self._cache.get(seq)
        if write is None:
            write = next(iter(self.log.read(seq, seq)), None)
            self.counters["log_reread"] += 1
        return write

    # -- shipping -----------------------------------------------------------------------------

    def ship(self, now: float) -> list:
        """The batches due now, within each peer's window, and resends to peers that
        acknowledged nothing new for their resend timeout."""
        out: list = []
        cfg = self.config
        for dc, peer in self.peers.items():
            if peer.sent > peer.acked and now - peer.acked_at >= peer.resend_after_s:
                # No progress: the link was down, a batch lost or the peer restarted. Send
                # again what it has not acknowledged, and wait longer before the next time.
                self.counters["resend_from_ack"] += 1
                self.counters["entries_resent"] += peer.sent - peer.acked
                peer.sent = peer.acked
                peer.acked_at = now
                peer.resend_after_s = min(2 * peer.resend_after_s, cfg.max_resend_after_s)
                self._due_at[dc] = float("-inf")  # overdue: send at once
            pending = self.last_logged - peer.sent
            if pending <= 0:
                self._due_at.pop(dc, None)
                continue
            due = self._due_at.setdefault(dc, self._next_batch_at(dc, now))
            if pending < cfg.max_batch_entries and now < due:
                continue
            # The window: at most ``window_entries`` beyond what the peer has applied, so
            # its inbox stays bounded however far it falls behind, and nothing is sent
            # that it would have to drop.
            while peer.sent < self.last_logged and peer.sent - peer.applied < cfg.window_entries:
                batch = self._batch(peer.sent + 1, peer.applied + cfg.window_entries)
                if batch is None:
                    break
                if peer.sent == peer.acked:
                    peer.acked_at = now  # resend timer starts with the first unacked batch
                out.append(Send(peer.name, batch))
                self._last_batch_at[dc] = now
                peer.sent = batch.first_seq + len(batch.entries) - 1
                peer.entries_sent += len(batch.entries)
                self.counters["batches_sent"] += 1
                self.counters["entries_sent"] += len(batch.entries)
            if peer.sent >= self.last_logged:
                self._due_at.pop(dc, None)
            elif peer.sent - peer.applied >= cfg.window_entries:
                self._due_at.pop(dc, None)  # the window is full: the peer's ack reopens it
                self.counters["window_full"] += 1
            else:
                self._due_at[dc] = now + cfg.batch_interval_s
            assert peer.acked <= peer.sent <= self.last_logged, (dc, peer, self.last_logged)
        return out

    def on_ack(self, dc: int, received: int, applied: int, now: float) -> None:
        """Peer ``dc`` has received our log up to ``received`` and applied it up to
        ``applied`` (``ShipAck``)."""
        peer = self.peers[dc]
        if received != peer.acked:
            peer.acked_at = now
            peer.resend_after_s = self.config.resend_after_s
        if received < peer.acked:
            # The peer restarted and lost what it had not applied: ship it again.
            self.counters["peer_rewound"] += 1
            peer.sent = min(peer.sent, received)
        peer.acked = received
        peer.applied = min(applied, received)
        peer.sent = max(peer.sent, peer.acked)
        if peer.sent < self.last_logged and dc not in self._due_at \
                and peer.sent - peer.applied < self.config.window_entries:
            self._due_at[dc] = self._next_batch_at(dc, now)  # the window opened

    def _next_batch_at(self, dc: int, now: float) -> float:
        return max(now, self._last_batch_at.get(dc, float("-inf"))
                   + self.config.batch_interval_s)

    def _batch(self, first: int, last: int) -> m.ShipBatch | None:
        entries, size, needs = [], 0, None
        batch_needs = ()
        for seq in range(first, min(last, self.last_logged) + 1):
            write = self._write_at(seq)
            if write is None:  # truncated: every DC applied it (a stale resend)
                return None
            entry = write.entry
            if needs is None:
                batch_needs = entry.needs
            elif entry.needs == needs:
                entry = attrs.evolve(entry, needs=())
            needs = write.entry.needs
            entries.append(entry)
            size += len(entry.key) + len(entry.value or b"") + 64
            if len(entries) >= self.config.max_batch_entries or size >= self.config.max_batch_bytes:
                break
        if not entries:
            return None
        return m.ShipBatch(self.config.dc, first, batch_needs, tuple(entries))


class _KeyPositions:
    """One key's retained versions in the log: (clock, seq), both increasing (a key's
    versions are logged in version order, never twice), dropped from the front as the log
    is truncated; found by bisection."""

    __slots__ = ("_clocks", "_seqs", "_start")

    def __init__(self) -> None:
        self._clocks: list[int] = []
        self._seqs: list[int] = []
        self._start = 0

    def __len__(self) -> int:
        return len(self._seqs) - self._start

    def append(self, clock: int, seq: int) -> None:
        assert not self or (clock > self._clocks[-1] and seq > self._seqs[-1])
        self._clocks.append(clock)
        self._seqs.append(seq)

    def drop_first(self, seq: int) -> None:
        assert self._seqs[self._start] == seq, (self._seqs[self._start], seq)
        self._start += 1
        if self._start > 32 and self._start * 2 > len(self._seqs):  # amortized O(1)
            del self._clocks[:self._start], self._seqs[:self._start]
            self._start = 0

    def between(self, low: int, high: int) -> list:
        """The positions from the first at or after ``low`` to the first at or after
        ``high``, inclusive."""
        i = bisect.bisect_left(self._clocks, low, self._start)
        j = bisect.bisect_left(self._clocks, high, self._start)
        return self._seqs[i:min(j + 1, len(self._seqs))]

    def first_at_or_after(self, clock: int) -> int:
        i = bisect.bisect_left(self._clocks, clock, self._start)
        return self._seqs[i] if i < len(self._seqs) else 0

