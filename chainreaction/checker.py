"""Offline checker for causal consistency of recorded histories (``chainreaction check``).

A Jepsen/Elle-style checker: it reads a JSON-lines history (see ``chainreaction.history``)
and looks for the bad patterns of causal convergence (CCv) from Bouajjani, Enea, Guerraoui
and Hamza, "On verifying causal consistency" (POPL 2017), plus checks specific to this
store: last-writer-wins versions must be a valid arbitration order, acknowledged writes must
survive, and datacenters must converge.

Vocabulary. *Ops* are completed ``ok`` reads and ``ok``/``info`` writes (a delete is a write
of "no value"). *so* is session order: a process's ops, split into a new session after every
``info`` op (the second part of process ``s3`` is session ``s3#2``). *rf* maps each read to
the write it returned. *CO* = (so ∪ rf)+ is causal order. In explanations, "line N" is the
history event whose ``index`` is N.

How it stays fast. Causal order is never materialised: ops are visited in a topological
order of so ∪ rf and given vector clocks over sessions, so "a is CO-before b" is one array
lookup. Along the way each op also learns, per key, the largest version in its causal past.
If versions respect causality (which the store promises), a read that returned the largest
version of its key in its past cannot be stale, so only reads failing that test are
examined closely (per session, the last write of the key in the read's past, by bisection).
Conflict order is only built when versions cannot rule out a CyclicCF.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import defaultdict, deque
from dataclasses import dataclass, field
from itertools import compress
from operator import gt, ne
from typing import Any, Callable, Iterable, NamedTuple, Sequence

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

EVENT_TYPES = ("invoke", "ok", "fail", "info")
MAX_CYCLES_REPORTED = 100  # per kind; beyond that the rest are summed up in one anomaly
MAX_OPS_LISTED = 50
FUNCTIONS = ("read", "write", "delete")


class HistoryError(ValueError):
    """A history line that cannot be understood; the message starts with its line number."""


# --------------------------------------------------------------------------- public types


class Event(NamedTuple):
    """One validated history line. ``line`` is its 1-based line number in the input."""

    line: int
    index: int
    process: str
    type: str
    f: str
    key: str
    value: str | None = None
    version: tuple[int, int] | None = None
    dc: int | None = None
    time: float | None = None
    final: bool = False
    error: Any = None


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


@dataclass(slots=True)
class Report:
    """What ``check`` found. ``valid`` is true when there is no anomaly at all."""

    anomalies: list[Anomaly]
    counts: dict[str, int]
    elapsed_s: float
    valid: bool = field(init=False)

    def __post_init__(self) -> None:
        self.valid = not self.anomalies

    def kind_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for anomaly in self.anomalies:
            counts[anomaly.kind] = counts.get(anomaly.kind, 0) + 1
        return counts

    def as_dict(self) -> dict:
        return {"valid": self.valid, "counts": dict(self.counts),
                "elapsed_s": round(self.elapsed_s, 3), "anomaly_counts": self.kind_counts(),
                "anomalies": [anomaly.as_dict() for anomaly in self.anomalies]}


# --------------------------------------------------------------------------- loading


def load_history(source: str | os.PathLike | Iterable[str | dict]) -> list[Event]:
    """Parse a history from a file path, or from JSON-line strings / already-decoded dicts.

    A string that starts with ``{`` is taken as history text rather than a path. Blank lines
    are skipped. Raises ``HistoryError("line N: ...")`` on the first malformed line.
    """
    if isinstance(source, str) and source.lstrip().startswith("{"):
        return _parse_lines(source.splitlines())
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="utf-8") as stream:
            return _parse_lines(stream)
    return _parse_lines(source)


def _parse_lines(lines: Iterable[str | dict]) -> list[Event]:
    events: list[Event] = []
    line_of_index: dict[int, int] = {}
    for number, item in enumerate(lines, start=1):
        if isinstance(item, str):
            if not item.strip():
                continue
            item = _decode_json(item, number)
        event = _parse_event(item, number)
        if event.index in line_of_index:
            raise HistoryError(f"line {number}: index {event.index} was already used on line "
                               f"{line_of_index[event.index]}")
        line_of_index[event.index] = number
        events.append(event)
    return events


def _decode_json(text: str, number: int) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryError(f"line {number}: not valid JSON ({exc.msg} at column "
                           f"{exc.colno})") from None


def _parse_event(obj: Any, number: int) -> Event:
    """Validate one decoded line: a quick test for well-formed lines, then field by field
    (to say exactly what is wrong) for the rest."""
    try:
        event = Event(number, obj["index"], obj["process"], obj["type"], obj["f"], obj["key"],
                      obj.get("value"), obj.get("version"), obj.get("dc"), obj.get("time"),
                      obj.get("final", False), obj.get("error"))
    except (KeyError, TypeError, AttributeError):
        return _parse_event_field_by_field(obj, number)
    if not _well_formed(event):
        return _parse_event_field_by_field(obj, number)
    version = event.version
    return event if version is None else event._replace(version=(version[0], version[1]))


def _well_formed(event: Event) -> bool:
    version = event.version
    return (type(event.index) is int and type(event.process) is str
            and event.type in EVENT_TYPES and event.f in FUNCTIONS and type(event.key) is str
            and (event.value is None or type(event.value) is str)
            and (version is None or (type(version) is list and len(version) == 2
                                     and type(version[0]) is int and type(version[1]) is int))
            and (event.dc is None or type(event.dc) is int)
            and (event.time is None or type(event.time) in (int, float))
            and type(event.final) is bool)


def _parse_event_field_by_field(obj: Any, number: int) -> Event:
    if not isinstance(obj, dict):
        raise HistoryError(f"line {number}: expected a JSON object, got "
                           f"{type(obj).__name__}")
    where = f"line {number}"
    kind = _required(obj, "type", where)
    f = _required(obj, "f", where)
    if kind not in EVENT_TYPES:
        raise HistoryError(f"{where}: type must be one of {', '.join(EVENT_TYPES)}, "
                           f"got {kind!r}")
    if f not in FUNCTIONS:
        raise HistoryError(f"{where}: f must be one of {', '.join(FUNCTIONS)}, got {f!r}")
    return Event(
        line=number,
        index=_integer(_required(obj, "index", where), "index", where),
        process=_process(_required(obj, "process", where), where),
        type=kind, f=f,
        key=_text(_required(obj, "key", where), "key", where),
        value=_optional_text(obj.get("value"), "value", where),
        version=_version(obj.get("version"), where),
        dc=None if obj.get("dc") is None else _integer(obj["dc"], "dc", where),
        time=_time(obj.get("time"), where),
        final=_flag(obj.get("final", False), where),
        error=obj.get("error"),
    )


def _required(obj: dict, name: str, where: str) -> Any:
    if name not in obj:
        raise HistoryError(f"{where}: missing field {name!r}")
    return obj[name]


def _integer(value: Any, name: str, where: str) -> int:
    if type(value) is not int:
        raise HistoryError(f"{where}: {name} must be an integer, got {value!r}")
    return value


def _text(value: Any, name: str, where: str) -> str:
    if not isinstance(value, str):
        raise HistoryError(f"{where}: {name} must be a string, got {value!r}")
    return value


def _optional_text(value: Any, name: str, where: str) -> str | None:
    return None if value is None else _text(value, name, where)


def _process(value: Any, where: str) -> str:
    if type(value) is int:
        return str(value)
    return _text(value, "process", where)


def _version(value: Any, where: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if (isinstance(value, list) and len(value) == 2
            and all(type(part) is int for part in value)):
        return (value[0], value[1])
    raise HistoryError(f"{where}: version must be [clock, dc] (two integers), got {value!r}")


def _time(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if type(value) not in (int, float):
        raise HistoryError(f"{where}: time must be a number, got {value!r}")
    return float(value)


def _flag(value: Any, where: str) -> bool:
    if type(value) is not bool:
        raise HistoryError(f"{where}: final must be true or false, got {value!r}")
    return value


# --------------------------------------------------------------------------- operations


class _Op:
    """An invocation paired with its completion, plus what the analysis learns about it."""

    __slots__ = ("id", "index", "line", "process", "f", "key", "value", "version", "dc", "status",
                 "final", "session", "pos", "rf", "rf_cut", "outcome", "base", "readers",
                 "rank", "known", "top")

    def __init__(self, invoke: Event, completion: Event | None) -> None:
        done = completion or invoke
        self.id = -1  # position among the nodes of the causal graph, -1 if not a node
        self.index = done.index
        self.line = done.line
        self.process = invoke.process
        self.f = invoke.f
        self.key = invoke.key
        self.value = _completed_value(invoke, completion)
        self.version = completion.version if completion and completion.type == "ok" else None
        self.dc = done.dc if done.dc is not None else invoke.dc
        self.status = completion.type if completion else "info"
        self.final = invoke.final or bool(completion and completion.final)
        self.session = -1
        self.pos = 0  # 1-based position in the session
        self.rf: _Op | None = None  # for reads: the write read from
        self.rf_cut = False  # rf edge removed to break a causal cycle
        self.outcome = ""  # for reads: "init", "write" or "thin-air"
        self.base: array | None = None  # vector clock; own slot is ``pos``, not base[session]
        self.readers: list[_Op] = []
        self.rank = 0  # order of the version among all versions, 0 if unknown
        self.known: array | None = None  # per key, the largest rank in the causal past
        self.top = 0  # the largest rank in the causal past, any key

    @property
    def is_read(self) -> bool:
        return self.f == "read"

    @property
    def is_write(self) -> bool:
        return self.f != "read"


def _completed_value(invoke: Event, completion: Event | None) -> str | None:
    """Reads take the completion's value; writes keep the invoked one (which must match)."""
    if invoke.f == "read":
        return completion.value if completion and completion.type == "ok" else None
    if invoke.f == "delete":
        for event in (invoke, completion):
            if event is not None and event.value is not None:
                raise HistoryError(f"line {event.line}: a delete writes no value, got "
                                   f"{event.value!r}")
        return None
    if invoke.value is None:
        raise HistoryError(f"line {invoke.line}: a write must write a string value "
                           "(use f=delete to remove a key)")
    if completion is not None and completion.value not in (None, invoke.value):
        raise HistoryError(f"line {completion.line}: write completed with value "
                           f"{completion.value!r} but line {invoke.line} invoked it with "
                           f"{invoke.value!r}")
    return invoke.value


def _pair_operations(events: Sequence[Event]) -> list[_Op]:
    """Match each invoke with its process's next completion; unfinished ops become info."""
    pending: dict[str, Event] = {}
    ops: list[_Op] = []
    for event in events:
        running = pending.get(event.process)
        if event.type == "invoke":
            if running is not None:
                raise HistoryError(f"line {event.line}: process {event.process} invoked a new "
                                   f"op while its op from line {running.line} is still running")
            pending[event.process] = event
            continue
        if running is None:
            raise HistoryError(f"line {event.line}: {event.type} completion for process "
                               f"{event.process}, which has no invoked op")
        if (running.f, running.key) != (event.f, event.key):
            raise HistoryError(f"line {event.line}: completion ({event.f} {event.key}) does not "
                               f"match the invoke on line {running.line} ({running.f} "
                               f"{running.key})")
        del pending[event.process]
        ops.append(_Op(running, event))
    # A process's ops complete in the order it invoked them: that is session order.
    ops.extend(_Op(invoke, None) for invoke in pending.values())
    return ops


# --------------------------------------------------------------------------- analysis


@dataclass(slots=True)
class _WriteIndex:
    """One session's writes of one key, in session order, for bisection by position."""

    positions: list[int] = field(default_factory=list)
    writes: list[_Op] = field(default_factory=list)
    versioned_positions: list[int] = field(default_factory=list)
    versioned_writes: list[_Op] = field(default_factory=list)


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


class _Analysis:
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

    # ------------------------------------------------------------------ sessions and rf

    def _split_sessions(self) -> None:
        """Sessions are processes cut after each info op (an info op ends its session)."""
        current: dict[str, int] = {}
        splits: dict[str, int] = defaultdict(int)
        for op in self.all_ops:
            if op.status == "fail" or (op.status == "info" and op.is_read):
                if op.status == "info":
                    current.pop(op.process, None)
                continue
            if op.process not in current:
                splits[op.process] += 1
                suffix = "" if splits[op.process] == 1 else f"#{splits[op.process]}"
                current[op.process] = len(self.sessions)
                self.sessions.append([])
                self.session_names.append(op.process + suffix)
            session = current[op.process]
            op.session, op.id = session, len(self.nodes)
            self.sessions[session].append(op)
            op.pos = len(self.sessions[session])
            self.nodes.append(op)
            if op.status == "info":
                del current[op.process]
        self.slots = range(len(self.sessions))
        self.zero = array("i", bytes(4 * len(self.sessions)))

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
        for read in self.nodes:
            if not read.is_read:
                continue
            if read.value is not None:
                write = by_value.get((read.key, read.value))
                failed = failed_by_value.get((read.key, read.value))
            elif read.version is None:
                read.outcome = "init"
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

    @staticmethod
    def _session_before(a: _Op, b: _Op) -> bool:
        return a.session == b.session and a.pos < b.pos

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
            if not read.is_read or read.rf_cut or read.outcome == "thin-air":
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

    def _last_write_not_after(self, write: _Op, source: _Op) -> _Op | None:
        """The last write of ``write``'s key in its session before it that is not CO-after
        ``source`` (clock entries only grow along a session, so bisect)."""
        entry = self.write_index[write.key][write.session]
        stop = bisect_left(entry.positions, write.pos)
        found = bisect_left(entry.writes, source.pos, 0, stop,
                            key=lambda op: self.seen(op, source.session))
        return entry.writes[found - 1] if found else None

    def _report_read_arbitration(self, read: _Op, source: _Op, larger: _Op) -> None:
        """LWW (b): no write CO-before the read may carry a larger version than the one read."""
        self.flagged_reads.add(read.id)
        self.report(
            LWW_NOT_ARBITRATION, None, (read, source, larger),
            f"session {self.name(read)} read {self.describe_result(read)} {self.where(read)}, "
            f"written with version {_show_version(source.version)}, although "
            f"{self.describe_write(larger)} with the larger version "
            f"{_show_version(larger.version)} is in its causal past: last-writer-wins would "
            "have returned the larger one")

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

    def _first_seeing(self, ops: list[_Op], write: _Op, limit: int | None = None) -> _Op | None:
        """First of the first ``limit`` ops of a session whose causal past holds ``write``.

        Bisection works because a session's clock entries only grow along the session.
        """
        session, limit = write.session, len(ops) if limit is None else limit
        found = bisect_left(ops, write.pos, 0, limit, key=lambda op: self.seen(op, session))
        return ops[found] if found < limit else None

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

    def versioned_writes_before(self, op: _Op) -> Iterable[_Op]:
        """Every versioned write of op's key that is CO-before op."""
        for session, entry in enumerate(self.write_index.get(op.key, ())):
            if entry is not None:
                bound = op.pos - 1 if op.session == session else op.base[session]
                yield from entry.versioned_writes[:bisect_right(entry.versioned_positions,
                                                                bound)]

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


# --------------------------------------------------------------------------- public API


def check(history: Sequence[Event] | str | os.PathLike | Iterable[str | dict]) -> Report:
    """Check a history (events from ``load_history``, a path, lines or dicts) for anomalies."""
    started = time.perf_counter()
    if not (isinstance(history, list) and all(isinstance(e, Event) for e in history)):
        history = load_history(history)
    analysis = _Analysis(history)
    anomalies = analysis.run()
    return Report(anomalies, _counts(analysis), time.perf_counter() - started)


def _counts(analysis: _Analysis) -> dict[str, int]:
    nodes = analysis.nodes
    return {
        "ops": len(nodes),
        "reads": sum(op.is_read for op in nodes),
        "writes": sum(op.is_write and op.status == "ok" for op in nodes),
        "info_writes": sum(op.is_write and op.status == "info" for op in nodes),
        "failed": sum(op.status == "fail" for op in analysis.all_ops),
        "sessions": len(analysis.sessions),
        "final_reads": sum(op.is_read and op.final for op in nodes),
        "keys": len({op.key for op in analysis.all_ops}),
    }


def format_report(report: Report, max_per_kind: int = 10) -> str:
    """A short human summary: counts, then per kind the count and the first explanations."""
    c = report.counts
    lines = [f"history: {c['ops']} ops ({c['reads']} reads, {c['writes']} writes, "
             f"{c['info_writes']} indeterminate writes), {c['failed']} failed, "
             f"{c['sessions']} sessions, {c['keys']} keys, {c['final_reads']} final reads; "
             f"checked in {report.elapsed_s:.2f} s"]
    if report.valid:
        lines.append("no anomalies: causally consistent (CCv), last-writer-wins explains every "
                     "read, no lost writes, datacenters converged")
        return "\n".join(lines)
    lines.append(f"{len(report.anomalies)} anomalies")
    for kind in KINDS:
        found = [anomaly for anomaly in report.anomalies if anomaly.kind == kind]
        if found:
            lines.append(f"{kind}: {len(found)}{_guarantee_summary(found)}")
            lines += [f"  - {anomaly.explanation}" for anomaly in found[:max_per_kind]]
            if len(found) > max_per_kind:
                lines.append(f"  ... and {len(found) - max_per_kind} more")
    return "\n".join(lines)


def _guarantee_summary(found: list[Anomaly]) -> str:
    counts: dict[str, int] = {}
    for anomaly in found:
        if anomaly.guarantee:
            counts[anomaly.guarantee] = counts.get(anomaly.guarantee, 0) + 1
    if not counts:
        return ""
    return " (" + ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) + ")"


def main(argv: Sequence[str] | None = None) -> int:
    """``chainreaction check HISTORY.jsonl [--json] [--max N]``: 0 valid, 1 anomalies, 2 error."""
    parser = argparse.ArgumentParser(
        prog="chainreaction check",
        description="Check a recorded JSON-lines history for causal consistency anomalies.")
    parser.add_argument("history", metavar="HISTORY.jsonl", help="history file to check")
    parser.add_argument("--json", action="store_true",
                        help="print the whole report (every anomaly) as JSON")
    parser.add_argument("--max", type=int, default=10, metavar="N",
                        help="explanations shown per anomaly kind (default 10)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        report = check(args.history)
    except (OSError, UnicodeDecodeError, HistoryError) as exc:
        print(f"chainreaction check: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(format_report(report, max_per_kind=max(args.max, 0)))
    return 0 if report.valid else 1


if __name__ == "__main__":
    sys.exit(main())
