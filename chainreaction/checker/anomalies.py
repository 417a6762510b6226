"""The checks: the CCv bad patterns (ThinAirRead, CyclicCO, WriteCOInitRead, WriteCORead,
CyclicCF), last-writer-wins arbitration, lost writes and divergence of final reads; for
stale reads, which session guarantee they break; and the wording of every explanation.
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_right
from collections import defaultdict, deque
from dataclasses import dataclass
from itertools import compress
from operator import gt, ne
from typing import Iterable, Sequence

from .causal_order import (
    _add_to_frontier, _CausalOrder, _find_cycle, _topological_order, _WriteIndex,
)
from .events import Event, HistoryError, _Op, _pair_operations, _Sessions


THIN_AIR_READ = "ThinAirRead"
CYCLIC_CO = "CyclicCO"
WRITE_CO_INIT_READ = "WriteCOInitRead"
WRITE_CO_READ = "WriteCORead"
CYCLIC_CF = "CyclicCF"
LWW_NOT_ARBITRATION = "LWWNotArbitration"
LOST_WRITE = "LostWrite"
DIVERGENCE = "Divergence"
KINDS = (THIN_AIR_READ, CYCLIC_CO, WRITE_CO_INIT_READ, WRITE_CO_READ, CYCLIC_CF,
         LWW_NOT_ARBITRATION, LOST_WRITE, DIVERGENCE)

READ_YOUR_WRITES = "read-your-writes"
MONOTONIC_READS = "monotonic reads"
MONOTONIC_WRITES = "monotonic writes"
WRITES_FOLLOW_READS = "writes-follow-reads"
CAUSAL = "causal"

MAX_CYCLES_REPORTED = 100  # per kind; beyond that the rest are summed up in one anomaly
MAX_OPS_LISTED = 50


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One violation. ``ops`` are the history indexes of the completion lines involved."""

    kind: str
    guarantee: str | None
    ops: tuple[int, ...]
    explanation: str

    def as_dict(self) -> dict:
        return {"kind": self.kind, "guarantee": self.guarantee, "ops": list(self.ops),
                "explanation": self.explanation}


# --------------------------------------------------------------------------- analysis


@dataclass(slots=True)
class _KeyView:
    """What a session knows about one key: the CO-maximal writes of it in its past, as of
    the clock ``base``."""

    base: array
    frontier: list[_Op]
    counts: array  # per session: how many of its writes of the key were seen


@dataclass(slots=True)
class _Classification:
    """Which session guarantee a stale read breaks, and the ops that show it."""

    guarantee: str
    entry: _Op | None = None  # first op of the reader's session whose past holds the write
    carrier: _Op | None = None  # write that ``entry`` read (it brought the newer write along)
    hop: _Op | None = None  # read in the carrier's session that first saw the newer write


