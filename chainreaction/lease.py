"""A node's ring lease: while it runs, the node may act as head (assign versions) and tail
(answer dependency checks) of the chains its ring gives it (docs/protocol.md §3.1,
``HeartbeatAck``).

The manager grants ``lease_ms`` with its answer to a heartbeat, half its failure timeout,
and may replace the node a failure timeout after it last heard from it. So the lease runs
from the moment the heartbeat that earned it left, measured on the **monotonic** clock: a
step of the node's wall clock (NTP, an operator, a skew healed) must not stretch it in
real time. (A clock stepped back while the node was idle used to silence its heartbeats
*and* stretch its lease: removed by the manager, it still acted as head. The simulator's
invariant checks found it.) Without a monotonic clock (transcript tests) the lease runs
on the event times, and a clock that goes back drops it.
"""

from __future__ import annotations

from typing import Callable


class RingLease:
    def __init__(self, monotonic: Callable[[], float] | None, required: bool, counters,
                 now: float) -> None:
        self.monotonic = monotonic
        self.required = required  # off only in single-core transcripts
        self.counters = counters
        self.until = float("-inf")  # on the monotonic clock (or the event times)
        self.last_event_at = now

    def _now(self, now: float) -> float:
        return self.monotonic() if self.monotonic is not None else now

    def observe(self, now: float) -> None:
        """Every event's time (our wall clock): on the event times, a step back drops it."""
        if self.monotonic is None and now < self.last_event_at and self.until > now:
            self.counters["lease_dropped_clock_back"] += 1
            self.until = float("-inf")
        self.last_event_at = now

    def grant(self, sent_at_us: int, lease_ms: int, heartbeats_sent: dict, now: float) -> None:
        """The manager's answer to our heartbeat sent at ``sent_at_us`` (our clock)."""
        if self.monotonic is not None:
            sent_at = heartbeats_sent.get(sent_at_us)  # None: not one of ours
        else:
            sent_at = sent_at_us / 1e6
            if sent_at > now:
                sent_at = None  # "sent later": sent before our clock went back
        if sent_at is not None:
            self.until = max(self.until, sent_at + lease_ms / 1000)

    def holds(self, now: float) -> bool:
        """Whether we may act as head or tail now (``now``: our clock)."""
        if not self.required:
            return True
        if self.monotonic is None and now < self.last_event_at:
            return False  # our clock went back: the next event drops the lease
        return self.left(now) > 0

    def left(self, now: float) -> float:
        """Seconds until the lease ends (negative: it has)."""
        return self.until - self._now(now)

    def may_run(self, now: float) -> bool:
        """Whether it has not ended: on the event times a clock set back could make an
        ended lease current again; on the monotonic clock, once ended it stays ended."""
        return self.left(now) > 0
