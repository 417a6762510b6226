"""The checks other than cycles: ThinAirRead, WriteCOInitRead and WriteCORead of the CCv
bad patterns, last-writer-wins arbitration, lost writes and divergence of final reads, and
for each stale read the session guarantee it breaks. ``Analysis`` runs every check over one
history; the cycle checks (``cycles``) and the wording (``explain``) are its mixins.
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from itertools import compress
from operator import gt
from typing import Iterable, Sequence

from .causal_order import CausalOrder, WriteIndex
from .cycles import CycleSearch
from .events import Event, HistoryError, Op, Sessions, pair_operations
from .explain import Explanations
from .kinds import (
    CAUSAL, DIVERGENCE, KINDS, LOST_WRITE, LWW_NOT_ARBITRATION, MONOTONIC_READS,
    MONOTONIC_WRITES, READ_YOUR_WRITES, SNAPSHOT, THIN_AIR_READ, WRITE_CO_INIT_READ,
    WRITE_CO_READ, WRITES_FOLLOW_READS, Anomaly, Classification,
)


class Analysis(CausalOrder, Sessions, CycleSearch, Explanations):
    """All checks over one history. ``run`` returns the anomalies in kind order."""

    def __init__(self, events: Sequence[Event]) -> None:
        self.all_ops = pair_operations(events)
        self.nodes: list[Op] = []
        self.sessions: list[list[Op]] = []
        self.session_names: list[str] = []
        self.found: dict[str, list[Anomaly]] = {kind: [] for kind in KINDS}
        self.write_index: dict[str, list[WriteIndex | None]] = {}
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
        self.cf_witness: dict[tuple[int, int], Op] = {}
        self.cf_by_witness: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self.flagged_reads: set[int] = set()  # reads already reported as anomalous
        self.shortest_cycle_searches = 20  # each costs a graph search: only the first few

    def run(self) -> list[Anomaly]:
        self.split_sessions()
        self._resolve_reads()
        self._learn_versions()
        self._index_writes()
        self._assign_vector_clocks()
        self._check_reads()
        self.check_conflict_cycles()
        self._check_final_reads()
        return [anomaly for kind in KINDS for anomaly in self.found[kind]]

    def report(self, kind: str, guarantee: str | None, ops: Iterable[Op],
               explanation: str) -> None:
        indexes = tuple(dict.fromkeys(op.index for op in ops))
        self.found[kind].append(Anomaly(kind, guarantee, indexes, explanation))

    # ------------------------------------------------------------------ read-from

    def _resolve_reads(self) -> None:
        """Map each read to the write it returned; reads of nothing anyone wrote are thin air."""
        by_value: dict[tuple[str, str], Op] = {}
        failed_by_value: dict[tuple[str, str], Op] = {}
        deletes_by_version: dict[tuple[str, tuple[int, int]], Op] = {}
        unversioned_deletes: dict[str, list[Op]] = defaultdict(list)
        failed_deletes: dict[str, Op] = {}
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
                self.report(THIN_AIR_READ, None, (read,) if failed is None else (read, failed),
                            self.explain_thin_air(read, failed))
            else:
                read.outcome, read.rf = "write", write
                write.readers.append(read)

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

    def _write_entry(self, write: Op) -> WriteIndex:
        index = self.write_index.get(write.key)
        if index is None:
            index = self.write_index[write.key] = [None] * len(self.sessions)
        entry = index[write.session]
        if entry is None:
            entry = index[write.session] = WriteIndex()
        return entry

    # ------------------------------------------------------------------ causal order

    def _assign_vector_clocks(self) -> None:
        """Visit so ∪ rf topologically (breaking and reporting cycles), then give clocks."""
        for node in self.co_topological_order():
            op = self.nodes[node]
            self.assign_clock(op)
            self._assign_knowledge(op)

    def _assign_knowledge(self, op: Op) -> None:
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

    # ------------------------------------------------------------------ slow read checks

    def _check_init_read(self, read: Op) -> None:
        newer = list(self.last_writes_before(read))
        if newer:
            self._report_stale(WRITE_CO_INIT_READ, read, None, newer)

    def _check_read_from(self, read: Op) -> None:
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

    def _report_read_arbitration(self, read: Op, source: Op, larger: Op) -> None:
        """LWW (b): no write CO-before the read may carry a larger version than the one read.
        The read is stale then, so it also breaks a session guarantee: its own write
        (read-your-writes), a version it read before (monotonic reads), and so on."""
        if self._reported_in_pass_1(read):
            return
        self.flagged_reads.add(read.id)
        verdict = self._classify(read, larger)
        ops = [read, source, larger] + [op for op in (verdict.entry, verdict.carrier, verdict.hop)
                                        if op is not None]
        self.report(LWW_NOT_ARBITRATION, verdict.guarantee, ops,
                    self.explain_read_arbitration(read, source, larger, verdict))

    # ------------------------------------------------------------------ session guarantees

    def _report_stale(self, kind: str, read: Op, source: Op | None,
                      candidates: list[Op]) -> None:
        """Report one stale read, blaming the newer write that reached the session first."""
        if self._reported_in_pass_1(read):
            return
        verdicts = [(self._classify(read, write), write) for write in candidates]
        verdict, newer = min(verdicts, key=lambda pair: self._blame_rank(read, *pair))
        self.flagged_reads.add(read.id)
        ops = [read] + ([source] if source else []) + [newer]
        ops += [op for op in (verdict.entry, verdict.carrier, verdict.hop) if op is not None]
        self.report(kind, verdict.guarantee, ops,
                    self.explain_stale(read, source, newer, verdict))

    def _blame_rank(self, read: Op, verdict: Classification, write: Op) -> tuple[int, int]:
        if verdict.guarantee == READ_YOUR_WRITES:
            return (0, -write.pos)
        return (1, verdict.entry.pos if verdict.entry else read.pos)

    def _reported_in_pass_1(self, read: Op) -> bool:
        """A transaction's value stale already for its session (pass 1) is that anomaly;
        its pass 2 twin would only repeat it."""
        return read.twin is not None and read.twin.id in self.flagged_reads

    def _classify(self, read: Op, newer: Op) -> Classification:
        if read.txn_pass == 2:  # stale only against another value of its transaction
            entry = self.first_seeing(self.sessions[read.session], newer)
            return Classification(SNAPSHOT, entry, entry.rf if entry is not None else None)
        if newer.session == read.session:
            return Classification(READ_YOUR_WRITES)
        entry = self.first_seeing(self.sessions[read.session], newer)
        carrier = entry.rf if entry is not None and entry.is_read else None
        if entry is None or carrier is None:
            return Classification(CAUSAL, entry)
        if entry.key == read.key:
            return Classification(MONOTONIC_READS, entry, carrier)
        if carrier.session == newer.session and newer.pos < carrier.pos:
            return Classification(MONOTONIC_WRITES, entry, carrier)
        hop = self.first_seeing(self.sessions[carrier.session], newer, carrier.pos - 1)
        if hop is not None and hop.rf is not None and (
                hop.rf is newer or self.session_before(newer, hop.rf)):
            return Classification(WRITES_FOLLOW_READS, entry, carrier, hop)
        return Classification(CAUSAL, entry, carrier, hop)

    # ------------------------------------------------------------------ arbitration

    def _check_write_order(self, write: Op) -> None:
        """LWW (a) broken for ``write``: find and report the earlier write with the largest
        version (each session's last one first; all of them if that does not show it)."""
        self.broken_keys.add(write.key)
        older = [earlier for earlier in self.last_writes_before(write, versioned=True)
                 if earlier.version >= write.version]
        if not older:
            older = [earlier for earlier in self.versioned_writes_before(write)
                     if earlier.version >= write.version]
        if older:
            earlier = max(older, key=_version_of)
            self.report(LWW_NOT_ARBITRATION, None, (earlier, write),
                        self.explain_write_order(earlier, write))

    # ------------------------------------------------------------------ final reads

    def _check_final_reads(self) -> None:
        finals: dict[str, list[Op]] = defaultdict(list)
        for read in self.nodes:
            if read.is_read and read.final:
                finals[read.key].append(read)
        for key, reads in finals.items():
            self._check_lost_writes(key, reads)
            self._check_divergence(key, reads)

    def _check_lost_writes(self, key: str, finals: list[Op]) -> None:
        for entry in self.write_index.get(key, ()):
            for write in entry.writes if entry is not None else ():
                if write.status != "ok":
                    continue
                for final in finals:
                    loss = self._loss(write, final)
                    if loss:
                        self.report(LOST_WRITE, None, (write, final),
                                    self.explain_lost_write(write, final, loss))
                        break

    def _loss(self, write: Op, final: Op) -> str:
        """How ``final`` shows that ``write`` was lost (see ``explain_lost_write``), or ""
        if it does not."""
        if final.outcome == "init":
            return "init"
        if final.outcome == "collected":
            if write.version is not None and write.version > final.collected_floor:
                return "collected"
            return ""
        seen = final.rf
        if seen is None or final.rf_cut or seen is write:
            return ""
        if (seen.version is not None and write.version is not None
                and seen.version < write.version):
            return "version"
        if self.co_before(seen, write):
            return "before"
        return ""

    def _check_divergence(self, key: str, finals: list[Op]) -> None:
        first = finals[0]
        if all(_same_state(first, other) for other in finals[1:]):
            return
        self.report(DIVERGENCE, None, finals, self.explain_divergence(key, finals))


def _same_state(a: Op, b: Op) -> bool:
    if a.value != b.value:
        return False
    return a.version is None or b.version is None or a.version == b.version


def _match_delete(candidates: list[Op], version: tuple[int, int]) -> Op | None:
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


def _version_of(write: Op) -> tuple[int, int]:
    return write.version
