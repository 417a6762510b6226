"""The one contract every protocol core follows (node, manager, frontend, remote proxy).

A core is a plain object. Everything it learns comes in through five calls, each given
the time on the process's clock; everything it wants done comes out as a list of effects
(``effects.py``: ``Send`` to a process, ``ToClient`` with a reply from the messages
module):

* ``handle(src, msg, now)``: a message from another process;
* ``client_request(conn, req, now)`` and ``client_gone(conn, now)``: a client's request,
  or its connection closing (only a frontend serves clients; others refuse);
* ``on_timer(now)``: the time is ``next_deadline()`` or later;
* ``link_down(peer, now)``: the driver's connection to ``peer`` broke or was refused (the
  simulator: ``peer`` crashed). A hint that comes sooner than any silence, never proof
  that the peer is down.

After every call the driver asks ``next_deadline()``, the time at which the core wants
``on_timer``, on the monotonic clock the core was given (``monotonic``; the event times
without one); it is never in the past once ``on_timer`` has run. There is no fixed tick
in a driver: every interval (heartbeats, lease renewal, batch pacing, resends,
housekeeping) is the core's own, in ``Timers``. ``stats()`` is the core's counters; a
``StatsRequest`` is answered here with them and the driver's own (``io_counters``), so a
process's stats come from one place, in production and in the simulator alike.

Two drivers interpret the effects: ``chainreaction/runtime/driver.py`` on real sockets
and ``sim/cluster.py`` on a simulated network and clock. Neither knows what a role does.
"""

from __future__ import annotations

import collections
import math
from typing import Callable

import attrs

from . import messages as m
from .effects import Send, ToClient
from .ring import Ring


@attrs.frozen
class Identity:
    """Who a member process is, for its heartbeats to the manager: the address peers
    reach it at and an incarnation that changes at every start (a restart is noticed)."""

    addr: str
    incarnation: int
    host: str = ""  # a node's placement labels (ring.Member)
    zone: str = ""
    weight: int = 1


class Timers:
    """A core's named deadlines, and what to call at each.

    Deadlines run on the monotonic clock the core was given (``time.monotonic``; the
    simulator's time): a heartbeat or a resend is due an interval later in real time,
    whatever the process's wall clock does meanwhile (a wall clock stepped back a minute
    must not silence a node's heartbeats for a minute). Without one (transcript tests)
    they run on the event times. Handlers still get the wall clock's ``now``.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock
        self._at: dict[str, float] = {}
        self._handler: dict[str, Callable[[float], list]] = {}

    def time(self, now: float) -> float:
        """The timers' time at the event of wall time ``now``."""
        return self._clock() if self._clock is not None else now

    def add(self, name: str, handler: Callable[[float], list], now: float,
            delay: float | None = None) -> None:
        """Register ``handler`` as timer ``name``, armed ``delay`` after ``now`` (None:
        not armed)."""
        self._handler[name] = handler
        if delay is not None:
            self.after(name, delay, now)

    def after(self, name: str, delay: float, now: float) -> None:
        """Arm ``name`` ``delay`` seconds after the event at wall time ``now``."""
        assert name in self._handler, name
        t = self.time(now)
        at = t + delay
        if delay > 0 and at <= t:  # (a delay below the float resolution at t)
            at = math.nextafter(t, math.inf)
        self._at[name] = at

    def at_wall(self, name: str, wall_at: float, now: float) -> None:
        """Arm ``name`` for the moment the wall clock reads ``wall_at`` (now: ``now``)."""
        if self._clock is None:  # on the event times: exactly then
            assert name in self._handler, name
            self._at[name] = max(now, wall_at)
        else:
            self.after(name, max(0.0, wall_at - now), now)

    def sooner(self, name: str, delay: float, now: float) -> None:
        """Arm ``name`` ``delay`` after ``now`` unless it is armed earlier already."""
        current = self._at.get(name)
        if current is None or self.time(now) + delay < current:
            self.after(name, delay, now)

    def cancel(self, name: str) -> None:
        self._at.pop(name, None)

    def armed(self, name: str) -> bool:
        return name in self._at

    def next(self) -> float | None:
        return min(self._at.values()) if self._at else None

    def run_due(self, now: float) -> list:
        """Call every handler whose deadline has come, earliest first (and any a handler
        armed for now); a handler re-arms its timer itself if it is periodic."""
        out: list = []
        t = self.time(now)
        for _ in range(len(self._handler) + 1):
            due = sorted((at, name) for name, at in self._at.items() if at <= t)
            if not due:
                break
            for at, name in due:
                if self._at.get(name) == at:  # not moved by a handler that ran before it
                    del self._at[name]
                    out += self._handler[name](now)
        return out


