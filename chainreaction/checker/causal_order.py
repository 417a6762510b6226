"""Causal order (CO = (so ∪ rf)+) without materialising it: the so ∪ rf graph, vector
clocks over sessions, and the CO queries the checks ask ("is a CO-before b", "the last
writes of a key in an op's past")."""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import compress
from operator import gt
from typing import Iterable

from .events import Op


@dataclass(slots=True)
class WriteIndex:
    """One session's writes of one key, in session order, for bisection by position."""

    positions: list[int] = field(default_factory=list)
    writes: list[Op] = field(default_factory=list)
    versioned_positions: list[int] = field(default_factory=list)
    versioned_writes: list[Op] = field(default_factory=list)


class CausalOrder:
    """Mixin of ``Analysis``, which sets the state read here in ``__init__``: ``nodes``,
    ``sessions`` and ``write_index``, and the clock helpers ``slots`` and ``zero``."""

    def co_successors(self, node: int) -> Iterable[int]:
        op = self.nodes[node]
        session = self.sessions[op.session]
        if op.pos < len(session):
            yield session[op.pos].id
        for reader in op.readers:
            if not reader.rf_cut:
                yield reader.id

    def co_predecessors(self, node: int) -> list[tuple[int, str]]:
        op = self.nodes[node]
        preds = []
        if op.rf is not None and not op.rf_cut:
            preds.append((op.rf.id, "rf"))
        if op.pos > 1:
            preds.append((self.sessions[op.session][op.pos - 2].id, "so"))
        return preds

    @staticmethod
    def session_before(a: Op, b: Op) -> bool:
        return a.session == b.session and a.pos < b.pos

    def assign_clock(self, op: Op) -> None:
        """vc(op) = join(vc(session predecessor), vc(write read from)); own slot is pos.

        Ops share their predecessor's array unless the read brings something new, so a
        clock costs memory only where causality actually grew.
        """
        source = op.rf if op.rf is not None and not op.rf_cut else None
        if op.pos == 1:
            op.base = self.zero if source is None else _extended_clock(source)
            return
        base = self.sessions[op.session][op.pos - 2].base
        if (source is not None and source.session != op.session
                and base[source.session] < source.pos):
            other = source.base
            joined = array("i", base)
            for slot in compress(self.slots, map(gt, other, base)):
                joined[slot] = other[slot]
            joined[source.session] = source.pos
            base = joined
        op.base = base

    @staticmethod
    def seen(op: Op, session: int) -> int:
        """How many ops of ``session`` are in op's causal past (op itself included)."""
        return op.pos if op.session == session else op.base[session]

    def co_before(self, a: Op, b: Op) -> bool:
        return a is not b and self.seen(b, a.session) >= a.pos

    def last_writes_before(self, op: Op, versioned: bool = False) -> Iterable[Op]:
        """Per session, the last write of op's key that is CO-before op (the slow way)."""
        for session, entry in enumerate(self.write_index.get(op.key, ())):
            if entry is None:
                continue
            bound = op.pos - 1 if op.session == session else op.base[session]
            positions = entry.versioned_positions if versioned else entry.positions
            found = bisect_right(positions, bound) if bound > 0 else 0
            if found:
                yield (entry.versioned_writes if versioned else entry.writes)[found - 1]

    def versioned_writes_before(self, op: Op) -> Iterable[Op]:
        """Every versioned write of op's key that is CO-before op."""
        for session, entry in enumerate(self.write_index.get(op.key, ())):
            if entry is not None:
                bound = op.pos - 1 if op.session == session else op.base[session]
                yield from entry.versioned_writes[:bisect_right(entry.versioned_positions,
                                                                bound)]

    def last_write_not_after(self, write: Op, source: Op) -> Op | None:
        """The last write of ``write``'s key in its session before it that is not CO-after
        ``source`` (clock entries only grow along a session, so bisect)."""
        entry = self.write_index[write.key][write.session]
        stop = bisect_left(entry.positions, write.pos)
        found = bisect_left(entry.writes, source.pos, 0, stop,
                            key=lambda op: self.seen(op, source.session))
        return entry.writes[found - 1] if found else None

    def first_seeing(self, ops: list[Op], write: Op, limit: int | None = None) -> Op | None:
        """First of the first ``limit`` ops of a session whose causal past holds ``write``.

        Bisection works because a session's clock entries only grow along the session.
        """
        session, limit = write.session, len(ops) if limit is None else limit
        found = bisect_left(ops, write.pos, 0, limit, key=lambda op: self.seen(op, session))
        return ops[found] if found < limit else None


def add_to_frontier(frontier: list[Op], write: Op) -> None:
    """Keep ``frontier`` the CO-maximal writes: add ``write`` unless one is after it, and
    drop those before it (the vector clock test is inlined: this is the hot loop)."""
    session, pos = write.session, write.pos
    for known in frontier:
        if known is write:
            return
        if (known.pos if known.session == session else known.base[session]) >= pos:
            return
    base, kept = write.base, []
    for known in frontier:
        if not ((pos if known.session == session else base[known.session]) >= known.pos):
            kept.append(known)
    kept.append(write)
    frontier[:] = kept


def _extended_clock(write: Op) -> array:
    clock = array("i", write.base)
    clock[write.session] = write.pos
    return clock
