"""Versions and the hybrid logical clock that stamps them.

A version is an LWW stamp ``(clock, dc)``: versions of one key are totally ordered by
``clock`` then ``dc``. The head of a chain assigns ``clock`` from a hybrid logical clock
that never goes backwards, is ahead of the key's current version, and is ahead of every
stamp the writing session has seen (its *floor*), so a causally later write always gets a
larger version (DESIGN.md, "Causality implies LWW order").

The physical component comes from the injected time ``now`` (seconds, float) so cores stay
deterministic under the simulator.
"""

from __future__ import annotations

from typing import Callable

import attrs

CLOCK_MAX = 2**63 - 1


def _check_clock(_inst, _attr, value):
    if type(value) is not int or not 0 <= value <= CLOCK_MAX:
        raise ValueError(f"version clock must be an int in [0, 2**63), got {value!r}")


def _check_dc(_inst, _attr, value):
    if type(value) is not int or not 0 <= value < 2**16:
        raise ValueError(f"version dc must be an int in [0, 65536), got {value!r}")


@attrs.frozen(order=True, slots=True, repr=False)
class Version:
    """LWW stamp of one write. Compare with <, ==; encode as ``[clock, dc]``."""

    clock: int = attrs.field(validator=_check_clock)
    dc: int = attrs.field(default=0, validator=_check_dc)

    def __repr__(self) -> str:
        return f"v{self.clock}.{self.dc}"

    def to_wire(self) -> list:
        return [self.clock, self.dc]

    @classmethod
    def coerce(cls, value) -> "Version":
        """Accept a Version or its wire form ``[clock, dc]`` (the codec's converter)."""
        if isinstance(value, Version):
            return value
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return cls(value[0], value[1])
        raise ValueError(f"a version is [clock, dc], got {value!r}")

    @classmethod
    def coerce_optional(cls, value) -> "Version | None":
        return None if value is None else cls.coerce(value)


class HybridClock:
    """Monotonic clock in microseconds: ``max(physical, last + 1, floor + 1)``.

    Not thread-safe; each core owns one. ``now`` is injected by the caller.
    """

    __slots__ = ("_last",)

    def __init__(self, last: int = 0) -> None:
        self._last = last

    @property
    def last(self) -> int:
        return self._last

    def next(self, now: float, floor: int = 0) -> int:
        physical = int(now * 1_000_000)
        clock = max(physical, self._last + 1, floor + 1)
        assert clock > self._last
        self._last = clock
        return clock

    def observe(self, clock: int) -> None:
        """Move past a clock seen elsewhere (e.g. a stored version after restart)."""
        if clock > self._last:
            self._last = clock


MAX_CLOCK_AHEAD_S = 1.0  # how far a process may stamp ahead of its DC's median clock


class DcTime:
    """This process's clock, held back to at most ``bound_s`` ahead of its datacenter's.

    The manager measures every process's clock against the median of the DC's processes
    (``HeartbeatAck.ahead_us``, docs/protocol.md §3.1 "Clocks"): a median, so one bad
    clock, the manager's included, does not move it. A process that runs ahead by more
    than ``bound_s`` takes its time from here wherever the time ends up in a stamp (a
    head's versions, a proxy's log times) or is compared with one (tombstone grace, the
    frontend's floor check), so its clock does not push every later version in every DC
    ahead. A jump since the last measure is not measured yet: the time given runs at most
    ``bound_s`` ahead of the measured heartbeat's departure plus the real time since (on
    the ``monotonic`` clock), so a jump ahead stamps at most that far ahead until the next
    measure, and the time still runs while the manager is down. Holding a hybrid clock's
    physical part back is always safe: versions still grow by logical increments above
    the key's version and the session's floor.
    """

    __slots__ = ("bound_s", "ahead_s", "_measured_at", "_measured_mono", "_monotonic")

    def __init__(self, bound_s: float = MAX_CLOCK_AHEAD_S,
                 monotonic: Callable[[], float] | None = None) -> None:
        self.bound_s = bound_s
        self.ahead_s = 0.0  # the manager's last measure
        self._measured_at: float | None = None  # our clock when that heartbeat left
        self._measured_mono: float | None = None  # the monotonic clock then
        self._monotonic = monotonic  # None (transcripts): the time stops at the bound

    def note(self, ahead_us: int, sent_at_us: int, sent_mono: float | None = None) -> None:
        self.ahead_s = ahead_us / 1e6
        self._measured_at = sent_at_us / 1e6 if sent_at_us else None
        self._measured_mono = sent_mono

    @property
    def held_back_s(self) -> float:
        return max(0.0, self.ahead_s - self.bound_s)

    def now(self, now: float) -> float:
        """``now`` (our own clock), at most ``bound_s`` ahead of the DC's."""
        t = now - self.held_back_s
        if self._measured_at is not None:
            since = 0.0
            if self._monotonic is not None and self._measured_mono is not None:
                since = max(0.0, self._monotonic() - self._measured_mono)
            t = min(t, self._measured_at - self.held_back_s + self.bound_s + since)
        return t


