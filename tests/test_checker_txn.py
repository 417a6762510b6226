"""The checker on GET-TRANSACTIONs: hand-made histories with each anomaly a transaction can
show (a fractured snapshot, a session guarantee broken by a transaction or across a
transaction and a get) and the ones it must accept."""

from __future__ import annotations

import pytest

from chainreaction.checker import (
    CAUSAL, MONOTONIC_READS, READ_YOUR_WRITES, SNAPSHOT, WRITE_CO_INIT_READ, WRITE_CO_READ,
    WRITES_FOLLOW_READS, HistoryError, check,
)

from .test_checker import History, assert_valid, only


def txn(h: History, process: str, returned: dict, *, dc: int = 0, status: str = "ok") -> int:
    """A transaction over ``returned``'s keys that returned those values (None: absent)."""
    keys = list(returned)
    h.emit(process=process, dc=dc, type="invoke", f="txn", keys=keys)
    if status != "ok":
        return h.emit(process=process, dc=dc, type=status, f="txn", keys=keys,
                      error="unavailable")
    reads = [{"key": k, "value": v,
              "version": None if v is None else list(h.versions[(k, v)])}
             for k, v in returned.items()]
    return h.emit(process=process, dc=dc, type="ok", f="txn", keys=keys, reads=reads)


def x1_y1_x2_y2(writer_of_y: str = "s1") -> History:
    """The paper's example: x1 -> y1 -> x2 -> y2 in causal order."""
    h = History()
    h.write("s1", "x", "x1")
    h.write("s1", "y", "y1")
    h.write("s1", "x", "x2")
    if writer_of_y != "s1":
        h.read(writer_of_y, "x", "x2", dc=1)
    h.write(writer_of_y, "y", "y2", dc=0 if writer_of_y == "s1" else 1)
    return h


@pytest.mark.parametrize("writer_of_y", ["s1", "s2"])
def test_a_transaction_returning_x1_with_y2_is_not_a_snapshot(writer_of_y):
    """y2's causal past holds x2 (written by the same session, or read by the session of
    another DC that wrote y2): x1 beside y2 is fractured."""
    h = x1_y1_x2_y2(writer_of_y)
    index = txn(h, "reader", {"x": "x1", "y": "y2"})
    anomaly = only(check(h.events), WRITE_CO_READ)
    assert anomaly.guarantee == SNAPSHOT
    assert index in anomaly.ops
    assert "in one transaction with" in anomaly.explanation
    assert "transaction snapshot violated" in anomaly.explanation


@pytest.mark.parametrize("returned", [
    {"x": "x1", "y": "y1"}, {"x": "x2", "y": "y1"}, {"x": "x2", "y": "y2"},
    {"x": "x1", "y": None}, {"x": None, "y": None}])
def test_every_causal_cut_of_the_example_is_a_snapshot(returned):
    """x2 with y1 is fine: y2 is not in x2's past. x1 alone is fine: y1 came after it."""
    h = x1_y1_x2_y2()
    txn(h, "reader", returned)
    assert_valid(h)


def test_a_transaction_that_misses_its_own_write_breaks_read_your_writes():
    h = History()
    h.write("s1", "x", "x1")
    h.write("s1", "x", "x2")
    txn(h, "s1", {"x": "x1", "z": None})
    anomaly = only(check(h.events), WRITE_CO_READ)  # once, not again as a fractured read
    assert anomaly.guarantee == READ_YOUR_WRITES


def test_a_get_after_a_transaction_must_not_go_back():
    h = History()
    h.write("s2", "x", "x1")
    h.write("s2", "x", "x2")
    txn(h, "s1", {"x": "x2", "y": None})
    stale = h.read("s1", "x", "x1")
    anomaly = only(check(h.events), WRITE_CO_READ)
    assert anomaly.guarantee == MONOTONIC_READS and anomaly.ops[0] == stale


def test_a_transaction_after_a_get_must_not_go_back():
    h = History()
    h.write("s2", "y", "y1")
    h.read("s1", "y", "y1")
    txn(h, "s1", {"x": None, "y": None})
    anomaly = only(check(h.events), WRITE_CO_INIT_READ)
    assert anomaly.guarantee == MONOTONIC_READS


def test_a_write_after_a_transaction_depends_on_every_value_it_returned():
    h = History()
    h.write("s2", "x", "x1")
    h.write("s2", "x", "x2")
    txn(h, "s1", {"x": "x2", "y": None})
    h.write("s1", "y", "y1")
    h.read("s3", "y", "y1")
    h.read("s3", "x", "x1")
    anomaly = only(check(h.events), WRITE_CO_READ)
    assert anomaly.guarantee in (WRITES_FOLLOW_READS, CAUSAL)


def test_a_failed_transaction_changes_nothing_and_an_unknown_one_ends_the_session():
    h = History()
    h.write("s2", "x", "x1")
    h.write("s2", "x", "x2")
    txn(h, "s1", {"x": None}, status="fail")
    h.read("s1", "x", "x2")
    txn(h, "s1", {"x": None}, status="info")
    h.read("s1", "x", "x1")  # a new session: it has seen nothing
    assert_valid(h)


@pytest.mark.parametrize("bad", [
    {"keys": ["x", "x"]},
    {"keys": []},
    {"keys": "x"},
    {"reads": [{"key": "x", "value": None}]},  # y missing
    {"reads": [{"key": "x", "value": 3}, {"key": "y", "value": None}]},
])
def test_a_malformed_transaction_line_is_refused_with_its_line(bad):
    keys = bad.get("keys", ["x", "y"])
    invoke = {"index": 0, "process": "p", "type": "invoke", "f": "txn", "keys": keys}
    done = {"index": 1, "process": "p", "type": "ok", "f": "txn", "keys": keys,
            "reads": bad.get("reads", [{"key": "x", "value": None},
                                       {"key": "y", "value": None}])}
    with pytest.raises(HistoryError, match="line [12]: "):
        check([invoke, done])