class _Analysis(_CausalOrder, _Sessions):
    """All checks over one history. ``run`` returns the anomalies in kind order."""

    def __init__(self, events: Sequence[Event]) -> None:
        self.all_ops = _pair_operations(events)
        self.nodes: list[_Op] = []
        self.sessions: list[list[_Op]] = []
        self.session_names: list[str] = []
        self.found: dict[str, list[Anomaly]] = {kind: [] for kind in KINDS}
        self.write_index: dict[str, list[_WriteIndex | None]] = {}
        self.slow_keys: set[str] = set()  # unversioned writes may be in causal pasts
        self.broken_keys: set[str] = set()  # some write is out of LWW order (LWW (a))
        self.key_slots: dict[str, int] = {}
        self.version_ties = False  # two writes of a key share a version
        self.inversions = False  # a write's version is below one in its past (other key)
        self.slots = self.slots_of_keys = range(0)
        self.zero = array("i")
        self.nothing_known = array("i")
        self.cf_succ: dict[int, set[int]] = defaultdict(set)
        self.cf_pred: dict[int, set[int]] = defaultdict(set)
        self.cf_witness: dict[tuple[int, int], _Op] = {}
        self.cf_by_witness: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self.flagged_reads: set[int] = set()  # reads already reported as anomalous
        self.shortest_cycle_searches = 20  # each costs a graph search: only the first few

    def run(self) -> list[Anomaly]:
        self._split_sessions()
        self._resolve_reads()
        self._learn_versions()
        self._index_writes()
        self._assign_vector_clocks()
        self._check_reads()
        if self._conflicts_possible():
            self._collect_conflicts()
            self._check_conflict_cycles()
        self._check_final_reads()
        return [anomaly for kind in KINDS for anomaly in self.found[kind]]

    def report(self, kind: str, guarantee: str | None, ops: Iterable[_Op],
               explanation: str) -> None:
        indexes = tuple(dict.fromkeys(op.index for op in ops))
        self.found[kind].append(Anomaly(kind, guarantee, indexes, explanation))

    # ------------------------------------------------------------------ read-from

    def _resolve_reads(self) -> None:
        """Map each read to the write it returned; reads of nothing anyone wrote are thin air."""
        by_value: dict[tuple[str, str], _Op] = {}
        failed_by_value: dict[tuple[str, str], _Op] = {}
        deletes_by_version: dict[tuple[str, tuple[int, int]], _Op] = {}
        unversioned_deletes: dict[str, list[_Op]] = defaultdict(list)
        failed_deletes: dict[str, _Op] = {}
        for op in self.all_ops:
            if op.f == "write":
                if op.status == "fail":
                    failed_by_value.setdefault((op.key, op.value), op)
                    continue
                earlier = by_value.setdefault((op.key, op.value), op)
                if earlier is not op:
                    raise HistoryError(f"line {op.line}: value {op.value!r} of key {op.key} "
                                       f"was already written on line {earlier.line}; the "
                                       "checker needs every written value unique per key")
            elif op.f == "delete":
                if op.status == "fail":
                    failed_deletes.setdefault(op.key, op)
                elif op.status == "ok" and op.version is not None:
                    deletes_by_version.setdefault((op.key, op.version), op)
                else:
                    unversioned_deletes[op.key].append(op)
        oldest_delete: dict = {}
        for key, version in deletes_by_version:
            if key not in oldest_delete or version < oldest_delete[key]:
                oldest_delete[key] = version
        for read in self.nodes:
            if not read.is_read:
                continue
            if read.value is not None:
                write = by_value.get((read.key, read.value))
                failed = failed_by_value.get((read.key, read.value))
            elif read.version is None:
                # Not found and no version: never written, or (at a node that collected
                # tombstones) a delete collected since. The latter only if some delete of
                # the key could be at or below the node's floor; then the read says nothing
                # about which write it saw, and is not checked.
                floor, oldest = read.collected_floor, oldest_delete.get(read.key)
                read.outcome = "collected" if floor is not None and (
                    (oldest is not None and oldest <= floor)
                    or unversioned_deletes[read.key]) else "init"
                continue
            else:
                write = (deletes_by_version.get((read.key, read.version))
                         or _match_delete(unversioned_deletes[read.key], read.version))
                failed = failed_deletes.get(read.key)
            if write is None:
                read.outcome = "thin-air"
                self._report_thin_air(read, failed)
            else:
                read.outcome, read.rf = "write", write
                write.readers.append(read)

    def _report_thin_air(self, read: _Op, failed: _Op | None) -> None:
        head = f"session {self.name(read)} read"
        result = f"{self.describe_result(read)} {self.where(read)}"
        if failed is not None:
            self.report(THIN_AIR_READ, None, (read, failed),
                        f"{head} a write that failed: {result} was written at line "
                        f"{failed.index} by {self.name(failed)}, which was reported as "
                        "failed, so it must not have taken effect")
        elif read.value is None:
            self.report(THIN_AIR_READ, None, (read,),
                        f"{head} {result} with version {_show_version(read.version)}, but no "
                        f"delete of {read.key} made that version: a value out of thin air")
        else:
            self.report(THIN_AIR_READ, None, (read,),
                        f"{head} {result}, a value no write of {read.key} wrote: a value out "
                        "of thin air")

    def _learn_versions(self) -> None:
        """Writes without a version (e.g. info writes) take it from a read that returned them."""
        for read in self.nodes:
            write = read.rf
            if write is not None and write.version is None and read.version is not None:
                write.version = read.version

    def _index_writes(self) -> None:
        """Per key, each session's writes in session order, indexed by session number.

        Also ranks all versions (one integer compare instead of a tuple compare) and notes
        keys with an unversioned write that an op may have in its causal past (an ok write,
        or one that was read): those keys are checked the slow way. Unread info writes end
        their session and are in no op's past.
        """
        versions = sorted({op.version for op in self.nodes if op.is_write and op.version})
        rank_of = {version: rank for rank, version in enumerate(versions, start=1)}
        seen_versions: set[tuple[str, tuple[int, int]]] = set()
        for write in self.nodes:
            if not write.is_write:
                continue
            self.key_slots.setdefault(write.key, len(self.key_slots))
            entry = self._write_entry(write)
            entry.positions.append(write.pos)
            entry.writes.append(write)
            if write.version is not None:
                write.rank = rank_of[write.version]
                entry.versioned_positions.append(write.pos)
                entry.versioned_writes.append(write)
                self.version_ties |= (write.key, write.version) in seen_versions
                seen_versions.add((write.key, write.version))
            elif write.status == "ok" or write.readers:
                self.slow_keys.add(write.key)
        self.nothing_known = array("i", bytes(4 * len(self.key_slots)))
        self.slots_of_keys = range(len(self.key_slots))

    def _write_entry(self, write: _Op) -> _WriteIndex:
        index = self.write_index.get(write.key)
        if index is None:
            index = self.write_index[write.key] = [None] * len(self.sessions)
        entry = index[write.session]
        if entry is None:
            entry = index[write.session] = _WriteIndex()
        return entry

    # ------------------------------------------------------------------ causal order

    def _assign_vector_clocks(self) -> None:
        """Visit so ∪ rf topologically (breaking and reporting cycles), then give clocks."""
        indegree = [(op.pos > 1) + (op.rf is not None) for op in self.nodes]
        order = _topological_order(indegree, self._co_successors, self._break_co_cycle)
        for node in order:
            op = self.nodes[node]
            self._assign_clock(op)
            self._assign_knowledge(op)

    def _break_co_cycle(self, start: int, done: list[bool]) -> list[int]:
        """Report a cycle of so ∪ rf through ``start``'s ancestry; cut one rf edge of it."""
        if len(self.found[CYCLIC_CO]) >= MAX_CYCLES_REPORTED:
            return self._cut_remaining_reads(done)
        cycle = _find_cycle(start, done, self._co_predecessors)
        for kind, write, read in self._cycle_edges(cycle):
            if kind == "rf" and not self._session_before(write, read):
                read.rf_cut = True
                self._report_co_cycle(cycle)
                return [read.id]
        raise AssertionError("a causal cycle without a backward read-from edge")

    def _cut_remaining_reads(self, done: list[bool]) -> list[int]:
        """Too many cycles to walk one by one: cut every read-from edge left among the
        unvisited ops at once (only session order remains, which has no cycle)."""
        cut = [op for op in self.nodes if not done[op.id] and op.rf is not None
               and not op.rf_cut and not done[op.rf.id]]
        for read in cut:
            read.rf_cut = True
        self.report(CYCLIC_CO, None, cut[:MAX_OPS_LISTED],
                    f"causal order has more cycles than the {MAX_CYCLES_REPORTED} reported; "
                    f"{len(cut)} more reads in or after them were not checked")
        return [read.id for read in cut]

    def _report_co_cycle(self, cycle: list[tuple[int, str]]) -> None:
        steps, ops = [], []
        for kind, a, b in _collapse_runs(self._cycle_edges(cycle), {"so"}):
            if kind == "rf":
                steps.append(f"{self.describe_write(a)} was read by session {self.name(b)} "
                             f"at line {b.index}")
            else:
                steps.append(f"session {self.name(a)} did line {a.index} before line "
                             f"{b.index}")
            ops += [a, b]
        self.report(CYCLIC_CO, None, ops,
                    "causal order has a cycle, so an op causally precedes itself: "
                    + "; ".join(_abridged(steps)))

    def _assign_knowledge(self, op: _Op) -> None:
        """Per key, the largest version rank in op's causal past; checks LWW (a) on writes.

        Joined exactly when the vector clock was: otherwise the read's write was already
        in the past.
        """
        source = op.rf if op.rf is not None and not op.rf_cut else None
        if op.pos == 1:
            known, top = ((self.nothing_known, 0) if source is None
                          else (source.known, source.top))
        else:
            prev = self.sessions[op.session][op.pos - 2]
            known, top = prev.known, prev.top
            if source is not None and op.base is not prev.base:
                other = source.known
                known = array("i", known)
                for slot in compress(self.slots_of_keys, map(gt, other, known)):
                    known[slot] = other[slot]
                top = max(top, source.top)
        if op.is_write and op.rank:
            slot = self.key_slots[op.key]
            if known[slot] >= op.rank:
                self._check_write_order(op)
            elif top > op.rank:
                self.inversions = True
            known = array("i", known)
            known[slot] = max(known[slot], op.rank)
            top = max(top, op.rank)
        op.known, op.top = known, top

    # ------------------------------------------------------------------ read checks

    def _check_reads(self) -> None:
        """Fast check from the per-key largest ranks; suspicious reads get the slow scan.

        With LWW (a) holding for the key, a write causally after the one read would carry a
        larger version, so "nothing larger in the past" rules out WriteCORead and LWW (b).
        """
        careful = self.slow_keys | self.broken_keys
        slots = self.key_slots
        for read in self.nodes:
            if not read.is_read or read.rf_cut or read.outcome in ("thin-air", "collected"):
                continue
            slot = slots.get(read.key)
            if slot is None:  # key never written: only the initial state is possible
                continue
            if read.outcome == "init":
                if read.key in careful or read.known[slot]:
                    self._check_init_read(read)
            elif (read.key in careful or not read.rf.rank
                  or read.known[slot] > read.rf.rank):
                self._check_read_from(read)

    def _conflicts_possible(self) -> bool:
        """Whether (CO ∪ CF) can have a cycle. Not if versions order every write after its
        causal past (any key) and every read returned the largest version in its past: then
        the largest rank in an op's past never decreases along CO and grows along CF."""
        return bool(self.found[WRITE_CO_READ] or self.found[LWW_NOT_ARBITRATION]
                    or self.slow_keys or self.version_ties or self.inversions)

    # ------------------------------------------------------------------ conflict order

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

    def _sync(self, view: _KeyView, op: _Op) -> None:
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
                    _add_to_frontier(view.frontier, entry.writes[after - 1])
        view.base = new

    def _add_conflicts(self, read: _Op, frontier: list[_Op]) -> None:
        """CF edges into the write ``read`` returned, from the maximal writes of its past.

        Writes below a maximal one reach the read's write through it, unless that maximal
        one is causally after the read's write (a WriteCORead): then scan every session.
        """
        source = read.rf
        if any(known is not source and self.co_before(source, known) for known in frontier):
            frontier = []
            for write in self.last_writes_before(read):
                if write is not source and self.co_before(source, write):
                    write = self._last_write_not_after(write, source)
                if write is not None:
                    frontier.append(write)
        for known in frontier:
            if known is not source and not self.co_before(known, source):
                self._add_conflict_edge(known, source, read)

    # ------------------------------------------------------------------ slow read checks

    def _check_init_read(self, read: _Op) -> None:
        newer = list(self.last_writes_before(read))
        if newer:
            self._report_stale(WRITE_CO_INIT_READ, read, None, newer)

    def _check_read_from(self, read: _Op) -> None:
        """WriteCORead, else LWW (b), by scanning each session's last write of the key."""
        source = read.rf
        newer = [write for write in self.last_writes_before(read)
                 if write is not source and self.co_before(source, write)]
        if newer:
            self._report_stale(WRITE_CO_READ, read, source, newer)
        elif source.version is not None:
            larger = [write for write in self.last_writes_before(read, versioned=True)
                      if write is not source and write.version > source.version]
            if larger:
                self._report_read_arbitration(read, source, max(larger, key=_version_of))

    def _report_read_arbitration(self, read: _Op, source: _Op, larger: _Op) -> None:
        """LWW (b): no write CO-before the read may carry a larger version than the one read.
        The read is stale then, so it also breaks a session guarantee: its own write
        (read-your-writes), a version it read before (monotonic reads), and so on."""
        self.flagged_reads.add(read.id)
        verdict = self._classify(read, larger)
        if verdict.guarantee == READ_YOUR_WRITES:
            how = f"its own write {_short_key(larger)} (line {larger.index})"
        else:
            how = self.describe_write(larger)
        ops = [read, source, larger] + [op for op in (verdict.entry, verdict.carrier, verdict.hop)
                                        if op is not None]
        self.report(
            LWW_NOT_ARBITRATION, verdict.guarantee, ops,
            f"session {self.name(read)} read {self.describe_result(read)} {self.where(read)}, "
            f"written with version {_show_version(source.version)}, although "
            f"{how} with the larger version "
            f"{_show_version(larger.version)} is in its causal past: last-writer-wins would "
            f"have returned the larger one; {verdict.guarantee} violated")

    def _add_conflict_edge(self, older: _Op, newer: _Op, witness: _Op) -> None:
        """CF: ``older`` must be arbitrated before ``newer`` since ``witness`` saw both."""
        successors = self.cf_succ[older.id]
        if newer.id not in successors:
            successors.add(newer.id)
            self.cf_pred[newer.id].add(older.id)
            self.cf_witness[(older.id, newer.id)] = witness
            self.cf_by_witness[witness.id].append((older.id, newer.id))

    # ------------------------------------------------------------------ session guarantees

    def _report_stale(self, kind: str, read: _Op, source: _Op | None,
                      candidates: list[_Op]) -> None:
        """Report one stale read, blaming the newer write that reached the session first."""
        verdicts = [(self._classify(read, write), write) for write in candidates]
        verdict, newer = min(verdicts, key=lambda pair: self._blame_rank(read, *pair))
        self.flagged_reads.add(read.id)
        ops = [read] + ([source] if source else []) + [newer]
        ops += [op for op in (verdict.entry, verdict.carrier, verdict.hop) if op is not None]
        self.report(kind, verdict.guarantee, ops,
                    self._explain_stale(read, source, newer, verdict))

    def _blame_rank(self, read: _Op, verdict: _Classification, write: _Op) -> tuple[int, int]:
        if verdict.guarantee == READ_YOUR_WRITES:
            return (0, -write.pos)
        return (1, verdict.entry.pos if verdict.entry else read.pos)

    def _classify(self, read: _Op, newer: _Op) -> _Classification:
        if newer.session == read.session:
            return _Classification(READ_YOUR_WRITES)
        entry = self._first_seeing(self.sessions[read.session], newer)
        carrier = entry.rf if entry is not None and entry.is_read else None
        if entry is None or carrier is None:
            return _Classification(CAUSAL, entry)
        if entry.key == read.key:
            return _Classification(MONOTONIC_READS, entry, carrier)
        if carrier.session == newer.session and newer.pos < carrier.pos:
            return _Classification(MONOTONIC_WRITES, entry, carrier)
        hop = self._first_seeing(self.sessions[carrier.session], newer, carrier.pos - 1)
        if hop is not None and hop.rf is not None and (
                hop.rf is newer or self._session_before(newer, hop.rf)):
            return _Classification(WRITES_FOLLOW_READS, entry, carrier, hop)
        return _Classification(CAUSAL, entry, carrier, hop)

    def _explain_stale(self, read: _Op, source: _Op | None, newer: _Op,
                       verdict: _Classification) -> str:
        me = self.name(read)
        head = f"session {me} read {self.describe_result(read)} {self.where(read)}"
        if source is not None:
            order = (f"; {_short(newer)} was written after {_short(source)} in causal order "
                     f"(line {source.index} -> line {newer.index})")
        else:
            order = f"; {read.key} was therefore no longer in its initial state"
        guarantee = verdict.guarantee
        entry, carrier, hop = verdict.entry, verdict.carrier, verdict.hop
        if guarantee == READ_YOUR_WRITES:
            body = f" after {_writing(newer)} itself (line {newer.index})"
        elif guarantee == MONOTONIC_READS:
            body = self._already_seen(entry, carrier, newer)
        elif guarantee == MONOTONIC_WRITES:
            body = (f" after reading {self.describe_write(carrier)} at line {entry.index}; "
                    f"session {self.name(carrier)} wrote that after {_writing(newer)} "
                    f"(line {newer.index})")
        elif guarantee == WRITES_FOLLOW_READS:
            body = (f" after reading {self.describe_write(carrier)} at line {entry.index}; "
                    f"session {self.name(carrier)} wrote that after reading "
                    f"{self.describe_write(hop.rf)} at line {hop.index}"
                    + ("" if hop.rf is newer else
                       f", which came after {_short(newer)} (line {newer.index})"))
        else:
            via = (f" (it arrived with line {entry.index}, which read "
                   f"{self.describe_write(carrier)})" if carrier is not None else "")
            body = (f" although {self.describe_write(newer)} is in its causal past"
                    f"{via} through a chain of sessions")
        return f"{head}{body}{order}: {guarantee} violated"

    def _already_seen(self, entry: _Op, carrier: _Op, newer: _Op) -> str:
        written = f"written by {self.name(newer)} at line {newer.index}"
        if carrier is newer:
            return (f" after it had already seen {_short_key(newer)} at line "
                    f"{entry.index} ({written})")
        return (f" after it had already seen {_short_key(newer)} ({written}) through line "
                f"{entry.index}, which read {_short(carrier)}")

    # ------------------------------------------------------------------ arbitration

    def _check_write_order(self, write: _Op) -> None:
        """LWW (a) broken for ``write``: find and report the earlier write with the largest
        version (each session's last one first; all of them if that does not show it)."""
        self.broken_keys.add(write.key)
        older = [earlier for earlier in self.last_writes_before(write, versioned=True)
                 if earlier.version >= write.version]
        if not older:
            older = [earlier for earlier in self.versioned_writes_before(write)
                     if earlier.version >= write.version]
        if older:
            self._report_write_order(max(older, key=_version_of), write)

    def _report_write_order(self, earlier: _Op, write: _Op) -> None:
        self.report(
            LWW_NOT_ARBITRATION, None, (earlier, write),
            f"{self.describe_write(earlier)} has version {_show_version(earlier.version)}, "
            f"not smaller than {_show_version(write.version)} of "
            f"{self.describe_write(write)}, although it is causally before it: "
            "last-writer-wins would let the older write win")

    def _check_conflict_cycles(self) -> None:
        """CyclicCF: (CO ∪ CF)+ must be acyclic, else no total order of writes fits the reads."""
        if not self.cf_succ:
            return
        indegree = [(op.pos > 1) + (op.rf is not None and not op.rf_cut)
                    + len(self.cf_pred.get(op.id, ())) for op in self.nodes]
        _topological_order(indegree, self._cf_successors, self._break_cf_cycle)

    def _cf_successors(self, node: int) -> Iterable[int]:
        yield from self._co_successors(node)
        yield from self.cf_succ.get(node, ())

    def _cf_predecessors(self, node: int) -> list[tuple[int, str]]:
        preds = [(source, "cf") for source in self.cf_pred.get(node, ())]
        return preds + self._co_predecessors(node)

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
        self._report_cf_cycle(edges, (older, newer))
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
                    f"conflict order has more cycles than the {MAX_CYCLES_REPORTED} reported; "
                    f"{len(witnesses)} more reads take part in them")
        return targets

    def _drop_conflicts_of(self, witness: _Op, done: list[bool]) -> list[int]:
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

    def _shortest_cycle(self, older: _Op, newer: _Op,
                        done: list[bool]) -> list[tuple[str, _Op, _Op]]:
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

    def _report_cf_cycle(self, edges: list[tuple[str, _Op, _Op]],
                         first: tuple[_Op, _Op]) -> None:
        start = next(i for i, (kind, a, b) in enumerate(edges)
                     if kind == "cf" and (a, b) == first)
        edges = edges[start:] + edges[:start]
        steps, ops = [], []
        for kind, a, b in _collapse_runs(edges, {"so", "rf"}):
            if kind == "cf":
                witness = self.cf_witness[(a.id, b.id)]
                steps.append(f"{self.describe_write(a)} must be ordered before "
                             f"{self.describe_write(b)} because session {self.name(witness)} "
                             f"read {_short(b)} at line {witness.index} with {_short(a)} "
                             "in its causal past")
                ops += [a, b, witness]
            else:
                steps.append(f"line {a.index} is causally before line {b.index}")
                ops += [a, b]
        self.report(CYCLIC_CF, None, ops,
                    "no order of the writes explains every read (causal convergence "
                    "violated): " + "; ".join(_abridged(steps)) + ", which closes a cycle")

    # ------------------------------------------------------------------ final reads

    def _check_final_reads(self) -> None:
        finals: dict[str, list[_Op]] = defaultdict(list)
        for read in self.nodes:
            if read.is_read and read.final:
                finals[read.key].append(read)
        for key, reads in finals.items():
            self._check_lost_writes(key, reads)
            self._check_divergence(key, reads)

    def _check_lost_writes(self, key: str, finals: list[_Op]) -> None:
        for entry in self.write_index.get(key, ()):
            for write in entry.writes if entry is not None else ():
                if write.status != "ok":
                    continue
                for final in finals:
                    why = self._loses(write, final)
                    if why:
                        self.report(LOST_WRITE, None, (write, final),
                                    f"acknowledged {self.describe_write(write)} is lost: the "
                                    f"final read {self.where(final)} returned {why}")
                        break

    def _loses(self, write: _Op, final: _Op) -> str:
        """Why ``final`` shows that ``write`` was lost, or "" if it does not."""
        if final.outcome == "init":
            return f"{write.key} as never written"
        if final.outcome == "collected":
            if write.version is not None and write.version > final.collected_floor:
                return (f"{write.key} as deleted and collected at or below "
                        f"{_show_version(final.collected_floor)}, older than this write")
            return ""
        seen = final.rf
        if seen is None or final.rf_cut or seen is write:
            return ""
        if (seen.version is not None and write.version is not None
                and seen.version < write.version):
            return (f"{self.describe_write(seen)} with the smaller version "
                    f"{_show_version(seen.version)} < {_show_version(write.version)}")
        if self.co_before(seen, write):
            return f"{self.describe_write(seen)}, which is causally before it"
        return ""

    def _check_divergence(self, key: str, finals: list[_Op]) -> None:
        first = finals[0]
        if all(_same_state(first, other) for other in finals[1:]):
            return
        states = "; ".join(
            f"{self.describe_result(read)}"
            f"{'' if read.version is None else ' ' + _show_version(read.version)} "
            f"{self.where(read)}" for read in finals)
        self.report(DIVERGENCE, None, finals,
                    f"final reads of {key} disagree after healing: {states}")

    # ------------------------------------------------------------------ wording

    def name(self, op: _Op) -> str:
        return self.session_names[op.session] if op.session >= 0 else op.process

    def describe_write(self, write: _Op) -> str:
        status = "" if write.status == "ok" else f", {write.status}"
        return f"{_short_key(write)} (line {write.index}, by {self.name(write)}{status})"

    @staticmethod
    def describe_result(read: _Op) -> str:
        if read.value is not None:
            return f"{read.key} = {json.dumps(read.value)}"
        return f"{read.key} as never written" if read.version is None else f"{read.key} as deleted"

    @staticmethod
    def where(op: _Op) -> str:
        return f"(line {op.index})" if op.dc is None else f"(line {op.index}, dc{op.dc})"