def _vclock_entries(value) -> tuple:
    if isinstance(value, dict):
        value = value.items()
    out = {}
    for pair in value:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"a version vector entry is [dc, clock], got {pair!r}")
        dc, clock = pair
        _check_dc(None, None, dc)
        _check_clock(None, None, clock)
        if dc in out:
            raise ValueError(f"dc {dc} twice in a version vector")
        if clock:
            out[dc] = clock
    return tuple(sorted(out.items()))


@attrs.frozen(slots=True, repr=False)
class VClock:
    """Version vector over DCs: for each DC, the newest clock of that DC's writes to this
    key that a version has seen (overwritten or merged). It detects concurrency; it never
    decides a winner (the LWW ``Version`` does). Wire form: ``[[dc, clock], ...]``."""

    entries: tuple = attrs.field(default=(), converter=_vclock_entries)

    def __repr__(self) -> str:
        return "{" + ",".join(f"{dc}:{clock}" for dc, clock in self.entries) + "}"

    def to_wire(self) -> list:
        return [list(e) for e in self.entries]

    @classmethod
    def coerce(cls, value) -> "VClock":
        """Accept a VClock or its wire form (a list of pairs, not a map)."""
        if isinstance(value, VClock):
            return value
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"a version vector is [[dc, clock], ...], got {value!r}")
        return cls(value)

    def get(self, dc: int) -> int:
        for d, clock in self.entries:
            if d == dc:
                return clock
        return 0

    def merge(self, other: "VClock") -> "VClock":
        merged = dict(self.entries)
        for dc, clock in other.entries:
            if clock > merged.get(dc, 0):
                merged[dc] = clock
        return VClock(merged)

    def advance(self, dc: int, clock: int) -> "VClock":
        """This vector plus a new write of ``dc`` at ``clock``."""
        return self.merge(VClock(((dc, clock),)))

    def dominates(self, other: "VClock") -> bool:
        """Every entry of ``other`` is <= ours: ``other`` is in our causal past (or equal)."""
        mine = dict(self.entries)
        return all(clock <= mine.get(dc, 0) for dc, clock in other.entries)

    def concurrent(self, other: "VClock") -> bool:
        return not self.dominates(other) and not other.dominates(self)


@attrs.frozen(slots=True)
class Stamped:
    """A value with its LWW stamp and version vector: the unit that DCs merge.

    ``merge`` keeps the larger ``Version`` (ties cannot happen for distinct writes: the
    stamp includes the writer's dc and clocks are unique per dc) and the union of vectors,
    so it is commutative, associative and idempotent: every DC that has merged the same
    writes, in any order, holds the same thing (convergence)."""

    version: Version
    vclock: VClock
    value: object = None

    def merge(self, other: "Stamped") -> "Stamped":
        winner = self if self.version >= other.version else other
        return Stamped(winner.version, self.vclock.merge(other.vclock), winner.value)
