"""Remote proxy: sans-IO core of the cross-DC shipper (DESIGN.md "Several datacenters").

Theory of operation
-------------------
Each DC runs one proxy. It plays two parts.

**Origin (shipping this DC's writes).** A chain's tail sends every local write it holds
to the proxy (``Ship``) before it calls it DC-Write-Stable; the proxy appends it to its
durable log and answers with the log position (``Shipped``). So the log order respects
causality inside the DC: whatever a write waited for (a dependency check waits for
stability) was logged before the write was even made. The proxy ships the log to every
peer DC in order (``ShipBatch``: up to ``max_batch_entries`` entries or
``max_batch_bytes``; at most one batch per ``batch_interval_s`` per peer, so a write on an
idle link leaves at once and one on a busy link waits at most that interval), keeps it
until every DC has applied it, and resends from the peer's acknowledged position when a
link was down or the peer restarted (``resend_after_s`` without progress).

Each entry carries what the receiver must have applied first:

* ``after``: a position in this DC's log. Versions come from hybrid clocks, and a write
  that waited for a dependency got a version above that dependency's log time (the
  dependency answer carries the clock, the frontend raises the put's floor). So every
  local write in the causal past of write *w* was logged before ``w.version.clock``:
  ``after`` = the last position logged before that time. Writes with unrelated pasts
  apply in parallel; no dependency lists cross the WAN.
* ``needs[dc]``: for each other DC, how far this proxy had *started* applying that DC's
  log when it logged the write; anything a client here could have read before writing is
  covered. (Started, not finished: a version is readable here once sent to the head.)

**Receiver (applying other DCs' writes).** Entries arrive in order per origin. An entry is
applied when the origin's log is applied here up to ``after`` and every other DC's up to
``needs``: it is sent to the local head with its own version (``Put`` with ``version``;
last writer wins there), and it is *applied* once the key's tail holds it stable: the tail
says so (``StableNotice``), as it does to a frontend. When the head already held a newer
version, or the notice does not come within ``node_timeout_s``, the proxy asks the tail
instead until it holds that version or a newer one, stable (``DepCheck``); a tail that
waited its bound without it makes the proxy put it again (the chain may have lost it: a
head that took it died and came back without it; a head that has it or newer says so).
The applied prefix per origin is persisted, reported to the origin and to every DC
(``ShipAck``), and a write is **Global-Write-Stable** once every DC's applied prefix of its
origin covers it. The proxy tells its nodes (``GeoProgress``), which then report such
versions as stable to clients.

**Tombstones** may be collected once they are Global-Write-Stable *and* no older write
that could be concurrent with them can still arrive (``collectable`` in ``GeoProgress``).
Take a tombstone T of DC X at log position t, and a write w to the same key made in DC B
before B applied T, with a smaller stamp: here w must be applied before T may go, or it
would come back (DCs that kept T would drop it: divergence). w precedes T in B's chain for
that key, so B's tail shipped it before T became stable there (one connection, in order),
or the node where T overtook it ships it then; B's proxy therefore logged w before it
counted T as applied. Every peer reports its applied vector with its own log length
(``ShipAck``); once a report of B that shows X applied up to t is covered by what we have
applied of B's log, every such w of B is here. For B = X the position t itself covers it.
(Where two connections race, e.g. a tail change between w's ``Ship`` and T's stability, w
may come after T was collected: the nodes then drop it as older than their collected floor.)

A frontend checking a dependency written in another DC asks the proxy
(``RemoteDepCheck``): it answers once that DC's log is applied here up to the write's
position (known from the client, or from the ``seen`` index of received entries).

Log times come from a hybrid clock held back to at most ``max_clock_ahead_s`` ahead of the
DC's median clock (``HeartbeatAck.ahead_us``, docs/protocol.md §3.1 "Clocks"): they
become floors of later writes, and a proxy clock far ahead would push their versions ahead
in every DC.

Everything durable is in ``ProxyLog``; after kill -9 the proxy reloads its log and
counters, peers resend what it had not applied, and re-applying is harmless (a version is
applied once at the head, whatever the number of deliveries).
"""

