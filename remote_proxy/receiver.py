"""The receiving side of a remote proxy: applying other DCs' log entries here, each once
its causal past is applied (sans-IO; the theory of operation is in ``core.py``). Owned
by ``ProxyCore``; apart from the shipping side, of whose log it needs only the length
(``logged``). The proxy checks that a batch comes from the peer's proxy, keeps the ring
(``on_new_ring``) and hears (``on_applied``) whenever a DC's applied prefix grows.

An entry arrives in its origin's order (``on_batch``) and waits until the origin's log is
applied here up to its ``after`` and every other DC's up to its ``needs`` (our own: what
we have logged, ``logged``); then it is sent to the key's head with its own version
(``Put``), and it is applied once the key's tail holds it, or a newer version, stable:
the tail's ``StableNotice``, or its answer to a ``DepCheck`` when the head held a newer
version or the notice did not come. What is applied, and how far each DC's log was
started (the ``needs`` of the writes this DC logs), survive a restart in the log's meta.
"""

from __future__ import annotations

import collections
import heapq
from typing import TYPE_CHECKING, Callable

import attrs

from chainreaction import messages as m
from chainreaction.effects import Send
from chainreaction.latency import LatencyRecorder
from chainreaction.ring import Ring
from chainreaction.ring_requests import RingRequests
from chainreaction.versions import HybridClock

from .log import ProxyLog

if TYPE_CHECKING:  # (core.py imports this module)
    from .core import ProxyConfig


# phases of an incoming entry: causal past not applied yet; sent to the head; at the head,
# waiting for the tail's StableNotice; asking the tail (DepCheck); applied
_WAITING, _PUTTING, _STABILIZING, _CHECKING, _DONE = range(5)
# meta: our clock when the applied prefix last grew (past the applied_at of all of it)
APPLIED_CLOCK = "applied_clock"


@attrs.define(slots=True)
class _Incoming:
    origin: int
    seq: int
    entry: m.ShipEntry
    needs: tuple
    phase: int = _WAITING
    op: int = 0
    sent_at: float = 0.0
    retry_at: float | None = None
    turn: int = 0  # bumped whenever its deadline changes: older heap items are stale


