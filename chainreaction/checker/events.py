"""Reading a history: parse and validate its events, pair each invocation with its
completion into an op, and cut each process's ops into sessions at ``info`` ops.

The rest of the package sees the input only as ``Event``s and the ``Op``s made of them.
"""

from __future__ import annotations

import json
import os
from array import array
from collections import defaultdict
from typing import Any, Iterable, NamedTuple, Sequence


EVENT_TYPES = ("invoke", "ok", "fail", "info")
FUNCTIONS = ("read", "write", "delete", "txn")


class HistoryError(ValueError):
    """A history line that cannot be understood; the message starts with its line number."""


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
    # a "not found" read at a node that collected tombstones up to this version: the key
    # may have been deleted (at or below it) rather than never written
    collected_floor: tuple[int, int] | None = None
    # f "txn" (a GET-TRANSACTION): the keys it reads, and on an ok completion what each
    # returned, (key, value, version); ``key`` is then "". Read events the checker makes
    # of a transaction (``pair_operations``) carry its pass, 1 or 2.
    keys: tuple[str, ...] = ()
    # (key, value, version, collected_floor)
    reads: tuple[tuple[str, str | None, tuple[int, int] | None, tuple | None], ...] = ()
    txn_pass: int = 0


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
    if isinstance(obj, dict) and obj.get("f") == "txn":
        return _parse_transaction(obj, number)
    try:
        event = Event(number, obj["index"], obj["process"], obj["type"], obj["f"], obj["key"],
                      obj.get("value"), obj.get("version"), obj.get("dc"), obj.get("time"),
                      obj.get("final", False), obj.get("error"))
    except (KeyError, TypeError, AttributeError):
        return _parse_event_field_by_field(obj, number)
    if not _well_formed(event) or "collected_floor" in obj:
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
        collected_floor=_version(obj.get("collected_floor"), where),
    )


def _parse_transaction(obj: dict, number: int) -> Event:
    """A GET-TRANSACTION line: ``keys`` (distinct strings) on every event, and on an ok
    completion ``reads``, one ``{"key", "value", "version"}`` per key, in any order."""
    where = f"line {number}"
    kind = _required(obj, "type", where)
    if kind not in EVENT_TYPES:
        raise HistoryError(f"{where}: type must be one of {', '.join(EVENT_TYPES)}, "
                           f"got {kind!r}")
    keys = _required(obj, "keys", where)
    if (not isinstance(keys, list) or not keys or len(set(keys)) != len(keys)
            or not all(isinstance(k, str) for k in keys)):
        raise HistoryError(f"{where}: keys of a txn must be a non-empty list of distinct "
                           f"strings, got {keys!r}")
    reads = ()
    if kind == "ok" and not obj.get("final", False):
        raw = _required(obj, "reads", where)
        if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
            raise HistoryError(f"{where}: reads must be a list of objects, got {raw!r}")
        reads = tuple((_text(_required(r, "key", where), "key", where),
                       _optional_text(r.get("value"), "value", where),
                       _version(r.get("version"), where),
                       _version(r.get("collected_floor"), where)) for r in raw)
        if sorted(r[0] for r in reads) != sorted(keys):
            raise HistoryError(f"{where}: a txn must return each of its keys once: keys "
                               f"{keys!r}, reads of {[r[0] for r in reads]!r}")
    return Event(
        line=number, index=_integer(_required(obj, "index", where), "index", where),
        process=_process(_required(obj, "process", where), where), type=kind, f="txn",
        key="", dc=None if obj.get("dc") is None else _integer(obj["dc"], "dc", where),
        time=_time(obj.get("time"), where), final=_flag(obj.get("final", False), where),
        error=obj.get("error"), keys=tuple(keys), reads=reads)


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


class Op:
    """An invocation paired with its completion, plus what the analysis learns about it."""

    __slots__ = ("id", "index", "line", "process", "f", "key", "value", "version", "dc", "status",
                 "final", "session", "pos", "rf", "rf_cut", "outcome", "base", "readers",
                 "rank", "known", "top", "collected_floor", "txn_pass", "twin")

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
        self.collected_floor = (completion.collected_floor
                                if completion and completion.type == "ok" else None)
        self.dc = done.dc if done.dc is not None else invoke.dc
        self.status = completion.type if completion else "info"
        self.final = invoke.final or bool(completion and completion.final)
        self.session = -1
        self.pos = 0  # 1-based position in the session
        self.rf: Op | None = None  # for reads: the write read from
        self.rf_cut = False  # rf edge removed to break a causal cycle
        self.outcome = ""  # for reads: "init", "write", "thin-air" or "collected"
        self.base: array | None = None  # vector clock; own slot is ``pos``, not base[session]
        self.readers: list[Op] = []
        self.rank = 0  # order of the version among all versions, 0 if unknown
        self.known: array | None = None  # per key, the largest rank in the causal past
        self.top = 0  # the largest rank in the causal past, any key
        self.txn_pass = invoke.txn_pass  # a read of a transaction: 1 or 2 (pair_operations)
        self.twin: Op | None = None  # pass 2's read: the same key's read in pass 1

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


def pair_operations(events: Sequence[Event]) -> list[Op]:
    """Match each invoke with its process's next completion; unfinished ops become info."""
    pending: dict[str, Event] = {}
    ops: list[Op] = []
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
        if (running.f, running.key, running.keys) != (event.f, event.key, event.keys):
            what = " ".join(event.keys) or event.key
            raise HistoryError(f"line {event.line}: completion ({event.f} {what}) does not "
                               f"match the invoke on line {running.line} ({running.f} "
                               f"{' '.join(running.keys) or running.key})")
        del pending[event.process]
        ops.extend(_transaction_reads(running, event) if event.f == "txn"
                   else [Op(running, event)])
    # A process's ops complete in the order it invoked them: that is session order.
    for invoke in pending.values():
        ops.extend(_transaction_reads(invoke, None) if invoke.f == "txn" else [Op(invoke, None)])
    return ops


def _transaction_reads(invoke: Event, completion: Event | None) -> list[Op]:
    """A GET-TRANSACTION as reads of its session, checked by the read checks: every key
    read once (pass 1: against the session's past, as a get), then every key again (pass
    2). In session order pass 2 comes after all of pass 1, so each of its reads has in its
    causal past every version the transaction returned: a value older than a write in the
    past of another value of the same transaction (a fractured snapshot) is a stale read
    there. A failed or unknown transaction is one failed or unknown read (it changes
    nothing; unknown ends the session, as an unknown read does)."""
    if completion is None or completion.type != "ok" or completion.final:
        read = invoke._replace(f="read", key=invoke.keys[0], keys=(), txn_pass=1)
        done = None if completion is None else completion._replace(
            f="read", key=invoke.keys[0], keys=(), reads=())
        return [Op(read, done)]
    by_key = {key: rest for key, *rest in completion.reads}
    ops = []
    for txn_pass in (1, 2):
        for key in invoke.keys:
            value, version, floor = by_key[key]
            read = invoke._replace(f="read", key=key, keys=(), txn_pass=txn_pass)
            ops.append(Op(read, completion._replace(
                f="read", key=key, value=value, version=version, keys=(), reads=(),
                collected_floor=floor if version is None else None)))
    for first, second in zip(ops, ops[len(invoke.keys):]):
        second.twin = first
    return ops


# --------------------------------------------------------------------------- sessions


class Sessions:
    """Mixin of ``Analysis`` (which sets the lists it fills in ``__init__``): cuts
    ``all_ops`` into ``sessions`` and numbers the ops that are nodes of the causal graph."""

    def split_sessions(self) -> None:
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
