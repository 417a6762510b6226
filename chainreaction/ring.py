"""The one place that knows the ring: consistent hashing, chains and arcs.

Theory of operation
-------------------
Every backend owns ``vnodes`` tokens on a 64-bit hash circle (token = hash of
``"name#i"``). A key hashes to a *point*; the key's *chain* is the first
``replication`` distinct members met walking clockwise from the point. Position 1 is the
head, the last position the tail (DESIGN.md "Ring").

The circle between two consecutive tokens is an *arc*: every point in an arc has the same
chain, so chains are computed once per arc and looked up with a bisect. When the ring
changes, the union of both rings' tokens cuts the circle into *segments* on which both the
old and the new chain are constant: that is what state transfer works on, and a
``RangeSet`` of such ``(start, end]`` ranges tells which keys fall in a copy.

A member may be *down* (silent for the failure timeout): its tokens stay, so arcs keep
their bounds and what each replica holds stays comparable across rings (``custody.py``),
but chains skip it. A down member that comes back is in its old chains again.

A member may be a *learner* (issue 18: a node that joined, or came back on an empty disk,
and holds nothing yet): chains are computed as if it were down, and it is inserted just
before the tail of each chain it will be in once it holds its arcs. So it stores and
forwards the writes flowing down while it copies its arcs from their holders, and is
never the head (no put waits for its copy) nor the tail (no dependency check does); when
it holds them, the manager's next ring has it as a plain member. (A chain of one node has
no middle: the learner follows it and is its tail.)

A ring is immutable and carries an ``epoch``; the manager makes a new one for every change.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import Iterable, Iterator

import attrs

HASH_SPACE = 2**64
MAX_WEIGHT = 16


def hash_point(data: str | bytes) -> int:
    """64-bit point on the circle; stable across processes and Python versions."""
    raw = data.encode() if isinstance(data, str) else data
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big")


def _members(value) -> tuple:
    return tuple(Member.coerce(m) for m in value)


@attrs.frozen(slots=True)
class Member:
    """A node of the ring. Placement labels: ``host`` (the machine; no chain holds two
    replicas on one host, "" = its own), ``zone`` (chains spread over zones where there
    are enough, "" = its own) and ``weight`` (a machine twice as large takes about twice
    the keys: that many times the tokens)."""

    name: str = attrs.field(validator=attrs.validators.instance_of(str))
    addr: str = attrs.field(validator=attrs.validators.instance_of(str))
    host: str = attrs.field(default="", validator=attrs.validators.instance_of(str))
    zone: str = attrs.field(default="", validator=attrs.validators.instance_of(str))
    weight: int = attrs.field(default=1)

    @weight.validator
    def _check_weight(self, _attr, value) -> None:
        if type(value) is not int or not 1 <= value <= MAX_WEIGHT:
            raise ValueError(f"a member's weight is 1..{MAX_WEIGHT}, got {value!r}")

    def to_wire(self) -> list:
        if (self.host, self.zone, self.weight) == ("", "", 1):
            return [self.name, self.addr]
        return [self.name, self.addr, self.host, self.zone, self.weight]

    @classmethod
    def coerce(cls, value) -> "Member":
        if isinstance(value, Member):
            return value
        if isinstance(value, (list, tuple)) and len(value) in (2, 5):
            return cls(*value)
        raise ValueError(f"a member is [name, addr] or [name, addr, host, zone, weight], "
                         f"got {value!r}")


def _positive(_inst, attr, value):
    if type(value) is not int or value < 1:
        raise ValueError(f"{attr.name} must be a positive int, got {value!r}")


def _non_negative(_inst, attr, value):
    if type(value) is not int or value < 0:
        raise ValueError(f"{attr.name} must be a non-negative int, got {value!r}")


@attrs.frozen(slots=True, repr=False)
class Ring:
    """Membership at one epoch. Build with ``Ring(epoch, members, replication, vnodes)``."""

    epoch: int = attrs.field(validator=_non_negative)
    members: tuple = attrs.field(converter=_members)
    replication: int = attrs.field(validator=_positive)
    vnodes: int = attrs.field(default=16, validator=_positive)
    down: frozenset = attrs.field(default=frozenset(), converter=frozenset)
    learners: frozenset = attrs.field(default=frozenset(), converter=frozenset)
    # Derived lookup tables, not part of equality or the wire form.
    _tokens: tuple = attrs.field(init=False, eq=False, repr=False)
    _chains: tuple = attrs.field(init=False, eq=False, repr=False)
    _addrs: dict = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"ring members must have distinct names: {names}")
        if not self.down <= set(names) or not all(isinstance(n, str) for n in self.down):
            raise ValueError(f"down members {sorted(map(str, self.down))} not all in {names}")
        if not self.learners <= set(names) or not all(isinstance(n, str)
                                                     for n in self.learners):
            raise ValueError(f"learners {sorted(map(str, self.learners))} not all in {names}")
        owners = sorted(
            (hash_point(f"{m.name}#{i}"), m.name) for m in self.members
            for i in range(self.vnodes * m.weight)
        )
        tokens = tuple(t for t, _ in owners)
        host = {m.name: m.host or "\0" + m.name for m in self.members}
        zone = {m.name: m.zone or host[m.name] for m in self.members}  # "": its host's
        chains = self._chains_of(owners, self.down, host, zone)
        learning = self.learners - self.down
        if learning:
            final = chains
            base = self._chains_of(owners, self.down | learning, host, zone)
            chains = []
            for full, chain in zip(final, base):
                extra = [n for n in full if n in learning]
                chains.append(tuple(chain[:-1]) + tuple(extra) + tuple(chain[-1:])
                              if len(chain) > 1 else tuple(chain) + tuple(extra))
        object.__setattr__(self, "_tokens", tokens)
        object.__setattr__(self, "_chains", tuple(chains))
        object.__setattr__(self, "_addrs", {m.name: m.addr for m in self.members})

    def _chains_of(self, owners: list, down: frozenset, host: dict, zone: dict) -> list:
        """Every arc's chain with the members ``down`` skipped."""
        live = [m.name for m in self.members if m.name not in down]
        # no two replicas on one host: a chain is no longer than the live hosts
        length = min(self.replication, len({host[n] for n in live}))
        zones = len({zone[n] for n in live})
        return [self._chain_at(owners, i, length, len(live), host, zone, zones, down)
                for i in range(len(owners))]

    def _chain_at(self, owners: list, i: int, length: int, live: int, host: dict,
                  zone: dict, zones: int, down: frozenset) -> tuple:
        """The chain of the arc starting at token ``i``: the live members met walking
        clockwise, each on a host (and, while there are zones left, in a zone) no earlier
        one is on; once every zone is in, members on new hosts in walk order. Without
        labels: simply the first ``length`` distinct live members. (``zones``: how many
        zones the live members are in; the walk stops as soon as the rest is decided.)"""
        chain: list[str] = []
        spare: list[str] = []  # met on a new host but in a zone already in the chain
        met: set = set()
        hosts: set = set()
        used_zones: set = set()
        j = i
        while len(chain) < length and len(met) < live:
            if len(used_zones) == zones and len({host[o] for o in spare} - hosts) >= (
                    length - len(chain)):
                break  # (no zone left to add: the spares in walk order complete it)
            owner = owners[j % len(owners)][1]
            j += 1
            if owner in down or owner in met:
                continue
            met.add(owner)
            if host[owner] in hosts:
                continue
            if zone[owner] not in used_zones:
                chain.append(owner)
                hosts.add(host[owner])
                used_zones.add(zone[owner])
            else:
                spare.append(owner)
        for owner in spare:  # fewer zones than replicas: other hosts of zones already in
            if len(chain) >= length:
                break
            if host[owner] not in hosts:
                chain.append(owner)
                hosts.add(host[owner])
        return tuple(chain)

    def __repr__(self) -> str:
        names = ",".join(m.name + ("(down)" if m.name in self.down else "")
                         + ("(learner)" if m.name in self.learners else "")
                         for m in self.members)
        return f"Ring(e{self.epoch} R={self.replication} [{names}])"

    # -- lookups ----------------------------------------------------------------------

    @property
    def names(self) -> tuple:
        """The members that serve: down ones left out."""
        return tuple(m.name for m in self.members if m.name not in self.down)

    @property
    def all_names(self) -> tuple:
        return tuple(m.name for m in self.members)

    def addr(self, name: str) -> str | None:
        return self._addrs.get(name)

    def __contains__(self, name: str) -> bool:
        """Whether ``name`` is a member that serves (not down)."""
        return name in self._addrs and name not in self.down

    @property
    def serving(self) -> bool:
        """Whether any member serves: there are chains to look keys up in."""
        return len(self.members) > len(self.down)

    def arc_of_point(self, point: int) -> int:
        """Index of the arc holding ``point``: the first token at or after it (wrapping)."""
        if not self._tokens:
            raise LookupError("the ring has no members")
        i = bisect.bisect_left(self._tokens, point)
        return 0 if i == len(self._tokens) else i

    def arc_of(self, key: str) -> int:
        return self.arc_of_point(hash_point(key))

    def chain_of_arc(self, arc: int) -> tuple:
        return self._chains[arc]

    def chain(self, key: str) -> tuple:
        """The chain of ``key``: member names, head first; () on an empty ring."""
        if not self._tokens:
            return ()
        return self._chains[self.arc_of(key)]

    def chain_at_point(self, point: int) -> tuple:
        return self._chains[self.arc_of_point(point)]

    def position(self, key: str, name: str) -> int:
        """1-based position of ``name`` in the chain of ``key``; 0 if not in it."""
        chain = self.chain(key)
        return chain.index(name) + 1 if name in chain else 0

    @property
    def arc_count(self) -> int:
        return len(self._tokens)

    def arc_range(self, arc: int) -> tuple[int, int]:
        """(start, end] of an arc; start > end means it wraps past zero."""
        end = self._tokens[arc]
        start = self._tokens[arc - 1] if arc > 0 else self._tokens[-1]
        return start, end

    @property
    def tokens(self) -> tuple:
        return self._tokens

    # -- wire form ----------------------------------------------------------------------

    def to_wire(self) -> list:
        wire = [self.epoch, [m.to_wire() for m in self.members], self.replication,
                self.vnodes, sorted(self.down)]
        return wire + [sorted(self.learners)] if self.learners else wire

    @classmethod
    def coerce(cls, value) -> "Ring":
        if isinstance(value, Ring):
            return value
        if isinstance(value, (list, tuple)) and len(value) in (5, 6):
            for names in value[4:]:
                if not isinstance(names, (list, tuple)):
                    raise ValueError(f"a ring's down members and learners are lists, got "
                                     f"{names!r}")
            return cls(*value)
        raise ValueError(f"a ring is [epoch, members, replication, vnodes, down(, learners)], "
                         f"got {value!r}")


