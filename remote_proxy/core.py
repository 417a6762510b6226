"""Remote proxy: sans-IO core of the cross-DC shipper (DESIGN.md "Several datacenters").

Theory of operation
-------------------
Each DC runs one proxy. It plays two parts.

**Origin (shipping this DC's writes; ``shipper.py``).** The proxy is off the local data
path: a local write is DC-Write-Stable once its chain's tail stores it, and the tail then
sends it here (``Ship``) without waiting, again and again until answered (nodes keep what
the proxy has not logged: chainreaction/shipping.py). So Ships may come in any order
(a proxy back from an outage gets everything at once). The log order must still respect
causality inside the DC, since receivers apply it in order; each write therefore carries
what of this DC it depends on (``deps``: keys and versions, the session's dependencies
written here, and what the writes it replaced at a node carried; ``past``: a log
position), and the proxy **logs a write only once each dependency is logged**: that
version of its key or a newer one (a per-key index of our own newest logged versions,
durable in the log's ``seen`` under our own DC). A Ship whose dependency is not logged is
held (``_held``, bounded, keyed by the missing key, woken when it is logged; beyond the
bound or after ``held_ship_s`` it is dropped and its node sends it again). A Ship of a
version at or below the key's newest logged one is answered with that one's position:
each write is logged at most once, and its newer version stands for it. The proxy ships
the log to every peer DC in order, in batches paced per peer, keeps it until every DC
has applied it, and resends from the peer's acknowledged position when a link was down
or the peer restarted.

Each entry carries what the receiver must have applied first:

* ``waits``: positions in this DC's log, one per dependency: the first version of its key
  logged at or after the one the write depends on (that one, or a newer one that
  replaced it unlogged and so carries its past). A receiver applies an entry only after
  those entries, each of which it applied only after its own ``waits`` and ``after``:
  the write's causal past in this DC comes first, and writes of unrelated pasts, even of
  one origin, apply side by side. Positions truncated (applied everywhere) are left
  out; more than ``MAX_WAITS`` become a prefix.
* ``after``: a prefix of this DC's log: the session's ``past`` here (a settle told it its
  causal past is within), applied first whole.
* ``needs[dc]``: for each other DC, how far this proxy had *started* applying that DC's
  log when it logged the write; anything a client here could have read before writing is
  covered (logging comes after the write, so it covers more than at write time).
  (Started, not finished: a version is readable here once sent to the head.)

**Receiver (applying other DCs' writes; ``receiver.py``).** Entries arrive in order per
origin. An entry is applied when the origin's log is applied here up to ``after`` and at
each position of ``waits``, and every other DC's up to ``needs``: it is sent to the local head with its own version
(``Put`` with ``version``; last writer wins there), and it is *applied* once the key's
tail holds it stable: the tail says so (``StableNotice``), as it does to a frontend. When
the head already held a newer version, or the notice does not come within
``node_timeout_s``, the proxy asks the tail instead until it holds that version or a newer
one, stable (``DepCheck``); a tail that waited its bound without it makes the proxy put it
again (the chain may have lost it: a head that took it died and came back without it; a
head that has it or newer says so). The applied prefix per origin is persisted, reported
to the origin and to every DC (``ShipAck``), and a write is **Global-Write-Stable** once
every DC's applied prefix of its origin covers it. The proxy tells its nodes
(``GeoProgress``), which then report such versions as stable to clients. **Tombstones**
may be collected once they are Global-Write-Stable *and* no older write that could be
concurrent with them can still arrive (``collectable`` in ``GeoProgress``; why the peers'
reports tell: ``stability.py``).

A frontend checking a dependency written in another DC asks the proxy
(``RemoteDepCheck``): it answers once that DC's log is applied here up to the write's
position (known from the client, or from the ``seen`` index of received entries). For a
write of our own DC (a ``settle``), it answers once that write or a newer version of its
key is logged.

Log times come from a hybrid clock held back to at most ``max_clock_ahead_s`` ahead of the
DC's median clock (``HeartbeatAck.ahead_us``, docs/protocol.md §3.1 "Clocks"): they
become floors of later writes, and a proxy clock far ahead would push their versions ahead
in every DC.

Everything durable is in ``ProxyLog``; after kill -9 the proxy reloads its log and
counters (and repairs ``seen`` from the log: ``_repair_seen``), peers resend what it had
not applied, and re-applying is harmless (a version is applied once at the head, whatever
the number of deliveries).

Layout: each part is a plain object owned by ``ProxyCore`` (``Shipper``, ``Receiver``,
and ``Stability``: what every DC has applied), so each can be read and tested alone. The
core follows the contract (messages, its ``ship`` and ``housekeeping`` timers, stats) and
keeps what needs every part: the proxy's clock, dependency checks and progress reports.
"""

