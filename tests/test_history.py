"""The SDK's history format feeds the checker: what the recorder writes, the checker reads,
and a stale read recorded the same way is caught."""

from __future__ import annotations

import io
import json

from chainreaction import checker
from chainreaction.history import HistoryWriter
from chainreaction.versions import Version


def record(ops) -> list[str]:
    out = io.StringIO()
    history = HistoryWriter(stream=out)
    for process, dc, f, key, value, result_value, version in ops:
        invoked = history.invoke(process, dc, f, key, value)
        history.complete(invoked, "ok", value=result_value if f == "read" else value,
                         version=version)
    history.close()
    return out.getvalue().splitlines()


def test_events_carry_what_the_checker_needs():
    (invoke, ok) = record([("s1", 0, "write", "x", b"s1-1", None, Version(5, 0))])
    first, second = json.loads(invoke), json.loads(ok)
    assert (first["type"], first["f"], first["value"], first["index"]) == ("invoke", "write",
                                                                           "s1-1", 0)
    assert (second["type"], second["version"], second["index"]) == ("ok", [5, 0], 1)
    assert second["time"] >= first["time"]


def test_a_recorded_causal_history_passes_and_a_stale_read_is_caught():
    good = [("s1", 0, "write", "x", b"s1-1", None, Version(5, 0)),
            ("s1", 0, "write", "x", b"s1-2", None, Version(6, 0)),
            ("s1", 0, "read", "x", None, b"s1-2", Version(6, 0))]
    assert checker.check(checker.load_history(record(good))).valid
    stale = good[:2] + [("s1", 0, "read", "x", None, b"s1-1", Version(5, 0))]
    report = checker.check(checker.load_history(record(stale)))
    assert not report.valid
    assert {a.guarantee for a in report.anomalies} == {"read-your-writes"}


def test_undecodable_bytes_stay_unique_text():
    lines = record([("s1", 0, "write", "x", b"\xff\x00a", None, Version(5, 0)),
                    ("s1", 0, "read", "x", None, b"\xff\x00a", Version(5, 0))])
    assert checker.check(checker.load_history(lines)).valid