def segments(old: Ring | None, new: Ring) -> Iterator[tuple[int, int, tuple, tuple, int]]:
    """Cut the circle by both rings' tokens.

    Yields ``(start, end, old_chain, new_chain, new_arc)`` for each segment ``(start, end]``
    (wrapping when start >= end). ``old_chain`` is ``()`` when there is no old ring.
    """
    if not new.members:
        return
    cuts = set(new.tokens)
    if old is not None and old.members:
        cuts.update(old.tokens)
    points = sorted(cuts)
    if not points:
        return
    for i, end in enumerate(points):
        start = points[i - 1]
        new_arc = new.arc_of_point(end)
        old_chain = old.chain_at_point(end) if old is not None and old.members else ()
        yield start, end, old_chain, new.chain_of_arc(new_arc), new_arc


class RangeSet:
    """Point membership over ``(start, end]`` ranges (wrapping when start >= end), for many
    lookups against the same ranges: wrapping ones are split, overlapping ones merged, a
    lookup is a bisect (a state transfer tests every key of a store against its ranges)."""

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        flat = []
        for start, end in ranges:
            if start < end:
                flat.append((start, end))
            else:
                flat.append((start, HASH_SPACE))
                flat.append((-1, end))
        flat.sort()
        merged: list[list[int]] = []
        for start, end in flat:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self._starts = [s for s, _ in merged]
        self._ends = [e for _, e in merged]

    def __contains__(self, point: int) -> bool:
        i = bisect.bisect_left(self._starts, point) - 1
        return i >= 0 and point <= self._ends[i]


def in_ranges(point: int, ranges: Iterable[tuple[int, int]]) -> bool:
    """Whether ``point`` lies in any ``(start, end]`` range (wrapping when start >= end)."""
    return point in RangeSet(ranges)