def _short(write: _Op) -> str:
    return "a delete" if write.value is None else json.dumps(write.value)


def _writing(write: _Op) -> str:
    return f"deleting {write.key}" if write.value is None else f"writing {_short(write)}"


def _short_key(write: _Op) -> str:
    return (f"the delete of {write.key}" if write.value is None
            else f"{write.key} = {json.dumps(write.value)}")


def _show_version(version: tuple[int, int] | None) -> str:
    return "?" if version is None else f"[{version[0]}, {version[1]}]"


def _same_state(a: _Op, b: _Op) -> bool:
    if a.value != b.value:
        return False
    return a.version is None or b.version is None or a.version == b.version


def _match_delete(candidates: list[_Op], version: tuple[int, int]) -> _Op | None:
    """Which unversioned (mostly info) delete a read of a delete with ``version`` saw: one
    already matched to that version, else one not matched yet (it now takes the version),
    else any. The history cannot tell them apart better."""
    for delete in candidates:
        if delete.version == version:
            return delete
    for delete in candidates:
        if delete.version is None:
            delete.version = version
            return delete
    return candidates[0] if candidates else None


def _version_of(write: _Op) -> tuple[int, int]:
    return write.version


def _abridged(steps: list[str], keep: int = 12) -> list[str]:
    """At most ``keep`` steps of a long cycle: the start, a count, and the closing step."""
    if len(steps) <= keep:
        return steps
    return steps[:keep - 2] + [f"... {len(steps) - keep + 1} more steps ..."] + steps[-1:]


def _collapse_runs(edges: list[tuple[str, _Op, _Op]],
                   kinds: set[str]) -> list[tuple[str, _Op, _Op]]:
    """Merge consecutive edges whose kinds are in ``kinds`` into one edge (a path)."""
    merged: list[tuple[str, _Op, _Op]] = []
    for kind, a, b in edges:
        if kind in kinds and merged and merged[-1][0] == "path":
            merged[-1] = ("path", merged[-1][1], b)
        else:
            merged.append(("path" if kind in kinds else kind, a, b))
    return merged
