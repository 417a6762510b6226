"""The cycle checks, CyclicCO (so ∪ rf) and CyclicCF (CO ∪ CF, with the conflict order CF
only they need). The other checks still need a visiting order, so each cycle found is
reported and then broken: one bad read costs one report rather than the whole check."""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from itertools import compress
from operator import ne
from typing import Callable, Iterable

from .causal_order import add_to_frontier
from .events import Op
from .kinds import (
    CYCLIC_CF, CYCLIC_CO, LWW_NOT_ARBITRATION, MAX_CYCLES_REPORTED, MAX_OPS_LISTED,
    WRITE_CO_READ,
)


@dataclass(slots=True)
class _KeyView:
    """What a session knows about one key: the CO-maximal writes of it in its past, as of
    the clock ``base``."""

    base: array
    frontier: list[Op]
    counts: array  # per session: how many of its writes of the key were seen


class CycleSearch:
    """Mixin of ``Analysis``, which sets the state read here in ``__init__``: the graph
    (``nodes``, ``sessions``, ``write_index``), the CF edges filled here (``cf_succ``,
    ``cf_pred``, ``cf_witness``, ``cf_by_witness``), what the other checks learnt
    (``found``, ``slow_keys``, ``version_ties``, ``inversions``, ``flagged_reads``) and
    ``shortest_cycle_searches``."""

    def co_topological_order(self) -> list[int]:
        """so ∪ rf in topological order, breaking (and reporting) its cycles on the way."""
        indegree = [(op.pos > 1) + (op.rf is not None) for op in self.nodes]
        return _topological_order(indegree, self.co_successors, self._break_co_cycle)

    def _break_co_cycle(self, start: int, done: list[bool]) -> list[int]:
        """Report a cycle of so ∪ rf through ``start``'s ancestry; cut one rf edge of it."""
        if len(self.found[CYCLIC_CO]) >= MAX_CYCLES_REPORTED:
            return self._cut_remaining_reads(done)
        edges = self._cycle_edges(_find_cycle(start, done, self.co_predecessors))
        for kind, write, read in edges:
            if kind == "rf" and not self.session_before(write, read):
                read.rf_cut = True
                self.report(CYCLIC_CO, None, *self.explain_co_cycle(edges))
                return [read.id]
        raise AssertionError("a causal cycle without a backward read-from edge")

    def _cut_remaining_reads(self, done: list[bool]) -> list[int]:
        """Too many cycles to walk one by one: cut every read-from edge left among the
        unvisited ops at once (only session order remains, which has no cycle)."""
        cut = [op for op in self.nodes if not done[op.id] and op.rf is not None
               and not op.rf_cut and not done[op.rf.id]]
        for read in cut:
            read.rf_cut = True
        self.report(CYCLIC_CO, None, cut[:MAX_OPS_LISTED], self.explain_more_co_cycles(len(cut)))
        return [read.id for read in cut]

    def _cycle_edges(self, cycle: list[tuple[int, str]]) -> list[tuple[str, Op, Op]]:
        """(kind, source, target) for each edge of a cycle given as (node, entering kind)."""
        return [(kind, self.nodes[source], self.nodes[target])
                for (source, _), (target, kind) in zip(cycle, cycle[1:] + cycle[:1])]

    # ------------------------------------------------------------------ conflict order

    def check_conflict_cycles(self) -> None:
        """CyclicCF: (CO ∪ CF)+ must be acyclic, else no total order of writes fits the reads."""
        if not self._conflicts_possible():
            return
        self._collect_conflicts()
        if not self.cf_succ:
            return
        indegree = [(op.pos > 1) + (op.rf is not None and not op.rf_cut)
                    + len(self.cf_pred.get(op.id, ())) for op in self.nodes]
        _topological_order(indegree, self._cf_successors, self._break_cf_cycle)

    def _conflicts_possible(self) -> bool:
        """Whether (CO ∪ CF) can have a cycle. Not if versions order every write after its
        causal past (any key) and every read returned the largest version in its past: then
        the largest rank in an op's past never decreases along CO and grows along CF."""
        return bool(self.found[WRITE_CO_READ] or self.found[LWW_NOT_ARBITRATION]
                    or self.slow_keys or self.version_ties or self.inversions)

    def _collect_conflicts(self) -> None:
        """Walk each session in order, keeping per key the CO-maximal writes in its past;
        a read adds CF edges from those concurrent with the write it read.

        A frontier is brought up to date lazily, only at reads of a write and only from the
        clock slots that changed since; a write replaces it (its past is below it).
        """
        for ops in self.sessions:
            views: dict[str, _KeyView] = {}
            for op in ops:
                view = views.get(op.key)
                if op.is_write:
                    if view is None:
                        view = views[op.key] = _KeyView(op.base, [op], array("i", self.zero))
                    view.base, view.frontier = op.base, [op]
                elif op.outcome == "write" and not op.rf_cut:
                    if view is None:
                        view = views[op.key] = _KeyView(self.zero, [], array("i", self.zero))
                    if view.base is not op.base:
                        self._sync(view, op)
                    self._add_conflicts(op, view.frontier)

    def _sync(self, view: _KeyView, op: Op) -> None:
        """Bring ``view`` up to op's clock: add the newly visible last writes per session.

        ``counts`` holds, per session, how many of its writes of the key were looked at; it
        may lag behind (after a write reset the frontier), which only costs a wasted try.
        """
        index = self.write_index.get(op.key)
        old, new, counts = view.base, op.base, view.counts
        if index is not None:
            for slot in compress(self.slots, map(ne, old, new)):
                entry = index[slot]
                if entry is None or slot == op.session:
                    continue
                after = bisect_right(entry.positions, new[slot])
                if after > counts[slot]:
                    counts[slot] = after
                    add_to_frontier(view.frontier, entry.writes[after - 1])
        view.base = new

    def _add_conflicts(self, read: Op, frontier: list[Op]) -> None:
        """CF edges into the write ``read`` returned, from the maximal writes of its past.

        Writes below a maximal one reach the read's write through it, unless that maximal
        one is causally after the read's write (a WriteCORead): then scan every session.
        """
        source = read.rf
        if any(known is not source and self.co_before(source, known) for known in frontier):
            frontier = []
            for write in self.last_writes_before(read):
                if write is not source and self.co_before(source, write):
                    write = self.last_write_not_after(write, source)
                if write is not None:
                    frontier.append(write)
        for known in frontier:
            if known is not source and not self.co_before(known, source):
                self._add_conflict_edge(known, source, read)

    def _add_conflict_edge(self, older: Op, newer: Op, witness: Op) -> None:
        """CF: ``older`` must be arbitrated before ``newer`` since ``witness`` saw both."""
        successors = self.cf_succ[older.id]
        if newer.id not in successors:
            successors.add(newer.id)
            self.cf_pred[newer.id].add(older.id)
            self.cf_witness[(older.id, newer.id)] = witness
            self.cf_by_witness[witness.id].append((older.id, newer.id))

    def _cf_successors(self, node: int) -> Iterable[int]:
        yield from self.co_successors(node)
        yield from self.cf_succ.get(node, ())

    def _cf_predecessors(self, node: int) -> list[tuple[int, str]]:
        preds = [(source, "cf") for source in self.cf_pred.get(node, ())]
        return preds + self.co_predecessors(node)

    def _break_cf_cycle(self, start: int, done: list[bool]) -> list[int]:
        """Report a cycle of CO ∪ CF, then drop every CF edge its chosen read witnessed.

        One bad read can close thousands of cycles; dropping all of its edges reports it
        once. Reads already reported for something else are chosen first.
        """
        if len(self.found[CYCLIC_CF]) >= MAX_CYCLES_REPORTED:
            return self._drop_remaining_conflicts(done)
        edges = self._cycle_edges(_find_cycle(start, done, self._cf_predecessors))
        conflicts = [(a, b) for kind, a, b in edges if kind == "cf"]
        if not conflicts:
            raise AssertionError("a cycle of causal order alone after causal cycles were cut")
        older, newer = min(conflicts, key=lambda edge: self.cf_witness[
            (edge[0].id, edge[1].id)].id not in self.flagged_reads)
        if self.shortest_cycle_searches > 0:
            self.shortest_cycle_searches -= 1
            edges = self._shortest_cycle(older, newer, done)
        self.report(CYCLIC_CF, None, *self.explain_cf_cycle(edges, (older, newer)))
        return self._drop_conflicts_of(self.cf_witness[(older.id, newer.id)], done)

    def _drop_remaining_conflicts(self, done: list[bool]) -> list[int]:
        """Too many cycles: drop every CF edge left among the unvisited ops at once."""
        targets, witnesses = [], {}
        for source, successors in self.cf_succ.items():
            if done[source]:
                continue
            for target in list(successors):
                if not done[target]:
                    successors.discard(target)
                    self.cf_pred[target].discard(source)
                    targets.append(target)
                    witness = self.cf_witness[(source, target)]
                    witnesses[witness.id] = witness
        self.report(CYCLIC_CF, None, list(witnesses.values())[:MAX_OPS_LISTED],
                    self.explain_more_cf_cycles(len(witnesses)))
        return targets

    def _drop_conflicts_of(self, witness: Op, done: list[bool]) -> list[int]:
        """Remove the CF edges ``witness`` brought; return the targets whose in-degree the
        removal lowers (edges from visited nodes were already counted down)."""
        targets = []
        for source, target in self.cf_by_witness.pop(witness.id, ()):
            if target in self.cf_succ[source]:
                self.cf_succ[source].discard(target)
                self.cf_pred[target].discard(source)
                if not done[source]:
                    targets.append(target)
        return targets

    def _shortest_cycle(self, older: Op, newer: Op,
                        done: list[bool]) -> list[tuple[str, Op, Op]]:
        """The cycle through CF edge older -> newer with the fewest other CF edges (0-1 BFS
        among unvisited nodes: CO edges cost 0, CF edges 1), for a readable explanation."""
        goal, parent = older.id, {newer.id: (-1, "")}
        queue = deque([newer.id])
        while queue:
            node = queue.popleft()
            if node == goal:
                break
            for successor, kind in self._cf_successors_with_kind(node):
                if done[successor] or successor in parent:
                    continue
                parent[successor] = (node, kind)
                if kind == "cf":
                    queue.append(successor)
                else:
                    queue.appendleft(successor)
        path = []
        node = goal
        while node != newer.id:
            pred, kind = parent[node]
            path.append((kind, self.nodes[pred], self.nodes[node]))
            node = pred
        return [("cf", older, newer)] + path[::-1]

    def _cf_successors_with_kind(self, node: int) -> Iterable[tuple[int, str]]:
        op = self.nodes[node]
        session = self.sessions[op.session]
        if op.pos < len(session):
            yield session[op.pos].id, "so"
        for reader in op.readers:
            if not reader.rf_cut:
                yield reader.id, "rf"
        for successor in self.cf_succ.get(node, ()):
            yield successor, "cf"


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
