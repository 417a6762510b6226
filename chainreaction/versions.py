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
