"""Causal order (CO = (so ∪ rf)+) without materialising it: the so ∪ rf graph, a
topological order with cycle search, vector clocks over sessions, and the CO queries the
checks ask ("is a CO-before b", "the last writes of a key in an op's past")."""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import compress
from operator import gt
from typing import Callable, Iterable

from .events import _Op


@dataclass(slots=True)
class _WriteIndex:
    """One session's writes of one key, in session order, for bisection by position."""

    positions: list[int] = field(default_factory=list)
    writes: list[_Op] = field(default_factory=list)
    versioned_positions: list[int] = field(default_factory=list)
    versioned_writes: list[_Op] = field(default_factory=list)


class _CausalOrder:
    """Mixin of ``_Analysis``, which sets the state read here in ``__init__``: ``nodes``,
    ``sessions`` and ``write_index``, and the clock helpers ``slots`` and ``zero``."""

    def _co_successors(self, node: int) -> Iterable[int]:
        op = self.nodes[node]
        session = self.sessions[op.session]
        if op.pos < len(session):
            yield session[op.pos].id
        for reader in op.readers:
            if not reader.rf_cut:
                yield reader.id

    def _co_predecessors(self, node: int) -> list[tuple[int, str]]:
        op = self.nodes[node]
        preds = []
        if op.rf is not None and not op.rf_cut:
            preds.append((op.rf.id, "rf"))
        if op.pos > 1:
            preds.append((self.sessions[op.session][op.pos - 2].id, "so"))
        return preds

    @staticmethod
    def _session_before(a: _Op, b: _Op) -> bool:
        return a.session == b.session and a.pos < b.pos

    def _cycle_edges(self, cycle: list[tuple[int, str]]) -> list[tuple[str, _Op, _Op]]:
        """(kind, source, target) for each edge of a cycle given as (node, entering kind)."""
        return [(kind, self.nodes[source], self.nodes[target])
                for (source, _), (target, kind) in zip(cycle, cycle[1:] + cycle[:1])]

    def _assign_clock(self, op: _Op) -> None:
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
    def seen(op: _Op, session: int) -> int:
        """How many ops of ``session`` are in op's causal past (op itself included)."""
        return op.pos if op.session == session else op.base[session]

    def co_before(self, a: _Op, b: _Op) -> bool:
        return a is not b and self.seen(b, a.session) >= a.pos

    def last_writes_before(self, op: _Op, versioned: bool = False) -> Iterable[_Op]:
        """Per session, the last write of op's key that is CO-before op (the slow way)."""
        for session, entry in enumerate(self.write_index.get(op.key, ())):
            if entry is None:
                continue
            bound = op.pos - 1 if op.session == session else op.base[session]
            positions = entry.versioned_positions if versioned else entry.positions
            found = bisect_right(positions, bound) if bound > 0 else 0
            if found:
                yield (entry.versioned_writes if versioned else entry.writes)[found - 1]

    def versioned_writes_before(self, op: _Op) -> Iterable[_Op]:
        """Every versioned write of op's key that is CO-before op."""
        for session, entry in enumerate(self.write_index.get(op.key, ())):
            if entry is not None:
                bound = op.pos - 1 if op.session == session else op.base[session]
                yield from entry.versioned_writes[:bisect_right(entry.versioned_positions,
                                                                bound)]

    def _last_write_not_after(self, write: _Op, source: _Op) -> _Op | None:
        """The last write of ``write``'s key in its session before it that is not CO-after
        ``source`` (clock entries only grow along a session, so bisect)."""
        entry = self.write_index[write.key][write.session]
        stop = bisect_left(entry.positions, write.pos)
        found = bisect_left(entry.writes, source.pos, 0, stop,
                            key=lambda op: self.seen(op, source.session))
        return entry.writes[found - 1] if found else None

    def _first_seeing(self, ops: list[_Op], write: _Op, limit: int | None = None) -> _Op | None:
        """First of the first ``limit`` ops of a session whose causal past holds ``write``.

        Bisection works because a session's clock entries only grow along the session.
        """
        session, limit = write.session, len(ops) if limit is None else limit
        found = bisect_left(ops, write.pos, 0, limit, key=lambda op: self.seen(op, session))
        return ops[found] if found < limit else None


def _add_to_frontier(frontier: list[_Op], write: _Op) -> None:
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


def _extended_clock(write: _Op) -> array:
    clock = array("i", write.base)
    clock[write.session] = write.pos
    return clock


# --------------------------------------------------------------------------- graph helpers


def _topological_order(indegree: list[int], successors: Callable[[int], Iterable[int]],
                       break_cycle: Callable[[int, list[bool]], list[int]]) -> list[int]:
    """Kahn's algorithm. When stuck, ``break_cycle`` removes edges (at least one of a cycle
    among the unvisited nodes) and returns the targets of those from unvisited nodes."""
    count = len(indegree)
    done = [False] * count
    ready = [node for node in range(count) if indegree[node] == 0]
    order: list[int] = []
    unvisited = 0
    while len(order) < count:
        while ready:
            node = ready.pop()
            done[node] = True
            order.append(node)
            for successor in successors(node):
                indegree[successor] -= 1
                if indegree[successor] == 0:
                    ready.append(successor)
        if len(order) == count:
            break
        while done[unvisited]:
            unvisited += 1
        for target in break_cycle(unvisited, done):
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    return order


def _find_cycle(start: int, done: list[bool],
                predecessors: Callable[[int], list[tuple[int, str]]]) -> list[tuple[int, str]]:
    """Walk unvisited predecessors back from ``start`` until a node repeats.

    Every unvisited node has an unvisited predecessor once Kahn's algorithm is stuck. Returns
    the cycle in forward order as (node, kind of the edge that enters it).
    """
    seen: dict[int, int] = {}
    path: list[tuple[int, str]] = []  # (node, kind of edge from its predecessor)
    node = start
    while node not in seen:
        seen[node] = len(path)
        pred, kind = next((p, k) for p, k in predecessors(node) if not done[p])
        path.append((node, kind))
        node = pred
    return path[seen[node]:][::-1]