from __future__ import annotations

import collections
from typing import Callable

import attrs

from chainreaction import messages as m
from chainreaction.core import Core, Identity
from chainreaction.effects import Send
from chainreaction.latency import LatencyRecorder
from chainreaction.versions import MAX_CLOCK_AHEAD_S, DcTime, HybridClock, Version
from chainreaction.waiters import Waiters

from .log import ProxyLog
from .receiver import Receiver
from .shipper import Shipper
from .stability import Stability


@attrs.frozen
class ProxyConfig:
    dc: int = 0
    peers: tuple = ()  # ((dc, proxy name), ...) of the other DCs
    manager: str = "manager"
    batch_interval_s: float = 0.005
    max_batch_entries: int = 512
    max_batch_bytes: int = 256 * 1024
    window_entries: int = 8_192  # per peer, beyond what it applied: then shipping waits
    resend_after_s: float = 1.0  # without an ack that moves, resend (doubling up to max)
    max_resend_after_s: float = 8.0
    progress_interval_s: float = 0.05
    node_timeout_s: float = 1.0
    # Other DCs' entries on their way to our heads at once: a backlog is applied at the
    # pace the chains take, and leaves room for our own clients.
    max_applying: int = 512
    retry_delay_s: float = 0.05
    dep_wait_s: float = 2.0
    max_dep_waiters: int = 100_000
    max_cached_entries: int = 100_000  # log entries kept in memory; older ones are re-read
    # Log times at most this far ahead of the DC's median clock (HeartbeatAck.ahead_us):
    # they end up in the floors of later writes.
    max_clock_ahead_s: float = MAX_CLOCK_AHEAD_S
    # Ships waiting for a dependency to be logged (after an outage every node sends what it
    # kept at once, in any order); beyond these, or after held_ship_s, dropped: the node
    # sends them again.
    max_held_ships: int = 200_000
    max_held_bytes: int = 128 * 1024 * 1024
    held_ship_s: float = 10.0
    max_own_index: int = 1_000_000  # our newest logged version per key, cached in memory
    tick_s: float = 0.05  # housekeeping: resends, retries, expiries, progress reports
    heartbeat_s: float = 0.2


@attrs.define(slots=True, eq=False)
class _HeldShip:
    """A local write whose dependencies are not all logged yet."""

    ship: m.Ship
    srcs: list  # who sent it (each gets the Shipped)
    missing: list  # (key, clock) not known logged; it waits for the last one
    size: int
    until: float


@attrs.define(slots=True)
class _DepWaiter:
    src: str
    op: int
    key: str
    version: Version
    seq: int  # 0 = not known yet
    log_check: bool = False  # a LogCheck (answer LogReply): only ``seq`` of the origin counts


# The floors (stability.py) move with time: reported again once they moved this far.
FLOOR_STEP_US = 250_000
# A member that left the ring holds our floor back this much longer (``unlogged_floor``).
DEPARTED_FLOOR_S = 2.0


def _clock_ranges(deps: tuple) -> dict:
    """key -> (smallest, largest) clock of the dependencies on it."""
    out: dict = {}
    for key, clock in deps:
        low, high = out.get(key, (clock, clock))
        out[key] = (min(low, clock), max(high, clock))
    return out