class _Due:
    """Deadlines in a heap with lazy deletion: an item counts only while its entry's
    ``turn`` is the one it was pushed with, so rescheduling is a push, never a search."""

    def __init__(self) -> None:
        self._heap: list = []
        self._pushed = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, at: float, inc: _Incoming) -> None:
        inc.turn += 1
        self._pushed += 1
        heapq.heappush(self._heap, (at, self._pushed, inc.turn, inc))

    def pop_due(self, now: float):
        """The entries whose deadline has come, each once, earliest first."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _at, _n, turn, inc = heapq.heappop(heap)
            if turn == inc.turn:
                yield inc


class Receiver:
    """Other DCs' logs, applied here (``config``: ``dc``, ``peers``, ``manager``,
    ``node_timeout_s``, ``retry_delay_s``; ``counters``: the proxy's stats counters,
    shared; ``logged()``: how far our own log goes; ``on_applied(now)``: the effects of a
    DC's applied prefix growing)."""

    def __init__(self, log: ProxyLog, config: ProxyConfig, counters: collections.Counter,
                 now: float, logged: Callable[[], int],
                 on_applied: Callable[[float], list], clock: HybridClock) -> None:
        self.log = log
        self.clock = clock  # the proxy's
        self.config = config
        self.counters = counters
        self._logged = logged
        self._on_applied = on_applied
        self.ring: Ring | None = None
        self._ring_requests = RingRequests(config.manager)
        self._next_op = int(now * 1_000_000) % 2**62 + 1
        self.origins = [dc for dc, _name in config.peers]  # the other DCs
        # per origin: how far its log is applied here; how far we started applying it
        # (sent to the head: readable here); the last contiguous seq received
        self.applied: dict[int, int] = {
            dc: log.get_meta(f"applied:{dc}", 0) for dc in self.origins}
        self.started: dict[int, int] = {
            dc: log.get_meta(f"started:{dc}", 0) for dc in self.origins}
        clock.observe(log.get_meta(APPLIED_CLOCK, 0))
        self._started_saved = dict(self.started)
        self.received = dict(self.applied)
        self.inbox: dict[int, collections.OrderedDict] = {
            dc: collections.OrderedDict() for dc in self.origins}
        # The inbox entries not started yet, each in one place: blocked on the first DC
        # whose log is not applied far enough here (a heap per DC by the position it
        # needs, so an applied prefix that grows wakes only the entries it unblocks), or
        # on one entry of its ``waits`` not applied yet (woken when that one is), or
        # ready (its causal past is applied) and waiting for room among ``max_applying``.
        self._blocked: dict[int, list] = {dc: [] for dc in (*self.origins, config.dc)}
        self._waiting_on: dict[tuple, list] = {}  # (origin, seq) -> entries waiting for it
        self._ready: collections.deque[_Incoming] = collections.deque()
        self._applying = 0  # entries started and not applied yet
        self._due = _Due()  # when each entry at a node should hear back (or retry)
        self._ops: dict[int, _Incoming] = {}
        self._at_head: dict[tuple, _Incoming] = {}  # (key, version) -> entry sent to the head
        self.reset_latencies()

    def reset_latencies(self) -> None:
        """Stages of remote visibility, per origin DC, from a write's version clock there:
        its batch arrived here (``arrived``); applied at our head, i.e. first readable here
        (``first_visible``); stable at our tail, i.e. readable at every replica here
        (``visibility``)."""
        def per_origin():
            return {dc: LatencyRecorder(max_samples=200_000) for dc in self.origins}
        self.arrived, self.first_visible, self.visibility = (
            per_origin(), per_origin(), per_origin())

    @property
    def epoch(self) -> int:
        return self.ring.epoch if self.ring is not None else 0

    def waiting(self) -> int:
        """Entries received and not started yet (their causal past is not applied here,
        or ``max_applying`` entries are on their way already)."""
        return (sum(len(heap) for heap in self._blocked.values()) + len(self._ready)
                + sum(len(w) for w in self._waiting_on.values()))

    def blocked_by_dc(self) -> dict[str, int]:
        """Entries waiting until a DC's log is applied further here, per DC (our own:
        until our log is that long), and until one entry of their origin (``waits``)."""
        out = {str(dc): len(heap) for dc, heap in sorted(self._blocked.items()) if heap}
        entries = sum(len(w) for w in self._waiting_on.values())
        return {**out, "entry": entries} if entries else out

    def in_flight(self) -> int:
        """Entries received and not applied yet."""
        return sum(len(box) for box in self.inbox.values())

    def needs(self) -> tuple:
        """What a write logged here now must find applied in another DC before it is
        applied there: how far we started applying each DC's log."""
        return tuple(sorted((dc, n) for dc, n in self.started.items() if n))

    def on_new_ring(self, ring: Ring, now: float) -> list:
        """The proxy's ring changed (it keeps it; entries go to its chains)."""
        self.ring = ring
        return self.pump(now)

    def on_batch(self, msg: m.ShipBatch, now: float) -> list:
        """Entries of another DC's log (its proxy's, checked by ours), in order."""
        origin = msg.origin_dc
        self.counters["batches_received"] += 1
        box = self.inbox[origin]
        needs = msg.needs
        applied = self._applied_vector()
        out: list = []
        for i, entry in enumerate(msg.entries):
            seq = msg.first_seq + i
            if entry.needs:
                needs = entry.needs
            if seq <= self.received[origin]:
                continue  # a resend of what we have
            if seq != self.received[origin] + 1:
                self.counters["batch_gap"] += 1  # an earlier batch was lost: ack asks again
                break
            self.received[origin] = seq
            box[seq] = inc = _Incoming(origin, seq, entry, needs)
            self._wait(inc, applied)
            known = self.log.seen(origin, entry.key)
            if known is None or known[0] < entry.version:
                self.log.put_seen(origin, entry.key, entry.version, seq)
            self.counters["entries_received"] += 1
            self.arrived[origin].record(max(0.0, now - entry.version.clock / 1e6))
        out += self.pump(now)
        return out

    def pump(self, now: float) -> list:
        """Start the entries whose causal past is applied here, as far as ``max_applying``
        allows. Each entry is looked at once when it arrives and once more per DC it
        waited for: the work is linear in the entries, whatever their order."""
        applied = self._applied_vector()
        for dc, heap in list(self._blocked.items()):
            reached = applied.get(dc, 0)
            while heap and heap[0][0] <= reached:
                self._wait(heapq.heappop(heap)[-1], applied)
        if self.ring is None or not self.ring.serving:
            return self.want_ring(now) if any(self.inbox.values()) else []
        out: list = []
        while self._ready and self._applying < self.config.max_applying:
            out += self._start(self._ready.popleft(), now)
        return out

    def on_logged(self, now: float) -> list:
        """Our own log grew: start what waited for it (``needs`` of our DC)."""
        heap = self._blocked[self.config.dc]
        return self.pump(now) if heap and heap[0][0] <= self._logged() else []

    def _applied_vector(self) -> dict[int, int]:
        return {**self.applied, self.config.dc: self._logged()}

    def _wait(self, inc: _Incoming, applied: dict) -> None:
        """File ``inc`` under the first DC whose log it needs further applied here, or as
        ready."""
        self.counters["apply_wait_checks"] += 1  # the work of ordering (transcript tests)
        blocker = None
        origin = inc.origin
        if applied[origin] < inc.entry.after:
            blocker = (origin, inc.entry.after)
        else:
            box = self.inbox[origin]
            for seq in inc.entry.waits:
                if seq > applied[origin] and box[seq].phase != _DONE:
                    self._waiting_on.setdefault((origin, seq), []).append(inc)
                    return
            for dc, n in inc.needs:
                if dc != inc.origin and applied.get(dc, 0) < n:
                    blocker = (dc, n)
                    break
        if blocker is None:
            self._ready.append(inc)
        else:
            dc, n = blocker
            heapq.heappush(self._blocked.setdefault(dc, []), (n, inc.origin, inc.seq, inc))

    def _start(self, inc: _Incoming, now: float) -> list:
        if inc.seq > self._started_saved[inc.origin]:
            # Persist (ahead of need) how far we started: after a restart, ``needs`` of
            # the writes we log must still cover what clients could have read here.
            self._started_saved[inc.origin] = self.received[inc.origin]
            self.log.put_meta(f"started:{inc.origin}", self.received[inc.origin])
        self.started[inc.origin] = max(self.started[inc.origin], inc.seq)
        self._applying += 1
        return self._send_put(inc, now)

    def _send_put(self, inc: _Incoming, now: float) -> list:
        e = inc.entry
        inc.phase, inc.op, inc.sent_at, inc.retry_at = _PUTTING, self._new_op(), now, None
        self._ops[inc.op] = inc
        self._due.push(now + self.config.node_timeout_s, inc)
        self._at_head[e.key, e.version] = inc
        chain = self.ring.chain(e.key)
        if not chain:
            return self._no_chain(now)
        # (floor: our clock, past the applied_at of everything applied here before it)
        return [Send(chain[0], m.Put(inc.op, e.rid, e.key, e.value, self.clock.last,
                                     self.epoch, e.version, e.vclock, inc.seq))]

    def _send_check(self, inc: _Incoming, now: float) -> list:
        e = inc.entry
        self._ops.pop(inc.op, None)
        inc.phase, inc.op, inc.sent_at, inc.retry_at = _CHECKING, self._new_op(), now, None
        self._ops[inc.op] = inc
        self._due.push(now + self.config.node_timeout_s, inc)
        chain = self.ring.chain(e.key)
        if not chain:
            return self._no_chain(now)
        return [Send(chain[-1], m.DepCheck(inc.op, e.key, e.version, self.epoch))]

    def _no_chain(self, now: float) -> list:
        """The ring we hold has no node for the key (every node of the DC left it, fuzz
        seed 7510945: two killed, the third stopped): nothing to send to. The entry is due
        again after ``node_timeout_s``; ``retry`` sends it once a ring serves."""
        self.counters["apply_without_chain"] += 1
        return self.want_ring(now)

    def on_put_ack(self, src: str, msg: m.PutAck, now: float) -> list:
        inc = self._ops.get(msg.op)
        if inc is None or inc.phase != _PUTTING:
            self.counters["stale_reply"] += 1
            return []
        self.first_visible[inc.origin].record(max(0.0, now - inc.entry.version.clock / 1e6))
        if msg.chain_index == 0:
            # The head held this version or a newer one already: no notice will come.
            return self._send_check(inc, now)
        inc.phase, inc.sent_at = _STABILIZING, now
        self._due.push(now + self.config.node_timeout_s, inc)
        return []

    def on_stable_notice(self, src: str, msg: m.StableNotice, now: float) -> list:
        self.clock.observe(msg.clock)
        inc = self._at_head.get((msg.key, msg.version))
        if inc is None or inc.phase == _DONE:
            self.counters["stable_notice_unmatched"] += 1
            return []
        if inc.phase == _PUTTING:  # the notice overtook the head's ack
            self.first_visible[inc.origin].record(max(0.0, now - inc.entry.version.clock / 1e6))
        return self._applied_here(inc, now)

    def on_dep_reply(self, src: str, msg: m.DepReply, now: float) -> list:
        inc = self._ops.get(msg.op)
        if inc is None or inc.phase != _CHECKING:
            self.counters["stale_reply"] += 1
            return []
        if not msg.ok:
            # The tail waited its bound without that version or a newer one: the chain may
            # have lost it (a head that took it, then died and came back without it). Put it
            # again: a head holding it or newer says so (chain_index 0) and we check again.
            self.counters["apply_check_retry"] += 1
            return self._send_put(inc, now)
        self.clock.observe(msg.clock)
        return self._applied_here(inc, now)

    def _applied_here(self, inc: _Incoming, now: float) -> list:
        """``inc`` is DC-Write-Stable here (or superseded by a newer stable version)."""
        self._ops.pop(inc.op, None)
        self._at_head.pop((inc.entry.key, inc.entry.version), None)
        inc.phase = _DONE
        inc.turn += 1  # no deadline any more
        self._applying -= 1
        self.visibility[inc.origin].record(max(0.0, now - inc.entry.version.clock / 1e6))
        self.counters["entries_applied"] += 1
        waiting = self._waiting_on.pop((inc.origin, inc.seq), None)
        if waiting:
            applied = self._applied_vector()
            for other in waiting:
                self._wait(other, applied)
        out = self._advance(inc.origin, now)
        if self._ready:  # room for one more among max_applying
            out += self.pump(now)
        return out

    def on_error(self, src: str, msg: m.Error, now: float) -> list:
        inc = self._ops.pop(msg.op, None)
        self.counters["node_error_" + msg.code] += 1
        if inc is None:
            return []
        out: list = []
        if msg.code in (m.WRONG_EPOCH, m.NOT_HEAD, m.NOT_TAIL, m.NOT_IN_CHAIN):
            if self.ring is None or msg.epoch > self.ring.epoch:
                out += self.want_ring(now)
        # Retry the phase from its start shortly (a Put is idempotent by version).
        inc.retry_at = now + self.config.retry_delay_s
        self._due.push(inc.retry_at, inc)
        return out

    def retry(self, now: float) -> list:
        """Entries whose node did not answer in ``node_timeout_s``, or whose retry is due
        (a deadline heap: the work is in the entries due, not in all those on their way)."""
        if self.ring is None or not self.ring.serving:
            return []
        out: list = []
        for inc in self._due.pop_due(now):
            self.counters["apply_deadline_checks"] += 1
            assert inc.phase in (_PUTTING, _STABILIZING, _CHECKING), inc
            self.counters["stable_notice_missed" if inc.phase == _STABILIZING
                          else "apply_resent"] += 1
            self._ops.pop(inc.op, None)
            out += self._send_check(inc, now) if inc.phase == _STABILIZING else \
                self._send_put(inc, now)
        return out

    def _advance(self, origin: int, now: float) -> list:
        box = self.inbox[origin]
        before = self.applied[origin]
        while box:
            seq, inc = next(iter(box.items()))
            if inc.phase != _DONE:
                break
            del box[seq]
            self.applied[origin] = seq
        if self.applied[origin] == before:
            return []
        assert self.applied[origin] > before  # the applied prefix only grows
        self.log.put_meta(f"applied:{origin}", self.applied[origin])
        # (past the applied_at of all of it: after a restart, our Puts' floors still are)
        self.log.put_meta(APPLIED_CLOCK, self.clock.last)
        out = self.pump(now)
        out += self._on_applied(now)
        return out

    def _new_op(self) -> int:
        self._next_op += 1
        return self._next_op

    def want_ring(self, now: float) -> list:
        return self._ring_requests.ask(self.epoch, now)