from __future__ import annotations

import bisect
import collections
from typing import Callable

import attrs

from chainreaction import messages as m
from chainreaction.core import Core, Identity
from chainreaction.effects import Send
from chainreaction.latency import LatencyRecorder
from chainreaction.ring import Ring
from chainreaction.ring_requests import RingRequests
from chainreaction.versions import MAX_CLOCK_AHEAD_S, DcTime, HybridClock, Version
from chainreaction.waiters import Waiters

from .log import LoggedWrite, ProxyLog


MAX_REPORTS = 64  # per peer: its applied vectors we may still count (tombstones)


@attrs.frozen
class ProxyConfig:
    dc: int = 0
    peers: tuple = ()  # ((dc, proxy name), ...) of the other DCs
    manager: str = "manager"
    batch_interval_s: float = 0.005
    max_batch_entries: int = 512
    max_batch_bytes: int = 256 * 1024
    max_unacked_entries: int = 20_000  # per peer, then shipping waits for acks
    resend_after_s: float = 1.0
    progress_interval_s: float = 0.05
    node_timeout_s: float = 1.0
    retry_delay_s: float = 0.05
    dep_wait_s: float = 2.0
    max_dep_waiters: int = 100_000
    max_cached_entries: int = 100_000  # log entries kept in memory; older ones are re-read
    # Log times at most this far ahead of the DC's median clock (HeartbeatAck.ahead_us):
    # they end up in the floors of later writes.
    max_clock_ahead_s: float = MAX_CLOCK_AHEAD_S
    tick_s: float = 0.05  # housekeeping: resends, retries, expiries, progress reports
    heartbeat_s: float = 0.2


# phases of an incoming entry: causal past not applied yet; sent to the head; at the head,
# waiting for the tail's StableNotice; asking the tail (DepCheck); applied
_WAITING, _PUTTING, _STABILIZING, _CHECKING, _DONE = range(5)


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


@attrs.define(slots=True)
class _DepWaiter:
    src: str
    op: int
    key: str
    version: Version
    seq: int  # 0 = not known yet
    log_check: bool = False  # a LogCheck (answer LogReply): only ``seq`` of the origin counts


@attrs.define(slots=True)
class _Peer:
    name: str
    sent: int = 0  # last seq sent
    acked: int = 0  # last contiguous seq it received
    acked_at: float = 0.0  # when ``acked`` last moved (or shipping resumed)
    applied: dict = attrs.Factory(dict)  # its applied vector, as it last reported it