class Core:
    """Base of every protocol core: dispatch by message type, timers, stats answers and,
    for members of a DC (not the manager), heartbeats to the DC's manager."""

    role = "core"

    def __init__(self, name: str, now: float, *, manager: str | None = None,
                 identity: Identity | None = None, heartbeat_s: float = 0.2,
                 monotonic: Callable[[], float] | None = None) -> None:
        self.name = name
        self.ring: Ring | None = None  # the newest ring this process knows (a manager: its own)
        # A clock that never steps (time.monotonic; the simulator's time), for durations
        # that must hold in real time whatever the process's clock does: a node's lease.
        # None in transcript tests: the event times are the only clock then.
        self.monotonic = monotonic
        # sent_at_us of our last heartbeats -> monotonic time they left (a lease counts
        # from there)
        self.heartbeats_sent: collections.OrderedDict[int, float] = collections.OrderedDict()
        self.counters: collections.Counter = collections.Counter()
        # The driver's own counters (transport, WAN), shown in stats answers; set by it.
        self.io_counters: dict = {}
        self.timers = Timers(monotonic)
        self._handlers: dict[type, Callable] = {}
        self._manager = manager
        self._identity: Identity | None = None
        self._heartbeat_s = heartbeat_s
        if identity is not None:
            self.join(identity, now)

    # -- the contract ----------------------------------------------------------------------

    def handle(self, src: str, msg, now: float) -> list:
        self.observe_time(now)
        handler = self._handlers.get(type(msg))
        if handler is None:
            if type(msg) is m.StatsRequest:
                return self._on_stats_request(src, msg, now)
            self.counters["unexpected_message"] += 1
            return []
        self.counters["msg_" + type(msg).__name__] += 1
        return handler(src, msg, now)

    def join(self, identity: Identity, now: float) -> None:
        """Start heartbeating the manager as ``identity`` (the driver knows the address only
        once it listens)."""
        assert self._manager is not None, f"a {self.role} is no member of a DC"
        self._identity = identity
        self.timers.add("heartbeat", self._heartbeat, now, delay=0.0)

    def client_request(self, conn: int, req: m.ClientRequest, now: float) -> list:
        self.counters["client_request_refused"] += 1
        return [ToClient(conn, m.ErrorReply(req.id, m.BAD_REQUEST,
                                            f"{self.name} is a {self.role}, not a frontend"))]

    def client_gone(self, conn: int, now: float) -> list:
        return []

    def link_down(self, peer: str, now: float) -> list:
        return []

    def on_timer(self, now: float) -> list:
        self.observe_time(now)
        started = self.timers.time(now)
        out = self.timers.run_due(now)
        after = self.timers.next()
        # (Against the time the run started: on the monotonic clock, handlers that took
        # longer than the delay they re-armed with leave a deadline already past, which is
        # due at once, not a bug. Re-reading the clock here failed this check under load,
        # and the driver dropped every effect of the run.)
        assert after is None or after > started, (self.name, after, started)
        return out

    def next_deadline(self) -> float | None:
        return self.timers.next()

    def stats(self) -> dict:
        return dict(self.counters)

    def reset_latencies(self) -> None:
        """Start the latency recorders afresh (a benchmark's measured phase begins)."""

    # -- what subclasses may refine ----------------------------------------------------------

    def observe_time(self, now: float) -> None:
        """Called with the time of every event before it is handled."""

    @property
    def epoch(self) -> int:
        """The ring epoch this process knows (heartbeats report it)."""
        return self.ring.epoch if self.ring is not None else 0

    @property
    def store_clock_us(self) -> int:
        """The largest hybrid clock this process made or saw (heartbeats report it)."""
        return 0

    def syncing_arcs(self) -> tuple:
        """The arcs of our ring we are still copying (a node; heartbeats report them)."""
        return ()

    store_id = 0  # a node: the id of its store (heartbeats report it; custody.py)

    @property
    def done_reason(self) -> str | None:
        """Why this process has nothing left to do (a node removed from the ring that
        deleted what it held): its driver stops it. None while it serves."""
        return None

    def unreachable(self, now: float) -> tuple:
        """The members a node has not heard from for a while (heartbeats report them)."""
        return ()

    # -- shared behaviour ------------------------------------------------------------------

    def stats_answer(self) -> dict:
        """What a stats request is answered with: the driver's counters and the core's."""
        return {**self.io_counters, **self.stats()}

    def _on_stats_request(self, src: str, msg: m.StatsRequest, now: float) -> list:
        reply = [Send(src, m.StatsReply(msg.op, self.stats_answer()))]
        if msg.reset_latencies:
            self.reset_latencies()
        return reply

    def _heartbeat(self, now: float) -> list:
        """Tell the manager we are alive, which ring we know and how our clock reads; its
        ``HeartbeatAck`` renews a node's lease and measures our clock (manager.py)."""
        self.timers.after("heartbeat", self._heartbeat_s, now)
        assert self._identity is not None and self._manager is not None
        sent_at_us = int(now * 1_000_000)
        if self.monotonic is not None:
            # (the earliest, if our clock went back to the same microsecond: a lease may
            # only end too early, never too late)
            self.heartbeats_sent.setdefault(sent_at_us, self.monotonic())
            if len(self.heartbeats_sent) > 16:
                self.heartbeats_sent.popitem(last=False)
        return [Send(self._manager, m.Heartbeat(
            self.name, self.role, self._identity.addr, self._identity.incarnation,
            self.epoch, sent_at_us, self.store_clock_us, self.syncing_arcs(), self.store_id,
            self.unreachable(now), self._identity.host, self._identity.zone,
            self._identity.weight, **self.heartbeat_report()))]

    def heartbeat_report(self) -> dict:
        """What a heartbeat tells the manager for its status page (``Heartbeat``'s
        ``keys``, ``unstable``, ``visibility_ms``)."""
        return {}
