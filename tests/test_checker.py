"""The offline causal consistency checker (``chainreaction check``).

Hand-made histories show each anomaly kind (and a corrected twin that passes); a reference
model of a causal+ store generates random valid histories that must pass, and mutations of
them that must be caught; a synthetic 100k-op history checks the checker's speed.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainreaction.checker import (
    CYCLIC_CF, CYCLIC_CO, DIVERGENCE, LOST_WRITE, LWW_NOT_ARBITRATION, MONOTONIC_READS,
    MONOTONIC_WRITES, READ_YOUR_WRITES, THIN_AIR_READ, WRITE_CO_INIT_READ, WRITE_CO_READ,
    WRITES_FOLLOW_READS, CAUSAL, Anomaly, HistoryError, Report, check, format_report,
    load_history, main,
)

AUTO = object()


class History:
    """Builds history events (dicts) the way the runner writes them: invoke, then completion.

    Writes get increasing versions unless told otherwise; reads of a value default to the
    version of the write of that value. Methods return the completion's index.
    """

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.clock = 0
        self.versions: dict[tuple[str, str], list[int]] = {}
        self.version_at: dict[int, list[int]] = {}

    def emit(self, **fields) -> int:
        index = len(self.events)
        self.events.append({"index": index, "time": index / 1000, **fields})
        return index

    def invoke(self, process: str, f: str, key: str, value: str | None = None,
               dc: int | None = 0) -> int:
        return self.emit(process=process, dc=dc, type="invoke", f=f, key=key, value=value)

    def complete(self, process: str, f: str, key: str, value: str | None = None, *,
                 status: str = "ok", version=None, dc: int | None = 0,
                 final: bool = False, **extra) -> int:
        fields = dict(process=process, dc=dc, type=status, f=f, key=key, value=value, **extra)
        if version is not None:
            fields["version"] = list(version)
        if final:
            fields["final"] = True
        return self.emit(**fields)

    def _next_version(self, dc: int | None) -> list[int]:
        self.clock += 1
        return [self.clock, dc or 0]

    def write(self, process: str, key: str, value: str, *, version=AUTO, dc: int = 0,
              status: str = "ok") -> int:
        if version is AUTO:
            version = self._next_version(dc)
        self.versions[(key, value)] = version
        self.invoke(process, "write", key, value, dc)
        if status == "none":  # never completes: indeterminate
            return self.events[-1]["index"]
        index = self.complete(process, "write", key, value, status=status, dc=dc,
                              version=version if status == "ok" else None,
                              **({} if status == "ok" else
                                 {"error": "timeout" if status == "info" else "unavailable"}))
        self.version_at[index] = version
        return index

    def delete(self, process: str, key: str, *, version=AUTO, dc: int = 0,
               status: str = "ok") -> int:
        if version is AUTO:
            version = self._next_version(dc)
        self.invoke(process, "delete", key, None, dc)
        index = self.complete(process, "delete", key, None, status=status, dc=dc,
                              version=version if status == "ok" else None)
        self.version_at[index] = version
        return index

    def read(self, process: str, key: str, value: str | None = None, *, version=AUTO,
             dc: int = 0, status: str = "ok", final: bool = False) -> int:
        if version is AUTO:
            version = self.versions.get((key, value)) if value is not None else None
        self.invoke(process, "read", key, None, dc)
        if status != "ok":
            return self.complete(process, "read", key, None, status=status, dc=dc)
        return self.complete(process, "read", key, value, version=version, dc=dc, final=final)

    def final_reads(self, key: str, value: str | None, dcs=(0, 1), version=AUTO) -> None:
        for dc in dcs:
            self.read(f"final-dc{dc}", key, value, dc=dc, final=True, version=version)


def kinds(report: Report) -> set[str]:
    return {anomaly.kind for anomaly in report.anomalies}


def only(report: Report, kind: str) -> Anomaly:
    """The single anomaly of the report, which must be of ``kind``."""
    assert [a.kind for a in report.anomalies] == [kind], format_report(report)
    return report.anomalies[0]


def assert_valid(history: History | list[dict]) -> Report:
    report = check(history.events if isinstance(history, History) else history)
    assert report.valid, format_report(report)
    return report


# --------------------------------------------------------------------------- thin air


def test_read_of_value_nobody_wrote_is_thin_air():
    h = History()
    h.write("s1", "x", "a")
    bad = h.read("s2", "x", "zz", version=[9, 0])
    anomaly = only(check(h.events), THIN_AIR_READ)
    assert anomaly.ops == (bad,)
    assert '"zz"' in anomaly.explanation and "s2" in anomaly.explanation


def test_read_of_failed_write_is_thin_air():
    h = History()
    failed = h.write("s1", "x", "a", status="fail")
    bad = h.read("s2", "x", "a")
    anomaly = only(check(h.events), THIN_AIR_READ)
    assert anomaly.ops == (bad, failed)
    assert "read a write that failed" in anomaly.explanation


def test_read_of_unknown_delete_version_is_thin_air():
    h = History()
    h.delete("s1", "x", version=[5, 0])
    h.read("s2", "x", None, version=[7, 0])
    assert kinds(check(h.events)) == {THIN_AIR_READ}


def test_reads_of_written_values_and_deletes_pass():
    h = History()
    h.write("s1", "x", "a")
    gone = h.delete("s1", "x")
    h.read("s2", "x", "a")
    h.read("s2", "x", None, version=h.version_at[gone])
    h.read("s3", "y")  # never written: initial state
    assert_valid(h)


# --------------------------------------------------------------------------- cyclic CO


def test_read_from_own_future_is_cyclic_co():
    h = History()
    read = h.read("s1", "x", "a", version=[1, 0])
    write = h.write("s1", "x", "a", version=[1, 0])
    anomaly = only(check(h.events), CYCLIC_CO)
    assert set(anomaly.ops) == {read, write}


def test_two_reads_of_each_others_future_writes_are_cyclic_co():
    h = History()
    h.versions.update({("x", "b"): [2, 0], ("y", "a"): [1, 0]})
    h.read("s1", "x", "b")
    h.write("s1", "y", "a", version=[1, 0])
    h.read("s2", "y", "a")
    h.write("s2", "x", "b", version=[2, 0])
    assert kinds(check(h.events)) == {CYCLIC_CO}


def test_reading_other_sessions_in_order_is_acyclic():
    h = History()
    h.write("s1", "y", "a")
    h.read("s2", "y", "a")
    h.write("s2", "x", "b")
    h.read("s1", "x", "b")
    assert_valid(h)


# --------------------------------------------------------------------------- WriteCOInitRead


def test_read_of_initial_state_after_own_write_breaks_read_your_writes():
    h = History()
    write = h.write("s1", "x", "a")
    read = h.read("s1", "x")
    anomaly = only(check(h.events), WRITE_CO_INIT_READ)
    assert anomaly.guarantee == READ_YOUR_WRITES
    assert {read, write} <= set(anomaly.ops)
    assert "s1" in anomaly.explanation and "read-your-writes" in anomaly.explanation


def test_initial_state_after_seeing_a_write_breaks_monotonic_reads():
    h = History()
    h.write("s2", "x", "a")
    h.read("s1", "x", "a")
    h.read("s1", "x")
    anomaly = only(check(h.events), WRITE_CO_INIT_READ)
    assert anomaly.guarantee == MONOTONIC_READS


def test_initial_state_of_a_key_written_before_the_one_read_breaks_monotonic_writes():
    h = History()
    h.write("s2", "x", "a")
    h.write("s2", "y", "b")
    h.read("s1", "y", "b")
    h.read("s1", "x")
    anomaly = only(check(h.events), WRITE_CO_INIT_READ)
    assert anomaly.guarantee == MONOTONIC_WRITES


def test_initial_state_of_what_the_writer_had_read_breaks_writes_follow_reads():
    h = History()
    h.write("s2", "x", "a")
    h.read("s3", "x", "a")
    h.write("s3", "y", "b")
    h.read("s1", "y", "b")
    h.read("s1", "x")
    anomaly = only(check(h.events), WRITE_CO_INIT_READ)
    assert anomaly.guarantee == WRITES_FOLLOW_READS


def test_initial_state_after_a_longer_causal_chain_is_plain_causal():
    h = History()
    h.write("s2", "x", "a")
    h.read("s3", "x", "a")
    h.write("s3", "z", "c")
    h.read("s4", "z", "c")
    h.write("s4", "y", "b")
    h.read("s1", "y", "b")
    h.read("s1", "x")
    anomaly = only(check(h.events), WRITE_CO_INIT_READ)
    assert anomaly.guarantee == CAUSAL


def collected_read(h: History, process: str, key: str, floor, *, final: bool = False,
                   dc: int = 0) -> int:
    """A "not found" from a node that collected tombstones up to ``floor``."""
    h.invoke(process, "read", key, None, dc)
    return h.complete(process, "read", key, None, dc=dc, final=final,
                      collected_floor=list(floor))


def test_not_found_after_a_delete_was_collected_is_not_the_initial_state():
    h = History()
    h.write("s1", "x", "a")
    delete = h.delete("s2", "x")
    collected_read(h, "s1", "x", h.version_at[delete])
    assert_valid(h)
    # Without a delete at or below the node's floor, "not found" is the initial state
    # again: after the session's own write, a read-your-writes violation.
    h = History()
    h.write("s1", "x", "a")
    h.delete("s2", "x", version=[50, 0])
    collected_read(h, "s1", "x", [20, 0])
    assert only(check(h.events), WRITE_CO_INIT_READ).guarantee == READ_YOUR_WRITES


def test_a_final_not_found_loses_writes_newer_than_what_was_collected():
    h = History()
    h.write("s1", "x", "a")
    delete = h.delete("s2", "x")
    for dc in (0, 1):
        collected_read(h, f"final-dc{dc}", "x", h.version_at[delete], final=True, dc=dc)
    assert_valid(h)
    h.write("s3", "x", "b")  # acknowledged after the delete, above the floor
    assert kinds(check(h.events)) == {LOST_WRITE}


def test_initial_state_without_a_causally_earlier_write_passes():
    h = History()
    h.write("s2", "x", "a")
    h.write("s2", "y", "b")
    h.read("s1", "x")  # x not yet visible: fine, nothing forces it
    h.read("s1", "y", "b")
    assert_valid(h)


# --------------------------------------------------------------------------- WriteCORead


def test_reading_own_older_write_breaks_read_your_writes():
    h = History()
    first = h.write("s1", "x", "a")
    second = h.write("s1", "x", "b")
    read = h.read("s1", "x", "a")
    report = check(h.events)
    assert kinds(report) == {WRITE_CO_READ}
    anomaly = report.anomalies[0]
    assert anomaly.guarantee == READ_YOUR_WRITES
    assert {first, second, read} <= set(anomaly.ops)


def test_reading_older_value_after_newer_breaks_monotonic_reads():
    h = History()
    h.write("s2", "x", "a")
    h.write("s2", "x", "b")
    h.read("s1", "x", "b")
    stale = h.read("s1", "x", "a")
    anomaly = only(check(h.events), WRITE_CO_READ)
    assert anomaly.guarantee == MONOTONIC_READS
    assert anomaly.ops[0] == stale
    assert "monotonic reads violated" in anomaly.explanation


def test_stale_read_of_key_written_before_the_one_seen_breaks_monotonic_writes():
    h = History()
    h.write("s2", "x", "a")
    h.write("s2", "x", "b")
    h.write("s2", "y", "c")
    h.read("s1", "y", "c")
    h.read("s1", "x", "a")
    anomaly = only(check(h.events), WRITE_CO_READ)
    assert anomaly.guarantee == MONOTONIC_WRITES


def test_stale_read_of_key_the_writer_had_read_breaks_writes_follow_reads():
    h = History()
    h.write("s2", "x", "a")
    h.write("s2", "x", "b")
    h.read("s3", "x", "b")
    h.write("s3", "y", "c")
    h.read("s1", "x", "a")  # fine so far: s1 has not seen "b"
    h.read("s1", "y", "c")
    h.read("s1", "x", "a")
    anomaly = only(check(h.events), WRITE_CO_READ)
    assert anomaly.guarantee == WRITES_FOLLOW_READS


def test_monotonic_session_reads_pass():
    h = History()
    h.write("s2", "x", "a")
    h.write("s2", "x", "b")
    h.read("s1", "x", "a")
    h.read("s1", "x", "b")
    h.read("s1", "x", "b")
    h.write("s1", "x", "c")
    h.read("s1", "x", "c")
    assert_valid(h)


# --------------------------------------------------------------------------- CyclicCF


def cross_key_conflict_cycle(cyclic: bool) -> History:
    """Versions order each key alone but no total order of writes fits: P's writes go
    y-then-x (cycle) or x-then-y (no cycle)."""
    h = History()
    p_ops = [("y", "p-y", [10, 0]), ("x", "p-x", [1, 0])]
    for key, value, version in (p_ops if cyclic else p_ops[::-1]):
        h.write("P", key, value, version=version)
    h.write("Q", "x", "q-x", version=[2, 1])
    h.write("Q", "y", "q-y", version=[3, 1])
    h.read("R", "y", "q-y")
    h.read("R", "y", "p-y")  # CF: q-y before p-y
    h.read("T", "x", "p-x")
    h.read("T", "x", "q-x")  # CF: p-x before q-x
    return h


def test_cross_key_conflict_cycle_is_cyclic_cf():
    anomaly = only(check(cross_key_conflict_cycle(True).events), CYCLIC_CF)
    assert "cycle" in anomaly.explanation
    assert len(anomaly.ops) >= 4


def test_cross_key_conflicts_without_cycle_pass():
    assert_valid(cross_key_conflict_cycle(False))


def test_two_sessions_ordering_concurrent_writes_differently_is_cyclic_cf():
    h = History()
    h.write("s1", "x", "a", dc=0)
    h.write("s2", "x", "b", dc=1)
    h.read("s3", "x", "a")
    h.read("s3", "x", "b")
    h.read("s4", "x", "b")
    h.read("s4", "x", "a")
    assert CYCLIC_CF in kinds(check(h.events))


# --------------------------------------------------------------------------- LWW


def test_causally_later_write_with_smaller_version_is_not_arbitration():
    h = History()
    h.write("s1", "x", "a", version=[10, 0])
    h.write("s1", "x", "b", version=[5, 0])
    h.read("s1", "x", "b")
    assert kinds(check(h.events)) == {LWW_NOT_ARBITRATION}


def test_read_of_smaller_version_with_larger_in_causal_past_is_not_arbitration():
    h = History()
    h.write("s1", "x", "a", version=[10, 0])
    h.write("s2", "x", "b", version=[5, 1], dc=1)
    h.read("s3", "x", "a")
    h.read("s3", "x", "b")
    assert LWW_NOT_ARBITRATION in kinds(check(h.events))


def test_a_moved_session_reading_an_older_concurrent_value_of_its_own_write_breaks_ryw():
    """Issue 12's scenario as a history: S wrote ynew in dc1, read dc0's concurrent x0
    there, moved to dc2 and read W's older yold. No write of y is causally before yold's
    reader except S's own ynew, which has the larger stamp: the checker must say which
    session guarantee that breaks, not only that last-writer-wins was not followed."""
    h = History()
    h.write("W", "y", "yold", version=[10, 2], dc=2)
    h.write("W", "x", "xold", version=[11, 2], dc=2)
    h.write("S", "y", "ynew", version=[20, 1], dc=1)
    h.write("S", "x", "x1", version=[21, 1], dc=1)
    h.write("T", "x", "x0", version=[22, 0], dc=0)
    h.read("S", "x", "x0", dc=1)
    h.read("S", "y", "yold", dc=2)
    anomaly = only(check(h.events), LWW_NOT_ARBITRATION)
    assert anomaly.guarantee == "read-your-writes"
    assert "its own write y = \"ynew\"" in anomaly.explanation
    assert "read-your-writes violated" in anomaly.explanation


def test_a_stale_read_of_a_value_seen_before_names_monotonic_reads():
    h = History()
    h.write("A", "x", "a", version=[5, 0], dc=0)
    h.write("B", "x", "b", version=[9, 1], dc=1)
    h.read("S", "x", "b", dc=1)
    h.read("S", "x", "a", dc=0)  # older by the store's own order, after seeing b
    anomaly = only(check(h.events), LWW_NOT_ARBITRATION)
    assert anomaly.guarantee == "monotonic reads"


def test_concurrent_writes_resolved_by_lww_pass():
    h = History()
    h.write("s1", "x", "a", version=[5, 0], dc=0)
    h.write("s2", "x", "b", version=[5, 1], dc=1)
    h.read("s3", "x", "a", dc=0)  # dc0 had not got "b" yet
    h.read("s3", "x", "b", dc=0)  # now it has: the larger version wins
    h.read("s4", "x", "b", dc=1)
    h.final_reads("x", "b")
    report = assert_valid(h)
    assert report.counts["final_reads"] == 2


# --------------------------------------------------------------------------- final reads


def test_final_read_of_smaller_version_loses_acknowledged_write():
    h = History()
    h.write("s1", "x", "a")
    lost = h.write("s1", "x", "b")
    h.final_reads("x", "a")
    report = check(h.events)
    assert kinds(report) == {LOST_WRITE}
    assert all(lost in anomaly.ops for anomaly in report.anomalies)


def test_final_read_of_initial_state_loses_writes():
    h = History()
    h.write("s1", "x", "a")
    h.final_reads("x", None)
    assert kinds(check(h.events)) == {LOST_WRITE}


def test_final_read_of_causally_earlier_unversioned_write_loses_write():
    h = History()
    h.write("s1", "x", "a", version=None)
    h.write("s1", "x", "b", version=None)
    h.final_reads("x", "a", version=None)
    assert kinds(check(h.events)) == {LOST_WRITE}


def test_final_reads_that_disagree_are_divergence():
    h = History()
    h.write("s1", "x", "a", dc=0)
    h.write("s2", "x", "b", dc=1, status="info")
    h.versions[("x", "b")] = [9, 1]
    h.read("final-dc0", "x", "a", dc=0, final=True)
    h.read("final-dc1", "x", "b", dc=1, final=True)
    anomaly = only(check(h.events), DIVERGENCE)
    assert "dc0" in anomaly.explanation and "dc1" in anomaly.explanation


def test_final_reads_of_the_newest_write_pass():
    h = History()
    h.write("s1", "x", "a")
    h.write("s2", "x", "b", dc=1)
    gone = h.delete("s2", "y", dc=1)
    h.final_reads("x", "b")
    h.final_reads("y", None, version=h.version_at[gone])
    assert_valid(h)


# --------------------------------------------------------------------------- info


def test_read_of_info_write_passes_and_teaches_its_version():
    h = History()
    h.write("s1", "x", "a", status="info")
    h.write("s2", "x", "b")
    h.read("s3", "x", "a", version=[1, 0])
    h.read("s3", "x", "b")
    h.final_reads("x", "b")
    report = assert_valid(h)
    assert report.counts["info_writes"] == 1


def test_version_learnt_from_a_read_of_an_info_write_is_checked():
    h = History()
    h.write("s1", "x", "a", status="info")
    h.write("s2", "x", "b", version=[5, 1], dc=1)
    h.read("s3", "x", "a", version=[10, 0])  # "a" did happen, with version [10, 0]
    h.read("s3", "x", "b")  # so "b" cannot win now
    assert kinds(check(h.events)) == {LWW_NOT_ARBITRATION}


@pytest.mark.parametrize("first, second, valid", [([5, 0], [7, 1], True),
                                                  ([7, 1], [5, 0], False)])
def test_reads_of_two_info_deletes_are_told_apart_by_version(first, second, valid):
    h = History()
    h.delete("s1", "x", status="info")
    h.delete("s2", "x", status="info", dc=1)
    h.read("s3", "x", None, version=first)
    h.read("s3", "x", None, version=second)
    report = check(h.events)
    assert report.valid == valid
    assert kinds(report) <= {LWW_NOT_ARBITRATION}


def test_info_write_never_read_passes():
    h = History()
    h.write("s1", "x", "a", status="info")
    h.write("s2", "x", "b", status="none")  # never completed: info as well
    h.read("s3", "x")
    h.final_reads("x", None)
    report = assert_valid(h)
    assert report.counts["info_writes"] == 2


def test_ops_after_info_in_the_same_process_start_a_new_session():
    h = History()
    h.write("s1", "x", "a")
    h.write("s1", "x", "b", status="info")  # "b" may or may not have happened
    h.read("s1", "x", "a")  # new session: no read-your-writes on "b"
    h.write("s1", "y", "c", status="info")
    h.read("s1", "y")  # nor on "c"
    h.read("s1", "q", status="info")  # an info read ends the session too
    h.read("s1", "y")
    report = assert_valid(h)
    assert report.counts["sessions"] == 4


def test_failed_ops_are_ignored():
    h = History()
    h.write("s1", "x", "a", status="fail")
    h.read("s1", "x")
    h.read("s1", "y", status="fail")
    report = assert_valid(h)
    assert report.counts["failed"] == 2 and report.counts["ops"] == 1


# --------------------------------------------------------------------------- input errors


def lines_of(events: list[dict]) -> list[str]:
    return [json.dumps(event) for event in events]


def test_malformed_json_names_its_line():
    h = History()
    h.write("s1", "x", "a")
    lines = lines_of(h.events) + ['{"index": 7, "process": ']
    with pytest.raises(HistoryError, match=r"^line 3: not valid JSON"):
        load_history(lines)


@pytest.mark.parametrize("change, message", [
    ({"type": "done"}, r"line 2: type must be one of"),
    ({"f": "cas"}, r"line 2: f must be one of"),
    ({"version": [1]}, r"line 2: version must be \[clock, dc\]"),
    ({"collected_floor": "x"}, r"line 2: version must be \[clock, dc\]"),
    ({"index": "1"}, r"line 2: index must be an integer"),
    ({"key": None}, r"line 2: key must be a string"),
    ({"index": 0}, r"line 2: index 0 was already used on line 1"),
    ({"process": "s9"}, r"line 2: ok completion for process s9, which has no invoked op"),
    ({"key": "y"}, r"line 2: completion \(write y\) does not match"),
])
def test_malformed_fields_name_their_line(change, message):
    h = History()
    h.write("s1", "x", "a")
    h.events[1].update(change)
    with pytest.raises(HistoryError, match=message):
        check(lines_of(h.events))


def test_missing_field_and_overlapping_ops_name_their_line():
    with pytest.raises(HistoryError, match=r"^line 1: missing field 'key'"):
        load_history(['{"index": 0, "process": "s1", "type": "invoke", "f": "read"}'])
    h = History()
    h.invoke("s1", "read", "x")
    h.invoke("s1", "read", "y")
    with pytest.raises(HistoryError, match=r"^line 2: process s1 invoked a new op while"):
        check(h.events)


def test_duplicate_written_value_is_rejected():
    h = History()
    h.write("s1", "x", "a")
    h.write("s2", "x", "a")
    with pytest.raises(HistoryError, match=r"^line 4: value 'a' of key x"):
        check(h.events)


def test_load_history_takes_text_and_dicts():
    h = History()
    h.write("s1", "x", "a")
    text = "\n".join(lines_of(h.events))
    assert load_history(text) == load_history(h.events) == load_history(text.splitlines())
    assert load_history(text)[1].version == (1, 0)


def test_load_history_reads_a_file(tmp_path):
    h = History()
    h.write("s1", "x", "a")
    h.read("s2", "x", "a")
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(lines_of(h.events)) + "\n\n")
    events = load_history(path)
    assert [event.index for event in events] == [0, 1, 2, 3]
    assert check(events).valid and check(str(path)).valid


# --------------------------------------------------------------------------- CLI


def write_history(tmp_path, history: History, name: str = "h.jsonl") -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines_of(history.events)) + "\n")
    return str(path)


def test_cli_exit_code_0_for_a_valid_history(tmp_path, capsys):
    h = History()
    h.write("s1", "x", "a")
    h.read("s1", "x", "a")
    assert main([write_history(tmp_path, h)]) == 0
    out = capsys.readouterr().out
    assert "no anomalies" in out and "2 ops" in out
    assert "not checked (no final reads" in out  # no claim it could not verify


def test_cli_exit_code_1_and_json_for_anomalies(tmp_path, capsys):
    h = History()
    h.write("s1", "x", "a")
    h.read("s1", "x")
    path = write_history(tmp_path, h)
    assert main([path]) == 1
    assert "WriteCOInitRead: 1" in capsys.readouterr().out
    assert main([path, "--json", "--max", "1"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert report["anomalies"][0]["kind"] == WRITE_CO_INIT_READ
    assert report["anomalies"][0]["guarantee"] == READ_YOUR_WRITES
    assert report["counts"]["ops"] == 2


def test_cli_max_limits_explanations(tmp_path, capsys):
    h = History()
    for n in range(5):
        h.read("s1", "x", f"ghost-{n}", version=[n + 1, 0])
    assert main([write_history(tmp_path, h), "--max", "2"]) == 1
    out = capsys.readouterr().out
    assert "ThinAirRead: 5" in out and "... and 3 more" in out
    assert out.count("ghost-") == 2


def test_cli_exit_code_2_for_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"index": 0}\nnot json\n')
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chainreaction check: error: line 1: missing field")
    assert main([str(tmp_path / "missing.jsonl")]) == 2
    assert "chainreaction check: error:" in capsys.readouterr().err


# --------------------------------------------------------------------------- reference model


@dataclass
class Update:
    uid: int
    key: str
    value: str | None
    version: tuple[int, int]
    deps: frozenset[int]


@dataclass
class ModelSession:
    number: int
    dc: int
    incarnation: int = 1
    past: set[int] = field(default_factory=set)
    clock: int = 0
    writes: int = 0

    @property
    def process(self) -> str:
        return f"c{self.number}" + ("" if self.incarnation == 1 else f".{self.incarnation}")


class CausalStore:
    """Reference causal+ store: replicas apply updates in causal order with last-writer-wins,
    sessions only move to replicas that hold their causal past. Records a history."""

    def __init__(self, dcs: int, sessions: int, keys: int) -> None:
        self.keys = [f"k{n}" for n in range(keys)]
        self.updates: list[Update] = []
        self.delivered: list[set[int]] = [set() for _ in range(dcs)]
        self.stores: list[dict[str, Update]] = [{} for _ in range(dcs)]
        self.clocks = [0] * dcs
        self.sessions = [ModelSession(n, n % dcs) for n in range(sessions)]
        self.history = History()

    # replicas

    def apply(self, dc: int, update: Update) -> None:
        self.delivered[dc].add(update.uid)
        current = self.stores[dc].get(update.key)
        if current is None or update.version > current.version:
            self.stores[dc][update.key] = update
        self.clocks[dc] = max(self.clocks[dc], update.version[0])

    def deliverable(self, dc: int) -> list[Update]:
        have = self.delivered[dc]
        return [u for u in self.updates if u.uid not in have and u.deps <= have]

    def deliver(self, dc: int, choice: int) -> None:
        ready = self.deliverable(dc)
        if ready:
            self.apply(dc, ready[choice % len(ready)])

    def deliver_all(self) -> None:
        for dc in range(len(self.stores)):
            for update in self.updates:  # creation order is a causal order
                if update.uid not in self.delivered[dc]:
                    self.apply(dc, update)

    # sessions

    def move(self, session: ModelSession, dc: int) -> None:
        if session.past <= self.delivered[dc]:
            session.dc = dc

    def read(self, session: ModelSession, key: str) -> None:
        found = self.stores[session.dc].get(key)
        if found is None:
            self.history.read(session.process, key, None, version=None, dc=session.dc)
            return
        session.past |= found.deps | {found.uid}
        session.clock = max(session.clock, found.version[0])
        self.history.read(session.process, key, found.value, version=found.version,
                          dc=session.dc)

    def make_update(self, session: ModelSession, key: str, deleting: bool) -> Update:
        dc = session.dc
        clock = max(session.clock, self.clocks[dc]) + 1
        session.writes += 1
        value = None if deleting else f"{session.process}-{session.writes}"
        update = Update(len(self.updates), key, value, (clock, dc), frozenset(session.past))
        return update

    def commit(self, session: ModelSession, update: Update) -> None:
        self.updates.append(update)
        self.apply(session.dc, update)
        session.past.add(update.uid)
        session.clock = update.version[0]

    def write(self, session: ModelSession, key: str, deleting: bool = False) -> Update:
        update = self.make_update(session, key, deleting)
        self.commit(session, update)
        if deleting:
            self.history.delete(session.process, key, version=update.version, dc=session.dc)
        else:
            self.history.write(session.process, key, update.value, version=update.version,
                               dc=session.dc)
        return update

    def indeterminate_write(self, session: ModelSession, key: str, applied: bool,
                            same_process: bool) -> None:
        update = self.make_update(session, key, False)
        if applied:
            self.commit(session, update)
        self.history.write(session.process, key, update.value, version=update.version,
                           dc=session.dc, status="info")
        self.end_session(session, same_process)

    def failed_write(self, session: ModelSession, key: str) -> None:
        update = self.make_update(session, key, False)
        self.history.write(session.process, key, update.value, dc=session.dc, status="fail")

    def indeterminate_read(self, session: ModelSession, key: str, same_process: bool) -> None:
        self.history.read(session.process, key, dc=session.dc, status="info")
        self.end_session(session, same_process)

    @staticmethod
    def end_session(session: ModelSession, same_process: bool) -> None:
        if not same_process:
            session.incarnation += 1

    def final_reads(self) -> None:
        self.deliver_all()
        for dc, store in enumerate(self.stores):
            for key in self.keys:
                found = store.get(key)
                self.history.read(f"final-dc{dc}", key, found.value if found else None,
                                  version=found.version if found else None, dc=dc, final=True)

    # schedules

    def run(self, steps: list[tuple[str, int, int, bool]]) -> None:
        for action, a, b, flag in steps:
            session = self.sessions[a % len(self.sessions)]
            key = self.keys[b % len(self.keys)]
            if action == "read":
                self.read(session, key)
            elif action == "write":
                self.write(session, key)
            elif action == "delete":
                self.write(session, key, deleting=True)
            elif action == "info-write":
                self.indeterminate_write(session, key, applied=flag, same_process=b % 2 == 0)
            elif action == "fail-write":
                self.failed_write(session, key)
            elif action == "info-read":
                self.indeterminate_read(session, key, same_process=flag)
            elif action == "deliver":
                self.deliver(a % len(self.stores), b)
            elif action == "move":
                self.move(session, b % len(self.stores))


ACTIONS = ["read"] * 6 + ["write"] * 4 + ["deliver"] * 5 + ["move"] * 2 + [
    "delete", "info-write", "fail-write", "info-read"]
steps = st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(0, 7), st.integers(0, 7),
                           st.booleans()), max_size=60)
shapes = st.tuples(st.integers(2, 3), st.integers(2, 4), st.integers(2, 3))


def generated(shape: tuple[int, int, int], schedule) -> CausalStore:
    store = CausalStore(*shape)
    store.run(schedule)
    return store


@settings(max_examples=150, deadline=None)
@given(shapes, steps)
def test_reference_model_histories_pass(shape, schedule):
    store = generated(shape, schedule)
    store.final_reads()
    assert_valid(store.history)


@settings(max_examples=60, deadline=None)
@given(shapes, steps, st.integers(0, 3))
def test_mutation_initial_read_after_own_write_is_caught(shape, schedule, who):
    store = generated(shape, schedule)
    session = store.sessions[who % len(store.sessions)]
    store.write(session, "k0")
    bad = store.history.read(session.process, "k0", None, version=None, dc=session.dc)
    store.final_reads()
    report = check(store.history.events)
    found = [a for a in report.anomalies if a.kind == WRITE_CO_INIT_READ]
    assert found and found[0].guarantee == READ_YOUR_WRITES and found[0].ops[0] == bad


@settings(max_examples=60, deadline=None)
@given(shapes, steps, st.integers(0, 3))
def test_mutation_read_of_overwritten_own_write_is_caught(shape, schedule, who):
    store = generated(shape, schedule)
    session = store.sessions[who % len(store.sessions)]
    first = store.write(session, "k1")
    store.write(session, "k1")
    bad = store.history.read(session.process, "k1", first.value, version=first.version,
                             dc=session.dc)
    store.final_reads()
    report = check(store.history.events)
    assert any(a.kind == WRITE_CO_READ and a.ops[0] == bad for a in report.anomalies), \
        format_report(report)


@settings(max_examples=60, deadline=None)
@given(shapes, steps, st.integers(0, 3))
def test_mutation_read_of_never_written_value_is_caught(shape, schedule, who):
    store = generated(shape, schedule)
    session = store.sessions[who % len(store.sessions)]
    bad = store.history.read(session.process, "k0", "never-written", version=[1, 0])
    store.final_reads()
    report = check(store.history.events)
    assert [a.ops for a in report.anomalies] == [(bad,)]
    assert report.anomalies[0].kind == THIN_AIR_READ


# --------------------------------------------------------------------------- brute force


@dataclass
class Op:
    index: int
    session: str
    key: str
    write: bool
    version: list[int] | None = None
    reads: Op | None = None  # for reads: the write returned, None for the initial state
    past: int = 0  # bit mask of the ops CO-before or equal to this one
    bit: int = 0  # this op's own bit
    value: str | None = None


def random_history(rng: random.Random, versions: str) -> tuple[list[Op], History]:
    """Ops in history order; a read returns any earlier write of its key (or the initial
    state), so so ∪ rf follows history order and causal order is acyclic."""
    h, ops = History(), []
    sessions = [f"s{n}" for n in range(rng.randint(2, 4))]
    keys = ["x", "y", "z"][:rng.randint(1, 3)]
    last: dict[str, Op] = {}
    for n in range(rng.randint(1, 30)):
        session, key = rng.choice(sessions), rng.choice(keys)
        if rng.random() < 0.45:
            version = {"increasing": [n + 1, 0], "random": [rng.randint(1, 6), 0],
                       "some missing": None if rng.random() < 0.3 else [n + 1, 0]}[versions]
            op = Op(0, session, key, True, version, value=f"{session}-{n}")
            op.index = h.write(session, key, op.value, version=version)
        else:
            earlier = [o for o in ops if o.write and o.key == key]
            source = rng.choice(earlier + [None]) if earlier else None
            op = Op(0, session, key, False, reads=source)
            op.index = h.read(session, key, source.value if source else None,
                              version=source.version if source else None)
        op.bit = 1 << len(ops)
        op.past = op.bit | (last[session].past if session in last else 0) | (
            op.reads.past if op.reads else 0)
        last[session] = op
        ops.append(op)
    return ops, h


def before(a: Op, b: Op) -> bool:
    return a is not b and bool(b.past & a.bit)


def brute_force(ops: list[Op]) -> dict:
    """The bad patterns straight from their definitions, with explicit causal pasts."""
    writes = [op for op in ops if op.write]
    reads = [op for op in ops if not op.write]
    init = {r.index for r in reads if r.reads is None
            and any(w.key == r.key and before(w, r) for w in writes)}
    stale = {r.index for r in reads if r.reads is not None and any(
        w.key == r.key and w is not r.reads and before(r.reads, w) and before(w, r)
        for w in writes)}
    lww = any(a.key == b.key and a.version and b.version and before(a, b)
              and a.version >= b.version for a in writes for b in writes) or any(
        r.index not in stale and r.reads.version and w.key == r.key and w.version
        and before(w, r) and w.version > r.reads.version
        for r in reads if r.reads is not None for w in writes)
    edges = {id(a): [b for b in ops if before(a, b)] for a in ops}
    for r in reads:
        if r.reads is not None:
            for w in writes:
                if (w.key == r.key and w is not r.reads and before(w, r)
                        and not before(r.reads, w)):
                    edges[id(w)].append(r.reads)
    return {"init": init, "stale": stale, "lww": lww, "cf": _has_cycle(ops, edges)}


def _has_cycle(ops: list[Op], edges: dict[int, list[Op]]) -> bool:
    state: dict[int, int] = {}

    def visit(op: Op) -> bool:
        state[id(op)] = 1
        for nxt in edges[id(op)]:
            if state.get(id(nxt)) == 1 or (id(nxt) not in state and visit(nxt)):
                return True
        state[id(op)] = 2
        return False

    return any(id(op) not in state and visit(op) for op in ops)


@settings(max_examples=400, deadline=None)
@given(st.randoms(use_true_random=False),
       st.sampled_from(["increasing", "random", "some missing"]))
def test_checker_agrees_with_brute_force(rng, versions):
    ops, h = random_history(rng, versions)
    expected = brute_force(ops)
    report = check(h.events)
    flagged = {kind: {a.ops[0] for a in report.anomalies if a.kind == kind}
               for kind in (WRITE_CO_INIT_READ, WRITE_CO_READ)}
    summary = format_report(report)
    assert flagged[WRITE_CO_INIT_READ] == expected["init"], summary
    assert flagged[WRITE_CO_READ] == expected["stale"], summary
    assert (LWW_NOT_ARBITRATION in kinds(report)) == expected["lww"], summary
    assert (CYCLIC_CF in kinds(report)) == expected["cf"], summary
    assert kinds(report) <= {WRITE_CO_INIT_READ, WRITE_CO_READ, LWW_NOT_ARBITRATION, CYCLIC_CF}


# --------------------------------------------------------------------------- performance


def prefix_log_history(ops: int, sessions: int = 30, keys: int = 50, dcs: int = 3,
                       seed: int = 7) -> list[dict]:
    """A valid history, fast: one global log of writes; each DC has applied a prefix of it,
    a write first brings its DC up to date, sessions only use DCs that hold what they saw.
    Prefix states are causally consistent and log order is LWW order."""
    rng = random.Random(seed)
    h = History()
    log: list[tuple[str, str | None, list[int]]] = []
    applied = [0] * dcs
    stores: list[dict] = [{} for _ in range(dcs)]
    names = [f"s{n}" for n in range(sessions)]
    where = [n % dcs for n in range(sessions)]
    seen = [0] * sessions

    def catch_up(dc: int, upto: int) -> None:
        while applied[dc] < upto:
            key, value, version = log[applied[dc]]
            stores[dc][key] = (value, version, applied[dc])
            applied[dc] += 1

    for step in range(ops):
        s = rng.randrange(sessions)
        key = f"k{rng.randrange(keys)}"
        if rng.random() < 0.3:
            dc = rng.randrange(dcs)
            catch_up(dc, min(len(log), applied[dc] + rng.randrange(1, 40)))
        if rng.random() < 0.05:
            dc = rng.randrange(dcs)
            if applied[dc] >= seen[s]:
                where[s] = dc
        dc, roll = where[s], rng.random()
        if roll < 0.5:
            found = stores[dc].get(key)
            if found is None:
                h.read(names[s], key, None, version=None, dc=dc)
            else:
                value, version, position = found
                seen[s] = max(seen[s], position + 1)
                h.read(names[s], key, value, version=version, dc=dc)
            continue
        catch_up(dc, len(log))
        version = [len(log) + 1, dc]
        value = f"{names[s]}-{step}"
        if roll < 0.998:
            deleting = roll > 0.95
            log.append((key, None if deleting else value, version))
            if deleting:
                h.delete(names[s], key, version=version, dc=dc)
            else:
                h.write(names[s], key, value, version=version, dc=dc)
        elif roll < 0.999:
            h.write(names[s], key, value, dc=dc, status="fail")
            continue
        else:  # timed out, applied or not; the client goes on as a new process
            if roll < 0.9995:
                log.append((key, value, version))
            h.write(names[s], key, value, version=version, dc=dc, status="info")
            names[s] += "'"
        catch_up(dc, len(log))
        seen[s] = len(log)
    for dc in range(dcs):
        catch_up(dc, len(log))
        for n in range(keys):
            value, version, _ = stores[dc].get(f"k{n}", (None, None, None))
            h.read(f"final-dc{dc}", f"k{n}", value, version=version, dc=dc, final=True)
    return h.events


def test_one_stale_read_in_a_big_history_is_reported_once():
    events = prefix_log_history(5000, sessions=8, keys=5)
    assert_valid(events)
    writes = [e for e in events if e["type"] == "ok" and e["f"] == "write" and e["key"] == "k1"]
    h = History()
    h.events, h.versions = events, {("k1", w["value"]): w["version"] for w in writes}
    h.read("late", "k1", writes[-1]["value"])
    stale = h.read("late", "k1", writes[0]["value"])
    report = check(h.events)
    assert [a.ops[0] for a in report.anomalies if a.kind == WRITE_CO_READ] == [stale]
    assert report.kind_counts().get(CYCLIC_CF, 0) <= 1
    assert kinds(report) <= {WRITE_CO_READ, CYCLIC_CF}


def test_prefix_log_generator_makes_stale_but_valid_reads():
    events = prefix_log_history(3000, sessions=6, keys=5)
    report = check(events)
    assert report.valid, format_report(report)
    assert report.counts["info_writes"] > 0


def test_100k_op_history_is_checked_quickly():
    events = prefix_log_history(100_000)
    started = time.perf_counter()
    report = check(events)
    took = time.perf_counter() - started
    print(f"\nchecked {report.counts['ops']} ops in {report.counts['sessions']} sessions "
          f"in {took:.2f} s")
    assert report.valid, format_report(report, max_per_kind=3)
    assert report.counts["ops"] > 99_000