class ProxyCore(Core):
    """The remote proxy of one DC (the contract: core.py). Batches leave when due (timer
    ``ship``), not on the next housekeeping tick."""

    role = "proxy"

    def __init__(self, name: str, log: ProxyLog, config: ProxyConfig, now: float,
                 identity: Identity | None = None) -> None:
        super().__init__(name, now, manager=config.manager, identity=identity,
                         heartbeat_s=config.heartbeat_s)
        self.log = log
        self.config = config
        self.dc = config.dc
        self.ring: Ring | None = None
        self.clock = HybridClock()
        self.dc_time = DcTime(config.max_clock_ahead_s)
        self.peers = {dc: _Peer(name) for dc, name in config.peers}
        if config.dc in self.peers:
            raise ValueError(f"dc {config.dc} is listed as its own peer")
        # peer dc -> its applied vectors (with its own log length) not yet covered by what
        # we applied of its log, oldest first; and the newest covered one (tombstones)
        self._reports: dict[int, list] = {dc: [] for dc in self.peers}
        self._covered: dict[int, dict] = {dc: {} for dc in self.peers}
        self._next_op = int(now * 1_000_000) % 2**62 + 1
        self._ring_requests = RingRequests(config.manager)
        # -- origin side
        self._next_seq = log.last_seq() + 1
        self._cache: collections.OrderedDict[int, LoggedWrite] = collections.OrderedDict()
        self._index: dict[str, tuple] = {}  # key -> (version, seq, logged_at), recent log
        self._times: list[int] = []  # logged_at of retained seqs _first_seq.. (ascending)
        self._first_seq = log.first_seq() or self._next_seq
        for write in log.read(self._first_seq, self._next_seq - 1):
            self._retain(write)
            self.clock.observe(write.logged_at)
        # peer dc -> when its next batch may leave (unsent entries only); one batch per
        # batch_interval_s per peer, the first after an idle spell at once
        self._due_at: dict[int, float] = {}
        self._last_batch_at: dict[int, float] = {}
        for peer in self.peers.values():  # what was truncated, every DC had applied
            peer.sent = peer.acked = self._first_seq - 1
        # -- receiver side
        self.applied: dict[int, int] = {dc: log.get_meta(f"applied:{dc}", 0) for dc in self.peers}
        self._started: dict[int, int] = {dc: log.get_meta(f"started:{dc}", 0) for dc in self.peers}
        self._started_saved = dict(self._started)
        self._received = dict(self.applied)  # last contiguous seq received per origin
        self._inbox: dict[int, collections.OrderedDict] = {
            dc: collections.OrderedDict() for dc in self.peers}
        # the inbox entries not started yet (their ``after``/``needs`` not applied here)
        self._waiting: dict[int, collections.OrderedDict] = {
            dc: collections.OrderedDict() for dc in self.peers}
        self._ops: dict[int, _Incoming] = {}
        self._at_head: dict[tuple, _Incoming] = {}  # (key, version) -> entry sent to the head
        # dependency and log checks (_DepWaiter), one slot: any progress may answer any
        self._waiters = Waiters(config.max_dep_waiters)
        self._global: dict[int, int] = {}
        self._progress_sent_at = float("-inf")
        self._reported: tuple = ()
        self.reset_latencies()
        self._handlers: dict[type, Callable] = {
            m.RingUpdate: self._on_ring_update,
            m.Ship: self._on_ship,
            m.ShipBatch: self._on_ship_batch,
            m.ShipAck: self._on_ship_ack,
            m.PutAck: self._on_put_ack,
            m.DepReply: self._on_dep_reply,
            m.Error: self._on_error,
            m.RemoteDepCheck: self._on_remote_dep_check,
            m.LogCheck: self._on_log_check,
            m.StableNotice: self._on_stable_notice,
            m.HeartbeatAck: self._on_heartbeat_ack,
        }
        self.timers.add("housekeeping", self._housekeeping, now + config.tick_s)
        self.timers.add("ship", self._ship, None)

    # -- timers -----------------------------------------------------------------------------

    def _housekeeping(self, now: float) -> list:
        self.timers.set("housekeeping", now + self.config.tick_s)
        return self.tick(now)

    def tick(self, now: float) -> list:
        """Ship what is due (and resend to silent peers), retry and pump incoming entries,
        expire dependency waiters, report progress."""
        out: list = []
        out += self._ship(now)
        out += self._retry_incoming(now)
        out += self._pump(now)
        out += self._expire_waiters(now)
        out += self._report_progress(now)
        return out

    def reset_latencies(self) -> None:
        """Stages of remote visibility, from a write's version clock at its origin: logged
        there for shipping (``log_lag``, our own writes); its batch arrived here
        (``arrived``); applied at our head, i.e. first readable here (``first_visible``);
        stable at our tail, i.e. readable at every replica here (``visibility``)."""
        def per_origin():
            return {dc: LatencyRecorder(max_samples=200_000) for dc in self.peers}
        self.log_lag = LatencyRecorder(max_samples=200_000)
        self.arrived, self.first_visible, self.visibility = (
            per_origin(), per_origin(), per_origin())

    def _arm_ship(self) -> None:
        """The ``ship`` timer follows the earliest batch due."""
        if self._due_at:
            self.timers.set("ship", min(self._due_at.values()))
        else:
            self.timers.cancel("ship")

    def _next_batch_at(self, dc: int, now: float) -> float:
        return max(now, self._last_batch_at.get(dc, float("-inf"))
                   + self.config.batch_interval_s)

    @property
    def epoch(self) -> int:
        return self.ring.epoch if self.ring is not None else 0

    @property
    def last_logged(self) -> int:
        return self._next_seq - 1

    def applied_vector(self) -> dict[int, int]:
        """How far each DC's log is applied here (our own: everything logged)."""
        return {**self.applied, self.dc: self.last_logged}

    def collectable(self) -> dict[int, int]:
        """dc -> position of its log up to which its tombstones may be collected here."""
        for dc, reports in self._reports.items():
            done = 0
            while done < len(reports) and reports[done].get(dc, 0) <= self.applied.get(dc, 0):
                done += 1
            if done:
                self._covered[dc] = reports[done - 1]
                del reports[:done]
        stable = self.global_stable()
        out = {}
        for origin in (self.dc, *self.peers):
            bound = stable.get(origin, 0)
            for dc in self.peers:
                if dc != origin:
                    bound = min(bound, self._covered[dc].get(origin, 0))
            out[origin] = bound
        return out

    def global_stable(self) -> dict[int, int]:
        """dc -> position of its log applied in every DC."""
        vectors = [self.applied_vector()] + [p.applied for p in self.peers.values()]
        dcs = [self.dc, *self.peers]
        return {dc: min(v.get(dc, 0) for v in vectors) for dc in dcs}

    def stats(self) -> dict:
        waiting = sum(len(box) for box in self._waiting.values())
        out = {
            "name": self.name, "dc": self.dc, "epoch": self.epoch,
            "logged": self.last_logged, "log_retained": self.last_logged - self._first_seq + 1,
            "applied": {str(dc): n for dc, n in sorted(self.applied.items())},
            "global_stable": {str(dc): n for dc, n in sorted(self._global.items())},
            "updates_waiting_on_dependencies": waiting,
            "updates_in_flight": sum(len(box) for box in self._inbox.values()),
            "dep_waiters": len(self._waiters),
            "clock_ahead_ms": round(self.dc_time.ahead_s * 1000),
            **self.counters,
        }
        def percentiles(name: str, rec: LatencyRecorder) -> None:
            out[f"{name}_p50_ms"] = round(rec.percentile(50) * 1000, 2)
            out[f"{name}_p99_ms"] = round(rec.percentile(99) * 1000, 2)

        percentiles("log_lag", self.log_lag)
        for dc, peer in sorted(self.peers.items()):
            out[f"unacked_to_dc{dc}"] = self.last_logged - peer.acked
            percentiles(f"visibility_from_dc{dc}", self.visibility[dc])
            out[f"visibility_from_dc{dc}_count"] = self.visibility[dc].count
            percentiles(f"first_visible_from_dc{dc}", self.first_visible[dc])
            percentiles(f"arrived_from_dc{dc}", self.arrived[dc])
        wan_bytes = self.io_counters.get("wan_bytes_sent", 0)  # counted by the WAN driver
        if wan_bytes and self.counters["entries_sent"]:
            out["wan_bytes_per_update"] = round(wan_bytes / self.counters["entries_sent"], 1)
        return out

    # -- helpers ----------------------------------------------------------------------------

    def _new_op(self) -> int:
        self._next_op += 1
        return self._next_op

    def _want_ring(self, now: float) -> list:
        return self._ring_requests.ask(self.epoch, now)

    @property
    def store_clock_us(self) -> int:
        """The largest log time we gave (heartbeats carry it to the manager)."""
        return self.clock.last

    def _on_heartbeat_ack(self, src: str, msg: m.HeartbeatAck, now: float) -> list:
        self.dc_time.note(msg.ahead_us, msg.sent_at_us)
        return []

    def _on_ring_update(self, src: str, msg: m.RingUpdate, now: float) -> list:
        if self.ring is not None and msg.ring.epoch <= self.ring.epoch:
            return []
        self.ring = msg.ring
        self.counters["ring_changes"] += 1
        self._reported = ()  # new members must hear the progress too
        return self._pump(now)

    # -- origin side: log and ship ----------------------------------------------------------

    def _retain(self, write: LoggedWrite) -> None:
        self._cache[write.seq] = write
        if len(self._cache) > self.config.max_cached_entries:
            self._cache.popitem(last=False)
        self._index[write.entry.key] = (write.entry.version, write.seq, write.logged_at)
        self._times.append(write.logged_at)

    def _write_at(self, seq: int) -> LoggedWrite | None:
        write = self._cache.get(seq)
        if write is None:
            write = next(iter(self.log.read(seq, seq)), None)
            self.counters["log_reread"] += 1
        return write

    def _on_ship(self, src: str, msg: m.Ship, now: float) -> list:
        known = self._index.get(msg.key)
        if known is not None and known[0] >= msg.version:
            self.counters["ship_duplicate"] += 1
            return [Send(src, m.Shipped(msg.key, msg.version, known[1], known[2]))]
        seq = self._next_seq
        # (Our clock held back if it runs ahead of the DC's: log times end up in the floors
        # of later writes, and would push their versions ahead in every DC.)
        logged_at = self.clock.next(self.dc_time.now(now), msg.version.clock)
        # Everything logged before this write's version clock may be in its causal past.
        logged_before = bisect.bisect_left(self._times, msg.version.clock)
        after = self._first_seq - 1 + logged_before
        needs = tuple(sorted((dc, n) for dc, n in self._started.items() if n))
        entry = m.ShipEntry(msg.key, msg.version, msg.value, msg.rid, msg.vclock, after, needs)
        write = LoggedWrite(seq, entry, logged_at)
        # Log times strictly increase along the log: ``after`` is found by bisecting them.
        assert not self._times or logged_at > self._times[-1], (logged_at, self._times[-1])
        self.log.append(write)
        self._next_seq += 1
        assert self.log.last_seq() == seq == self.last_logged
        self._retain(write)
        for dc in self.peers:
            if dc not in self._due_at:
                self._due_at[dc] = self._next_batch_at(dc, now)
        self._arm_ship()
        self.counters["entries_logged"] += 1
        self.log_lag.record(max(0.0, now - msg.version.clock / 1e6))
        return [Send(src, m.Shipped(msg.key, msg.version, seq, logged_at))]

    def _ship(self, now: float) -> list:
        out: list = []
        cfg = self.config
        for dc, peer in self.peers.items():
            if peer.sent > peer.acked and now - peer.acked_at >= cfg.resend_after_s:
                # No progress: the link was down, the batch lost or the peer restarted.
                self.counters["resend_from_ack"] += 1
                peer.sent = peer.acked
                peer.acked_at = now
                self._due_at[dc] = float("-inf")  # overdue: send at once
            pending = self.last_logged - peer.sent
            if pending <= 0:
                self._due_at.pop(dc, None)
                continue
            due = self._due_at.setdefault(dc, self._next_batch_at(dc, now))
            if pending < cfg.max_batch_entries and now < due:
                continue
            while peer.sent < self.last_logged and peer.sent - peer.acked < cfg.max_unacked_entries:
                batch = self._batch(peer.sent + 1)
                if batch is None:
                    break
                if peer.sent == peer.acked:
                    peer.acked_at = now  # resend timer starts with the first unacked batch
                out.append(Send(peer.name, batch))
                self._last_batch_at[dc] = now
                peer.sent = batch.first_seq + len(batch.entries) - 1
                self.counters["batches_sent"] += 1
                self.counters["entries_sent"] += len(batch.entries)
            if peer.sent >= self.last_logged:
                self._due_at.pop(dc, None)
            else:  # held back by max_unacked_entries: try again an interval later
                self._due_at[dc] = now + cfg.batch_interval_s
            assert peer.acked <= peer.sent <= self.last_logged, (dc, peer, self.last_logged)
        self._arm_ship()
        return out

    def _batch(self, first: int) -> m.ShipBatch | None:
        entries, size, needs = [], 0, None
        batch_needs = ()
        for seq in range(first, self.last_logged + 1):
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
        return m.ShipBatch(self.dc, first, batch_needs, tuple(entries))

    def _on_ship_ack(self, src: str, msg: m.ShipAck, now: float) -> list:
        peer = self.peers.get(msg.dc)
        if peer is None or src != peer.name:
            self.counters["ack_from_unknown"] += 1
            return []
        if msg.received != peer.acked:
            peer.acked_at = now
        if msg.received < peer.acked:
            # The peer restarted and lost what it had not applied: ship it again.
            self.counters["peer_rewound"] += 1
            peer.sent = min(peer.sent, msg.received)
        peer.acked = msg.received
        peer.sent = max(peer.sent, peer.acked)
        peer.applied = dict(msg.applied)
        reports = self._reports[msg.dc]
        if not reports or reports[-1] != peer.applied:
            if len(reports) >= MAX_REPORTS:
                # Thin out, keeping the oldest (the next to count) and the newest: what is
                # lost is only a chance to collect a little earlier.
                del reports[1::2]
            reports.append(peer.applied)
        return self._on_progress(now)

    def _on_progress(self, now: float) -> list:
        """The applied vectors moved: Global-Write-Stable, dependency waiters, truncation."""
        self._global = self.global_stable()
        mine = self._global.get(self.dc, 0)
        if mine >= self._first_seq:
            self.log.truncate(mine)
            drop = mine - self._first_seq + 1
            del self._times[:drop]
            for seq in range(self._first_seq, mine + 1):
                write = self._cache.pop(seq, None)
                if write is not None:
                    known = self._index.get(write.entry.key)
                    if known is not None and known[1] == seq:
                        del self._index[write.entry.key]
            self._first_seq = mine + 1
        return self._wake_waiters(now)

    # -- receiver side: apply other DCs' writes -----------------------------------------------

    def _on_ship_batch(self, src: str, msg: m.ShipBatch, now: float) -> list:
        origin = msg.origin_dc
        peer = self.peers.get(origin)
        if peer is None or src != peer.name:
            self.counters["batch_from_unknown"] += 1
            return []
        self.counters["batches_received"] += 1
        box = self._inbox[origin]
        needs = msg.needs
        out: list = []
        for i, entry in enumerate(msg.entries):
            seq = msg.first_seq + i
            if entry.needs:
                needs = entry.needs
            if seq <= self._received[origin]:
                continue  # a resend of what we have
            if seq != self._received[origin] + 1:
                self.counters["batch_gap"] += 1  # an earlier batch was lost: ack asks again
                break
            self._received[origin] = seq
            box[seq] = self._waiting[origin][seq] = _Incoming(origin, seq, entry, needs)
            known = self.log.seen(origin, entry.key)
            if known is None or known[0] < entry.version:
                self.log.put_seen(origin, entry.key, entry.version, seq)
            self.counters["entries_received"] += 1
            self.arrived[origin].record(max(0.0, now - entry.version.clock / 1e6))
        out += self._pump(now)
        out += self._wake_waiters(now)
        return out

    def _pump(self, now: float) -> list:
        """Start every waiting entry whose causal past is applied here."""
        if self.ring is None or not self.ring.members:
            return self._want_ring(now) if any(self._inbox.values()) else []
        out: list = []
        applied = self.applied_vector()
        for origin, waiting in self._waiting.items():
            ready = [inc for inc in waiting.values()
                     if applied[origin] >= inc.entry.after
                     and all(applied.get(dc, 0) >= n for dc, n in inc.needs if dc != origin)]
            for inc in ready:
                del waiting[inc.seq]
                out += self._start(inc, now)
        return out

    def _start(self, inc: _Incoming, now: float) -> list:
        if inc.seq > self._started_saved[inc.origin]:
            # Persist (ahead of need) how far we started: after a restart, ``needs`` of
            # the writes we log must still cover what clients could have read here.
            self._started_saved[inc.origin] = self._received[inc.origin]
            self.log.put_meta(f"started:{inc.origin}", self._received[inc.origin])
        self._started[inc.origin] = max(self._started[inc.origin], inc.seq)
        return self._send_put(inc, now)

    def _send_put(self, inc: _Incoming, now: float) -> list:
        e = inc.entry
        inc.phase, inc.op, inc.sent_at, inc.retry_at = _PUTTING, self._new_op(), now, None
        self._ops[inc.op] = inc
        self._at_head[e.key, e.version] = inc
        head = self.ring.chain(e.key)[0]
        return [Send(head, m.Put(inc.op, e.rid, e.key, e.value, 0, self.epoch, e.version,
                                 e.vclock, inc.seq))]

    def _send_check(self, inc: _Incoming, now: float) -> list:
        e = inc.entry
        self._ops.pop(inc.op, None)
        inc.phase, inc.op, inc.sent_at, inc.retry_at = _CHECKING, self._new_op(), now, None
        self._ops[inc.op] = inc
        tail = self.ring.chain(e.key)[-1]
        return [Send(tail, m.DepCheck(inc.op, e.key, e.version, self.epoch))]

    def _on_put_ack(self, src: str, msg: m.PutAck, now: float) -> list:
        inc = self._ops.get(msg.op)
        if inc is None or inc.phase != _PUTTING:
            self.counters["stale_reply"] += 1
            return []
        self.first_visible[inc.origin].record(max(0.0, now - inc.entry.version.clock / 1e6))
        if msg.chain_index == 0:
            # The head held this version or a newer one already: no notice will come.
            return self._send_check(inc, now)
        inc.phase, inc.sent_at = _STABILIZING, now
        return []

    def _on_stable_notice(self, src: str, msg: m.StableNotice, now: float) -> list:
        inc = self._at_head.get((msg.key, msg.version))
        if inc is None or inc.phase == _DONE:
            self.counters["stable_notice_unmatched"] += 1
            return []
        if inc.phase == _PUTTING:  # the notice overtook the head's ack
            self.first_visible[inc.origin].record(max(0.0, now - inc.entry.version.clock / 1e6))
        return self._applied_here(inc, now)

    def _on_dep_reply(self, src: str, msg: m.DepReply, now: float) -> list:
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
        return self._applied_here(inc, now)

    def _applied_here(self, inc: _Incoming, now: float) -> list:
        """``inc`` is DC-Write-Stable here (or superseded by a newer stable version)."""
        self._ops.pop(inc.op, None)
        self._at_head.pop((inc.entry.key, inc.entry.version), None)
        inc.phase = _DONE
        self.visibility[inc.origin].record(max(0.0, now - inc.entry.version.clock / 1e6))
        self.counters["entries_applied"] += 1
        return self._advance(inc.origin, now)

    def _on_error(self, src: str, msg: m.Error, now: float) -> list:
        inc = self._ops.pop(msg.op, None)
        self.counters["node_error_" + msg.code] += 1
        if inc is None:
            return []
        out: list = []
        if msg.code in (m.WRONG_EPOCH, m.NOT_HEAD, m.NOT_TAIL, m.NOT_IN_CHAIN):
            if self.ring is None or msg.epoch > self.ring.epoch:
                out += self._want_ring(now)
        # Retry the phase from its start shortly (a Put is idempotent by version).
        inc.retry_at = now + self.config.retry_delay_s
        return out

    def _retry_incoming(self, now: float) -> list:
        if self.ring is None or not self.ring.members:
            return []
        out: list = []
        for box in self._inbox.values():
            for inc in box.values():
                if inc.phase in (_DONE, _WAITING):
                    continue
                if inc.retry_at is not None:
                    if now < inc.retry_at:
                        continue
                elif now - inc.sent_at < self.config.node_timeout_s:
                    continue
                self.counters["stable_notice_missed" if inc.phase == _STABILIZING
                              else "apply_resent"] += 1
                self._ops.pop(inc.op, None)
                out += self._send_check(inc, now) if inc.phase == _STABILIZING else \
                    self._send_put(inc, now)
        return out

    def _advance(self, origin: int, now: float) -> list:
        box = self._inbox[origin]
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
        out = self._pump(now)
        out += self._on_progress(now)
        return out

    # -- dependency checks from frontends ------------------------------------------------------

    def _on_remote_dep_check(self, src: str, msg: m.RemoteDepCheck, now: float) -> list:
        waiter = _DepWaiter(src, msg.op, msg.key, msg.version, msg.seq)
        if msg.version.dc == self.dc:  # our own writes are here once stable: tails answer that
            return [self._answer(waiter)]
        return self._wait_for_log(waiter, "dep_check_waited", now)

    def _on_log_check(self, src: str, msg: m.LogCheck, now: float) -> list:
        waiter = _DepWaiter(src, msg.op, "", Version(0, msg.origin_dc), msg.seq,
                            log_check=True)
        if msg.origin_dc == self.dc:  # our own log is here
            return [self._answer(waiter)]
        return self._wait_for_log(waiter, "log_check_waited", now)

    def _wait_for_log(self, waiter: _DepWaiter, counter: str, now: float) -> list:
        """Answer once the waiter's DC's log is applied here far enough (bounded)."""
        origin = waiter.version.dc
        if origin not in self.peers:
            return [Send(waiter.src, m.Error(waiter.op, m.BAD_REQUEST,
                                             f"no DC {origin} in this cluster", self.epoch))]
        if self._satisfied(waiter):
            return [self._answer(waiter)]
        if not self._waiters.add(waiter, now + self.config.dep_wait_s):
            return [Send(waiter.src, m.Error(waiter.op, m.OVERLOADED,
                                             "too many dependency checks", self.epoch))]
        self.counters[counter] += 1
        return []

    def _answer(self, w: _DepWaiter, ok: bool = True) -> Send:
        if w.log_check:
            if not ok:
                return Send(w.src, m.LogReply(w.op, False))
            vector = tuple(sorted(self.applied_vector().items()))
            started = tuple(sorted((dc, max(n, self.applied[dc]))
                                   for dc, n in self._started.items()))
            return Send(w.src, m.LogReply(w.op, True, vector, self.clock.last, started))
        return Send(w.src, m.DepReply(w.op, w.key, ok, self.clock.last if ok else 0))

    def _satisfied(self, w: _DepWaiter) -> bool:
        origin = w.version.dc
        if not w.seq and not w.log_check:
            known = self.log.seen(origin, w.key)
            if known is None or known[0] < w.version:
                return False  # not received yet
            # That write, or a newer one of the same key and DC (logged after it there).
            w.seq = known[1]
        return self.applied[origin] >= w.seq

    def _wake_waiters(self, now: float) -> list:
        return [self._answer(w) for w in self._waiters.wake(self._satisfied)]

    def _expire_waiters(self, now: float) -> list:
        out: list = []
        for _slot, w in self._waiters.expire(now):
            self.counters["dep_check_timeout"] += 1
            out.append(self._answer(w, ok=False))
        return out

    # -- progress reports ------------------------------------------------------------------------

    def _report_progress(self, now: float) -> list:
        """Acks to peers and GeoProgress to our nodes, when something moved (and now and
        then anyway, so a restarted peer or node learns where we are)."""
        applied = self.applied_vector()
        self._global = self.global_stable()
        collectable = tuple(sorted(self.collectable().items()))
        state = (tuple(sorted(applied.items())), tuple(sorted(self._received.items())),
                 tuple(sorted(self._global.items())), collectable)
        since = now - self._progress_sent_at
        if since < 1.0 and (state == self._reported or since < self.config.progress_interval_s):
            return []
        self._reported = state
        self._progress_sent_at = now
        vector = tuple(sorted(applied.items()))
        out = [Send(peer.name, m.ShipAck(self.dc, self._received[dc], vector))
               for dc, peer in self.peers.items()]
        if self.ring is not None:
            progress = m.GeoProgress(vector, tuple(sorted(self._global.items())),
                                     collectable)
            out += [Send(name, progress) for name in self.ring.names]
        return out
