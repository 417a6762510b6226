"""Operation histories as JSON lines, for the Jepsen-style checker (``chainreaction check``).

One line per invocation and one per completion, in the order they happened::

    {"index": 7, "time": 1.25, "process": "s3", "dc": 1, "type": "invoke", "f": "write",
     "key": "k2", "value": "s3-5"}
    {"index": 9, "time": 1.27, "process": "s3", "dc": 1, "type": "ok", "f": "write",
     "key": "k2", "value": "s3-5", "version": [1763900000123456, 1]}

``type`` is ``invoke``, then ``ok``, ``fail`` (certainly no effect) or ``info`` (unknown:
a write that timed out may still apply). ``f`` is ``read``, ``write``, ``delete`` or
``txn``, a GET-TRANSACTION: its events carry ``keys`` instead of ``key``, and its ``ok``
completion ``reads``, ``[{"key", "value", "version"}, ...]``, one per key::

    {"index": 12, "time": 1.31, "process": "s3", "dc": 1, "type": "ok", "f": "txn",
     "keys": ["k1", "k2"], "reads": [{"key": "k1", "value": "s2-4", "version": [17, 1]},
     {"key": "k2", "value": null, "version": null}]}

``time`` is monotonic seconds since the recorder opened. Values are text (bytes decoded as
UTF-8, undecodable bytes escaped); the checker needs each written value unique per key.
Final reads after the faults are healed carry ``"final": true``.
"""

from __future__ import annotations

import json
import time
from typing import IO

# Write errors that prove the write was not applied (refused at the edge); any other error
# leaves a write indeterminate.
REFUSED = frozenset({"bad_request", "bad_frame", "unknown_op"})


def as_text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "backslashreplace")


class HistoryWriter:
    """Appends events to a JSON-lines file. One writer may serve many sessions (one trio
    thread): each event is one ``write`` of a whole line."""

    def __init__(self, path: str | None = None, *, stream: IO[str] | None = None) -> None:
        if (path is None) == (stream is None):
            raise ValueError("give a path or a stream")
        self._own = stream is None
        self._out = open(path, "w", encoding="utf-8") if path is not None else stream
        self.t0 = time.monotonic()  # event times are seconds since this
        self._index = 0
        self.counts = {"invoke": 0, "ok": 0, "fail": 0, "info": 0}
        self.txn_counts = {"invoke": 0, "ok": 0, "fail": 0, "info": 0}  # of them, txns

    def _emit(self, event: dict) -> dict:
        event = {"index": self._index, "time": round(time.monotonic() - self.t0, 6), **event}
        self._index += 1
        self.counts[event["type"]] += 1
        if event["f"] == "txn":
            self.txn_counts[event["type"]] += 1
        self._out.write(json.dumps(event, separators=(",", ":")) + "\n")
        return event

    def invoke(self, process: str, dc: int | None, f: str, key: str,
               value: bytes | None = None) -> dict:
        return self._emit({"process": process, "dc": dc, "type": "invoke", "f": f, "key": key,
                           "value": as_text(value)})

    def complete(self, invoked: dict, kind: str, *, value: bytes | None = None,
                 version=None, dc: int | None = None, error: str | None = None,
                 final: bool = False, collected_floor=None) -> dict:
        event = {"process": invoked["process"], "dc": invoked["dc"] if dc is None else dc,
                 "type": kind, "f": invoked["f"], "key": invoked["key"],
                 "value": as_text(value) if kind == "ok" else invoked["value"]}
        if version is not None:
            event["version"] = [version.clock, version.dc]
        if collected_floor is not None:  # a "not found" that may be a collected delete
            event["collected_floor"] = [collected_floor.clock, collected_floor.dc]
        if error is not None:
            event["error"] = error
        if final:
            event["final"] = True
        return self._emit(event)

    def invoke_txn(self, process: str, dc: int | None, keys) -> dict:
        return self._emit({"process": process, "dc": dc, "type": "invoke", "f": "txn",
                           "keys": list(keys)})

    def complete_txn(self, invoked: dict, kind: str, *, results=(), dc: int | None = None,
                     error: str | None = None, final: bool = False) -> dict:
        """``results``: (key, value, version, collected_floor) of each key, for an ``ok``."""
        event = {"process": invoked["process"], "dc": invoked["dc"] if dc is None else dc,
                 "type": kind, "f": "txn", "keys": invoked["keys"]}
        if kind == "ok":
            event["reads"] = [{"key": key, "value": as_text(value), "version": None
                               if version is None else [version.clock, version.dc],
                               **({} if floor is None else
                                  {"collected_floor": [floor.clock, floor.dc]})}
                              for key, value, version, floor in results]
        if error is not None:
            event["error"] = error
        if final:
            event["final"] = True
        return self._emit(event)

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        if self._own:
            self._out.close()
        else:
            self._out.flush()