class ProxyCore(Core):
    """The remote proxy of one DC (the contract: core.py). Batches leave when due (timer
    ``ship``), not on the next housekeeping tick."""

    role = "proxy"

    def __init__(self, name: str, log: ProxyLog, config: ProxyConfig, now: float,
                 identity: Identity | None = None,
                 monotonic: Callable[[], float] | None = None) -> None:
        super().__init__(name, now, manager=config.manager, identity=identity,
                         heartbeat_s=config.heartbeat_s, monotonic=monotonic)
        self.log = log
        self.config = config
        self.dc = config.dc
        self.clock = HybridClock()
        self.dc_time = DcTime(config.max_clock_ahead_s, monotonic)
        if config.dc in dict(config.peers):
            raise ValueError(f"dc {config.dc} is listed as its own peer")
        # -- origin side: our log, shipped to every peer (``peers``: dc -> link to its proxy)
        self.shipper = Shipper(log, config, self.counters)
        self.peers = self.shipper.peers
        self.clock.observe(self.shipper.last_logged_at)
        self._repair_seen()
        # what each peer reported it applied: Global-Write-Stable, tombstones
        self.stability = Stability(self.dc, self.peers)
        # node -> its last UnloggedFloor: our DC's writes each holds unlogged are above it;
        # those of members that left, until when they still count; the newest ring a
        # member told us of
        self._node_floors: dict[str, int] = {}
        self._departed_floors: dict[str, tuple] = {}
        self._newer_ring_seen = 0
        self._collect_below = 0  # as last told to the nodes
        # -- receiver side: other DCs' logs, applied here
        self.receiver = Receiver(log, config, self.counters, now,
                                 lambda: self.shipper.last_logged, self._on_progress,
                                 self.clock)
        # dependency and log checks (_DepWaiter), one slot: any progress may answer any;
        # checks of our own writes (a settle) wait in the slot ("own", key)
        self._waiters = Waiters(config.max_dep_waiters)
        # Ships waiting for a dependency to be logged: (key, version) -> _HeldShip, and by
        # the key each waits for; expiry in arrival order
        self._held: dict[tuple, _HeldShip] = {}
        self._held_by_key: dict[str, dict] = {}  # key -> {(key, version): _HeldShip}
        self._held_order: collections.deque = collections.deque()
        self._held_bytes = 0
        # key -> (newest version of ours logged, its seq): the log's ``seen`` of our DC
        self._own: collections.OrderedDict = collections.OrderedDict()
        self._global: dict[int, int] = {}
        self._progress_sent_at = float("-inf")
        self._reported: tuple = ()
        self.reset_latencies()
        self._handlers: dict[type, Callable] = {
            m.RingUpdate: self._on_ring_update,
            m.Ship: self._on_ship,
            m.ShipBatch: self._on_ship_batch,
            m.ShipAck: self._on_ship_ack,
            m.PutAck: self.receiver.on_put_ack,
            m.DepReply: self.receiver.on_dep_reply,
            m.Error: self.receiver.on_error,
            m.RemoteDepCheck: self._on_remote_dep_check,
            m.LogCheck: self._on_log_check,
            m.StableNotice: self.receiver.on_stable_notice,
            m.HeartbeatAck: self._on_heartbeat_ack,
            m.UnloggedFloor: self._on_unlogged_floor,
        }
        self.timers.add("housekeeping", self._housekeeping, now, delay=config.tick_s)
        self.timers.add("ship", self._ship, now)

    # -- timers -----------------------------------------------------------------------------

    def _housekeeping(self, now: float) -> list:
        self.timers.after("housekeeping", self.config.tick_s, now)
        return self.tick(now)

    def tick(self, now: float) -> list:
        """Ship what is due (and resend to silent peers), retry and pump incoming entries,
        expire dependency waiters, report progress."""
        out: list = []
        out += self._ship(now)
        out += self.receiver.retry(now)
        out += self.receiver.pump(now)
        out += self._expire_waiters(now)
        self._expire_held(now)
        out += self._report_progress(now)
        return out

    def reset_latencies(self) -> None:
        """Stages of remote visibility, from a write's version clock at its origin: logged
        there for shipping (``log_lag``, our own writes); then, for other DCs' writes, the
        receiver's stages (``arrived``, ``first_visible``, ``visibility``)."""
        self.log_lag = LatencyRecorder(max_samples=200_000)
        self.receiver.reset_latencies()

    def _ship(self, now: float) -> list:
        out = self.shipper.ship(now)
        self._arm_ship(now)
        return out

    def _arm_ship(self, now: float) -> None:
        """The ``ship`` timer follows the earliest batch due (due times: our wall clock)."""
        due = self.shipper.next_due()
        if due is not None:
            self.timers.at_wall("ship", due, now)
        else:
            self.timers.cancel("ship")

    @property
    def last_logged(self) -> int:
        return self.shipper.last_logged

    @property
    def applied(self) -> dict[int, int]:
        """How far each other DC's log is applied here."""
        return self.receiver.applied

    @property
    def visibility(self) -> dict[int, LatencyRecorder]:
        return self.receiver.visibility

    @property
    def _inbox(self) -> dict:
        """Other DCs' entries received and not applied yet, per origin (the simulator
        waits for them to drain)."""
        return self.receiver.inbox

    def applied_vector(self) -> dict[int, int]:
        """How far each DC's log is applied here (our own: everything logged)."""
        return {**self.applied, self.dc: self.last_logged}

    def collectable(self) -> dict[int, int]:
        """dc -> position of its log up to which its tombstones may be collected here."""
        return self.stability.collectable(self.applied, self.global_stable())

    def global_stable(self) -> dict[int, int]:
        """dc -> position of its log applied in every DC."""
        return self.stability.global_stable(self.applied_vector())

    def unlogged_floor(self) -> int:
        """Every write of our DC stamped below this is in our log (0: a serving node has
        not told us yet). Each node's ``UnloggedFloor`` bounds what it holds unlogged and
        what it will stamp; a write leaves a node's count only once the node learns it
        was logged, which is after we logged it."""
        if self.ring is None or not self.ring.names or self._newer_ring_seen > self.epoch:
            return 0
        floor = min(self._node_floors.get(name, 0) for name in self.ring.names)
        for held, _until in self._departed_floors.values():
            floor = min(floor, held)
        return floor

    def _on_unlogged_floor(self, src: str, msg: m.UnloggedFloor, now: float) -> list:
        if msg.epoch > self.epoch:
            # A member on a newer ring: members we do not know of may stamp. No floor of
            # ours until we have that ring.
            self._newer_ring_seen = max(self._newer_ring_seen, msg.epoch)
            self.counters["floor_from_newer_ring"] += 1
            return self.receiver.want_ring(now)
        if self.ring is None or src not in self.ring.names:
            self.counters["floor_from_unknown"] += 1
            return []
        self._node_floors[src] = msg.clock
        return []

    def _forget_departed_floors(self, ring, now: float) -> None:
        """A member that leaves the ring may have handed a write to another just before,
        still on its way to it: its last floor counts on for ``DEPARTED_FLOOR_S``."""
        for name, floor in self._node_floors.items():
            if name not in ring.names:
                self._departed_floors[name] = (floor, now + DEPARTED_FLOOR_S)
        self._node_floors = {name: floor for name, floor in self._node_floors.items()
                             if name in ring.names}
        self._expire_departed_floors(now)

    def _expire_departed_floors(self, now: float) -> None:
        names = self.ring.names if self.ring is not None else ()
        for name in [n for n, (_f, until) in self._departed_floors.items()
                     if until <= now or n in names]:
            del self._departed_floors[name]

    def heartbeat_report(self) -> dict:
        medians = {dc: rec.recent_median() for dc, rec in self.receiver.visibility.items()}
        return {"visibility_ms": tuple((dc, round(s * 1000)) for dc, s in medians.items()
                                       if s is not None)}

    def stats(self) -> dict:
        rx = self.receiver
        out = {
            "name": self.name, "dc": self.dc, "epoch": self.epoch,
            "logged": self.last_logged, "log_retained": self.shipper.retained,
            "applied": {str(dc): n for dc, n in sorted(self.applied.items())},
            "global_stable": {str(dc): n for dc, n in sorted(self._global.items())},
            "updates_waiting_on_dependencies": rx.waiting(),
            # per DC: entries waiting until that DC's log is applied (ours: logged) further
            "waiting_on_dc": rx.blocked_by_dc(),
            "updates_in_flight": rx.in_flight(),
            "dep_waiters": len(self._waiters),
            "ships_held": len(self._held),
            "clock_ahead_ms": round(self.dc_time.ahead_s * 1000),
            # tombstones (stability.py): stamps in µs, 0 = not known yet
            "unlogged_floor": self.unlogged_floor(), "collect_below": self._collect_below,
            **self.counters,
        }
        def percentiles(name: str, rec: LatencyRecorder) -> None:
            out[f"{name}_p50_ms"] = round(rec.percentile(50) * 1000, 2)
            out[f"{name}_p99_ms"] = round(rec.percentile(99) * 1000, 2)

        percentiles("log_lag", self.log_lag)
        for dc, peer in sorted(self.peers.items()):
            out[f"unacked_to_dc{dc}"] = self.last_logged - peer.acked
            out[f"unapplied_at_dc{dc}"] = self.last_logged - peer.applied
            percentiles(f"visibility_from_dc{dc}", rx.visibility[dc])
            out[f"visibility_from_dc{dc}_count"] = rx.visibility[dc].count
            percentiles(f"first_visible_from_dc{dc}", rx.first_visible[dc])
            percentiles(f"arrived_from_dc{dc}", rx.arrived[dc])
        logged = self.counters["entries_logged"]
        if logged and self.peers:  # 1.0: every entry crossed each link once
            out["sent_per_logged"] = round(
                self.counters["entries_sent"] / (logged * len(self.peers)), 3)
        wan_bytes = self.io_counters.get("wan_bytes_sent", 0)  # counted by the WAN driver
        if wan_bytes and self.counters["entries_sent"]:
            out["wan_bytes_per_update"] = round(wan_bytes / self.counters["entries_sent"], 1)
        return out

    # -- helpers ----------------------------------------------------------------------------

    @property
    def store_clock_us(self) -> int:
        """The largest log time we gave (heartbeats carry it to the manager)."""
        return self.clock.last

    def _on_heartbeat_ack(self, src: str, msg: m.HeartbeatAck, now: float) -> list:
        self.dc_time.note(msg.ahead_us, msg.sent_at_us,
                          self.heartbeats_sent.get(msg.sent_at_us))
        return []

    def _on_ring_update(self, src: str, msg: m.RingUpdate, now: float) -> list:
        if self.ring is not None and msg.ring.epoch <= self.ring.epoch:
            return []
        self.ring = msg.ring
        self._forget_departed_floors(msg.ring, now)
        self.counters["ring_changes"] += 1
        self._reported = ()  # new members must hear the progress too
        return self.receiver.on_new_ring(msg.ring, now)

    # -- origin side: log and ship (``Shipper``) -------------------------------------------

    def _on_ship(self, src: str, msg: m.Ship, now: float) -> list:
        done = self._logged_position(msg.key, msg.version)
        if done is not None:
            self.counters["ship_duplicate"] += 1
            return [Send(src, m.Shipped(msg.key, msg.version, *done))]
        held = self._held.get((msg.key, msg.version))
        if held is not None:  # sent again (or by another node of its chain)
            self.counters["ship_held_again"] += 1
            if src not in held.srcs:
                held.srcs.append(src)
            return []
        missing = [dep for dep in msg.deps if not self._dep_logged(msg.key, dep)]
        if missing:
            self._hold(src, msg, missing, now)
            return []
        out = self._log([(msg, [src])], now)
        self._arm_ship(now)
        return out + self.receiver.on_logged(now)

    def _log(self, work: list, now: float) -> list:
        """Log each write of ``work`` (``(Ship, senders)``, its dependencies logged), and
        what waited for them in turn."""
        out: list = []
        work = collections.deque(work)
        while work:
            msg, srcs = work.popleft()
            done = self._logged_position(msg.key, msg.version)
            if done is not None:  # (a newer version of its key came first: it stands for it)
                out += [Send(src, m.Shipped(msg.key, msg.version, *done)) for src in srcs]
                continue
            # (Our clock held back if it runs ahead of the DC's: log times end up in the
            # floors of later writes, and would push their versions ahead in every DC.)
            logged_at = self.clock.next(self.dc_time.now(now), msg.version.clock)
            after = msg.past
            if after > self.last_logged:  # (a past the client made up: nothing to wait for)
                self.counters["ship_past_clamped"] += 1
                after = self.last_logged
            # Each dependency: the first version of its key logged at or after it (it, or
            # one that replaced it unlogged and carries its past; its own key's too), unless
            # truncated (applied everywhere) or within ``after``; for several on one key,
            # every version logged between the first's and the last's (a newer version
            # does not carry an older one's past unless it replaced it unlogged: seed
            # 7680622).
            waits: set = set()
            for key, (low, high) in _clock_ranges(msg.deps).items():
                waits.update(self.shipper.logged_between(key, low, high))
            waits = tuple(sorted(w for w in waits if w > after))
            if len(waits) > m.MAX_WAITS:  # (then as a prefix: it covers them, and more)
                self.counters["ship_waits_as_prefix"] += 1
                after, waits = waits[-1], ()
            # (logged with its place in ``seen``: it is the newest of its key, see above)
            seq = self.shipper.append(msg, logged_at, self.receiver.needs(), now, after, waits)
            self._note_own(msg.key, msg.version, seq)
            self.counters["entries_logged"] += 1
            self.log_lag.record(max(0.0, now - msg.version.clock / 1e6))
            out += [Send(src, m.Shipped(msg.key, msg.version, seq, logged_at)) for src in srcs]
            out += [self._answer(w) for w in
                    self._waiters.wake(self._satisfied, slot=("own", msg.key))]
            work.extend(self._unblocked(msg.key, out))
        return out

    def _repair_seen(self) -> None:
        """Logging a write and recording it in ``seen`` were two writes: a kill between
        them left a retained entry ``seen`` lacked, and the node's resend of it would be
        logged a second time (jepsen seed 202). They are one write now (``append``); a
        log written before that is repaired at restart: record what the log holds."""
        for key, version, seq in self.shipper.newest_retained():
            known = self.log.seen(self.dc, key)
            if known is None or known[0] < version:
                self.counters["seen_repaired"] += 1
                self.log.put_seen(self.dc, key, version, seq)

    def _logged_position(self, key: str, version: Version) -> tuple[int, int] | None:
        """``(seq, logged_at)`` of the newest logged version of ``key`` if it is
        ``version`` or newer (log time: exact from the recent log, else our clock, past
        it)."""
        known = self._own_newest(key)
        if known is None or known[0] < version:
            return None
        recent = self.shipper.find(key, version)
        return recent if recent is not None else (known[1], self.clock.last)

    def _dep_logged(self, key: str, dep: tuple) -> bool:
        """Whether dependency ``(key, clock)`` of a write of ``key`` is logged (a
        dependency on the written key itself is covered by the write)."""
        dep_key, clock = dep
        if dep_key == key:
            return True
        known = self._own_newest(dep_key)
        return known is not None and known[0] >= Version(clock, self.dc)

    def _own_newest(self, key: str) -> tuple | None:
        known = self._own.get(key)
        if known is None:
            known = self.log.seen(self.dc, key)
            if known is not None:
                self._note_own(key, *known)
        return known

    def _note_own(self, key: str, version: Version, seq: int) -> None:
        self._own[key] = (version, seq)
        if len(self._own) > self.config.max_own_index:
            self._own.popitem(last=False)

    def _hold(self, src: str, msg: m.Ship, missing: list, now: float) -> None:
        size = len(msg.key) + len(msg.value or b"") + 32 * (len(msg.deps) + 2)
        if (len(self._held) >= self.config.max_held_ships
                or self._held_bytes + size > self.config.max_held_bytes):
            self.counters["ship_held_dropped"] += 1  # its node sends it again
            return
        held = _HeldShip(msg, [src], missing, size, now + self.config.held_ship_s)
        self._held[(msg.key, msg.version)] = held
        self._held_bytes += size
        self._held_by_key.setdefault(missing[-1][0], {})[(msg.key, msg.version)] = held
        self._held_order.append(held)
        self.counters["ship_held"] += 1

    def _unblocked(self, key: str, out: list) -> list:
        """``key`` was logged: the held Ships that waited for it and now have all their
        dependencies logged (those still missing one wait for it instead; those whose own
        key has a newer version logged meanwhile are answered with its position)."""
        ready = []
        for slot, held in self._held_by_key.pop(key, {}).items():
            while held.missing and self._dep_logged(held.ship.key, held.missing[-1]):
                held.missing.pop()  # (each dependency is found logged once: linear work)
            if held.missing:
                self._held_by_key.setdefault(held.missing[-1][0], {})[slot] = held
                continue
            self._unhold(held)
            done = self._logged_position(held.ship.key, held.ship.version)
            if done is not None:
                out += [Send(src, m.Shipped(held.ship.key, held.ship.version, *done))
                        for src in held.srcs]
            else:
                ready.append((held.ship, held.srcs))
        return ready

    def _unhold(self, held: _HeldShip) -> None:
        del self._held[(held.ship.key, held.ship.version)]
        self._held_bytes -= held.size

    def _expire_held(self, now: float) -> None:
        while self._held_order and self._held_order[0].until <= now:
            held = self._held_order.popleft()
            slot = (held.ship.key, held.ship.version)
            if self._held.get(slot) is held:
                self._unhold(held)
                waiting = self._held_by_key.get(held.missing[-1][0], {})
                waiting.pop(slot, None)
                if not waiting:
                    self._held_by_key.pop(held.missing[-1][0], None)
                self.counters["ship_held_expired"] += 1

    def _on_ship_ack(self, src: str, msg: m.ShipAck, now: float) -> list:
        peer = self.peers.get(msg.dc)
        if peer is None or src != peer.name:
            self.counters["ack_from_unknown"] += 1
            return []
        applied = dict(msg.applied)
        self.shipper.on_ack(msg.dc, msg.received, applied.get(self.dc, 0), now)
        self.stability.note(msg.dc, applied)
        self.stability.note_floor(msg.dc, msg.low_seq, msg.low_clock)
        self._arm_ship(now)
        return self._on_progress(now)

    def _on_progress(self, now: float) -> list:
        """The applied vectors moved: Global-Write-Stable, dependency waiters, truncation."""
        self._global = self.global_stable()
        self.shipper.truncate(self._global.get(self.dc, 0))
        return self._wake_waiters(now)

    # -- receiver side: apply other DCs' writes (``Receiver``) ---------------------------------

    def _on_ship_batch(self, src: str, msg: m.ShipBatch, now: float) -> list:
        peer = self.peers.get(msg.origin_dc)
        if peer is None or src != peer.name:
            self.counters["batch_from_unknown"] += 1
            return []
        out = self.receiver.on_batch(msg, now)
        out += self._wake_waiters(now)
        return out

    # -- dependency checks from frontends ------------------------------------------------------

    def _on_remote_dep_check(self, src: str, msg: m.RemoteDepCheck, now: float) -> list:
        waiter = _DepWaiter(src, msg.op, msg.key, msg.version, msg.seq)
        if msg.version.dc == self.dc:
            # One of ours (a settle): once it, or a newer version of its key, is logged.
            if self._satisfied(waiter):
                return [self._answer(waiter)]
            if not self._waiters.add(waiter, now + self.config.dep_wait_s, ("own", msg.key)):
                return [Send(src, m.Error(msg.op, m.OVERLOADED, "too many dependency checks",
                                          self.epoch))]
            self.counters["own_check_waited"] += 1
            return []
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
                                   for dc, n in self.receiver.started.items()))
            return Send(w.src, m.LogReply(w.op, True, vector, self.clock.last, started))
        return Send(w.src, m.DepReply(w.op, w.key, ok, self.clock.last if ok else 0))

    def _satisfied(self, w: _DepWaiter) -> bool:
        origin = w.version.dc
        if origin == self.dc and not w.log_check:  # one of our writes: logged?
            known = self._own_newest(w.key)
            return known is not None and known[0] >= w.version
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
        self._expire_departed_floors(now)
        own_floor = self.unlogged_floor()
        collect_below = self._collect_below = self.stability.collect_below(self.applied,
                                                                            own_floor)
        received = self.receiver.received
        state = (tuple(sorted(applied.items())), tuple(sorted(received.items())),
                 tuple(sorted(self._global.items())), collectable,
                 own_floor // FLOOR_STEP_US, collect_below // FLOOR_STEP_US)
        since = now - self._progress_sent_at
        if since < 1.0 and (state == self._reported or since < self.config.progress_interval_s):
            return []
        self._reported = state
        self._progress_sent_at = now
        vector = tuple(sorted(applied.items()))
        out = [Send(peer.name, m.ShipAck(self.dc, received[dc], vector, own_floor,
                                         self.last_logged if own_floor else 0))
               for dc, peer in self.peers.items()]
        if self.ring is not None:
            progress = m.GeoProgress(vector, tuple(sorted(self._global.items())),
                                     collectable, collect_below)
            out += [Send(name, progress) for name in self.ring.names]
        return out
