"""Storage: MemoryStore and RocksStore are interchangeable, and RocksStore keeps every
record it stored across a close/reopen and across ``kill -9`` of the writing process."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainreaction.rocks_store import RocksStore
from chainreaction.storage import MemoryStore, Record
from chainreaction.versions import CLOCK_MAX, Version

REPO = Path(__file__).resolve().parents[1]

versions = st.builds(Version, st.integers(0, CLOCK_MAX), st.integers(0, 2**16 - 1))
records = st.builds(
    Record, versions, st.none() | st.binary(max_size=100), st.booleans(),
    st.binary(min_size=1, max_size=64),
)
keys = st.text(min_size=1, max_size=20)


def rec(clock, value=b"v", stable=False, rid=b"r", dc=0):
    return Record(Version(clock, dc), value, stable, rid)


@pytest.fixture(params=["memory", "rocks"])
def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else RocksStore(str(tmp_path / "db"))
    yield s
    s.close()


# -- Record ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(records)
def test_record_encode_decode_round_trip(record):
    data = record.encode()
    assert isinstance(data, bytes)
    assert Record.decode(data) == record


def test_record_tombstone_and_extremes_round_trip():
    for record in (rec(0, None), rec(CLOCK_MAX, b"", True, b"\x00" * 64, dc=2**16 - 1)):
        assert Record.decode(record.encode()) == record


def test_a_record_carries_what_it_depends_on_until_logged_and_old_forms_still_load():
    import cbor2

    from chainreaction.versions import VClock

    carrying = Record(Version(9, 1), b"v", True, b"r", 0, 0, VClock({1: 9}),
                      (("a", 3), ("b", 7)), 4)
    assert Record.decode(carrying.encode()) == carrying
    assert carrying.logged(12, 99) == Record(Version(9, 1), b"v", True, b"r", 12, 99,
                                             VClock({1: 9}))
    geo = Record(Version(9, 1), b"v", True, b"r", 5, 6, VClock({1: 9}))
    assert len(cbor2.loads(geo.encode())) == 8  # nothing carried: the form before
    assert Record.decode(cbor2.dumps([9, 1, True, b"r", b"v"])) == rec(9, stable=True, dc=1)


def test_a_record_applied_later_than_stamped_keeps_when_and_old_forms_still_load():
    import cbor2

    remote = Record(Version(9, 1), b"v", False, b"r", applied_at=50)
    assert Record.decode(remote.encode()) == remote and remote.applied == 50
    assert len(cbor2.loads(rec(9).encode())) == 8  # a local write: its clock, as before
    assert rec(9).applied == 9
    assert remote.logged(3, 4).applied == 50


def test_old_versions_are_kept_per_key_newest_first_and_forgotten_one_by_one(store):
    for clock in (5, 9, 7):
        store.put_old("k", rec(clock, b"%d" % clock))
    store.put_old("k2", rec(8))
    store.put_old("k\x00", rec(6))  # a key that begins like another
    assert [r.version.clock for r in store.old_versions("k")] == [9, 7, 5]
    store.forget_old("k", 7)
    assert [r.value for r in store.old_versions("k")] == [b"9", b"5"]
    assert [r.version.clock for r in store.old_versions("k2")] == [8]
    assert [r.version.clock for r in store.old_versions("k\x00")] == [6]
    assert store.old_versions("nothing") == []
    assert store.get("k") is None  # apart from the records


def test_old_versions_inside_atomic_see_its_writes_and_land_with_it(store):
    """A node handles each message inside ``atomic()``: a Stable for a version replaced
    in the same pass lists the key's old versions there (the durable store raised, 1000s
    of times per jepsen run, while the in-memory one hid it)."""
    store.put_old("k", rec(5))
    store.put_old("k", rec(6))
    with store.atomic():
        store.put_old("k", rec(9, b"new"))
        store.forget_old("k", 5)
        store.put_old("k2", rec(7))
        assert [r.version.clock for r in store.old_versions("k")] == [9, 6]
        assert [r.value for r in store.old_versions("k")][0] == b"new"
        assert [r.version.clock for r in store.old_versions("k2")] == [7]
    assert [r.version.clock for r in store.old_versions("k")] == [9, 6]
    assert [r.version.clock for r in store.old_versions("k2")] == [7]


def test_keeping_and_forgetting_old_versions_asks_for_no_sync(tmp_path):
    """Group commit holds every message until the writes made are synced: old versions,
    which a restart drops anyway, must not cost a sync of their own (they did: a sync per
    collection tick cost a 1-DC cluster ~12% of its throughput)."""
    store = RocksStore(str(tmp_path / "db"), durability="group")
    store.put("k", rec(9))
    before = store.writes
    store.put_old("k", rec(5))
    store.forget_old("k", 5)
    assert store.writes == before and store.old_versions("k") == []
    with store.atomic():  # beside a record, with it: one write either way
        store.put("k", rec(10))
        store.put_old("k", rec(9))
    assert store.writes == before + 1 and [r.version.clock for r in store.old_versions("k")] == [9]
    store.close()


def test_old_versions_do_not_outlive_the_process(tmp_path):
    store = RocksStore(str(tmp_path / "db"))
    store.put("k", rec(9))
    store.put_old("k", rec(5))
    store.close()
    again = RocksStore(str(tmp_path / "db"))
    assert again.get("k") == rec(9) and again.old_versions("k") == []
    again.close()


def test_replaced_unlogged_writes_are_kept_apart_from_the_records(store):
    old, older = rec(5, b"five"), rec(3, b"three")
    store.put("k", rec(9))
    store.put_unlogged("k", old)
    store.put_unlogged("k", older)
    store.put_unlogged("j", old)
    assert sorted((k, r.version) for k, r in store.unlogged()) == [
        ("j", old.version), ("k", older.version), ("k", old.version)]
    store.forget_unlogged("k", old.version)
    store.forget_unlogged("k", Version(77))  # (not there: nothing happens)
    assert sorted((k, r) for k, r in store.unlogged()) == [("j", old), ("k", older)]
    assert dict(store.items()) == {"k": rec(9)} and len(store) == 1


# -- the Store interface, same behaviour for both ----------------------------------------------


def test_empty_store(store):
    assert store.get("k") is None
    assert len(store) == 0
    assert list(store.items()) == []


def test_put_then_get(store):
    store.put("k", rec(1))
    assert store.get("k") == rec(1)
    assert store.get("other") is None
    assert len(store) == 1


def test_put_overwrites(store):
    store.put("k", rec(1, b"old"))
    store.put("k", rec(2, None, stable=True, rid=b"r2"))
    assert store.get("k") == rec(2, None, stable=True, rid=b"r2")
    assert len(store) == 1


def test_items_and_len(store):
    wanted = {f"key-{i}": rec(i + 1, b"v%d" % i, i % 2 == 0, b"r%d" % i) for i in range(50)}
    wanted["\u00e9t\u00e9 \U0001f600"] = rec(99, None)
    for k, r in wanted.items():
        store.put(k, r)
    assert len(store) == len(wanted)
    items = list(store.items())
    assert len(items) == len(wanted)
    assert dict(items) == wanted


def test_items_can_be_consumed_while_putting(store):
    # Nodes iterate a snapshot of items (state transfer) while new puts arrive.
    for i in range(5):
        store.put(f"k{i}", rec(i + 1))
    seen = {}
    for k, r in store.items():
        seen[k] = r
        store.put(k, rec(r.version.clock + 100))
    assert set(seen) == {f"k{i}" for i in range(5)}
    assert all(store.get(k).version.clock > 100 for k in seen)


ops = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "\u00fc", "long" * 10]),
                         st.none() | records),  # None: delete the key
               max_size=30)


@pytest.mark.parametrize("kind", ["memory", "rocks"])
@settings(max_examples=10, deadline=None)
@given(ops=ops)
def test_store_behaves_like_a_dict(kind, ops):
    with tempfile.TemporaryDirectory() as tmp:
        s = MemoryStore() if kind == "memory" else RocksStore(os.path.join(tmp, "db"))
        try:
            model = {}
            for k, r in ops:
                if r is None:
                    s.delete(k)
                    model.pop(k, None)
                else:
                    s.put(k, r)
                    model[k] = r
                assert s.get(k) == r
            assert len(s) == len(model)
            assert dict(s.items()) == model
            for k in model:
                assert s.get(k) == model[k]
        finally:
            s.close()


def test_writes_inside_atomic_land_together_and_reads_see_them_meanwhile(store):
    store.put("a", rec(1))
    with store.atomic():
        store.put("a", rec(2))
        store.put_rid(b"r2", "a", Version(2, 0))
        store.put_meta("floor", b"7")
        store.delete("gone")
        with store.atomic():  # nested: part of the outer one
            store.put("b", rec(3))
        # reads see them; a scan would not, so it is refused
        assert store.get("a") == rec(2) and store.get("b") == rec(3)
        assert store.get_meta("floor") == b"7"
        for scan in (store.items, store.rids, store.unlogged):
            with pytest.raises(RuntimeError):
                next(iter(scan()), None)
    assert dict(store.items()) == {"a": rec(2), "b": rec(3)}
    assert list(store.rids()) == [(b"r2", "a", Version(2, 0))]


class Crash(Exception):
    pass


def test_an_atomic_write_cut_short_leaves_nothing_of_it(tmp_path):
    """What a crash inside ``atomic()`` leaves, in both stores: none of its writes. The
    durable one after a reopen too (one RocksDB WriteBatch: the WAL has all or none)."""
    for store in (MemoryStore(), RocksStore(str(tmp_path / "db"))):
        store.put("a", rec(1))
        with pytest.raises(Crash):
            with store.atomic():
                store.put("a", rec(2))
                store.put_rid(b"r2", "a", Version(2, 0))
                store.put_unlogged("a", rec(1))
                raise Crash
        assert store.get("a") == rec(1) and list(store.rids()) == []
        assert list(store.unlogged()) == []
        store.close()
    reopened = RocksStore(str(tmp_path / "db"))
    try:
        assert dict(reopened.items()) == {"a": rec(1)} and list(reopened.rids()) == []
        with reopened.atomic():
            reopened.put("a", rec(2))
            reopened.put_rid(b"r2", "a", Version(2, 0))
        assert reopened.writes == 1  # one batch: one write for the group commit to sync
    finally:
        reopened.close()
    again = RocksStore(str(tmp_path / "db"))
    try:
        assert again.get("a") == rec(2) and list(again.rids()) == [(b"r2", "a", Version(2, 0))]
    finally:
        again.close()


def test_memory_store_snapshot_is_a_copy():
    s = MemoryStore({"a": rec(1)})
    snap = s.snapshot()
    s.put("b", rec(2))
    assert snap == {"a": rec(1)}
    assert dict(MemoryStore(snap).items()) == {"a": rec(1)}


# -- durability -----------------------------------------------------------------------------


def test_rocks_store_keeps_records_across_close_and_reopen(tmp_path):
    path = str(tmp_path / "db")
    wanted = {f"k{i}": rec(i + 1, None if i % 7 == 0 else b"v%d" % i, i % 3 == 0)
              for i in range(100)}
    s = RocksStore(path)
    for k, r in wanted.items():
        s.put(k, r)
    s.close()

    s = RocksStore(path)
    try:
        assert len(s) == len(wanted)
        assert dict(s.items()) == wanted
        s.put("k1", rec(500))  # and it is writable again
        s.delete("k2")
        s.put_meta("gc_floor", b"x")
    finally:
        s.close()
    s = RocksStore(path)
    try:
        assert s.get("k1") == rec(500)
        assert s.get("k2") is None and len(s) == len(wanted) - 1
        assert s.get_meta("gc_floor") == b"x" and s.get_meta("other") is None
    finally:
        s.close()


WRITER = textwrap.dedent(
    """
    import sys
    from chainreaction.rocks_store import RocksStore
    from chainreaction.storage import Record
    from chainreaction.versions import Version

    path, n = sys.argv[1], int(sys.argv[2])
    store = RocksStore(path)
    for i in range(n):
        store.put(f"k{i}", Record(Version(i + 1, 1), b"value-%d" % i, i % 2 == 0, b"r%d" % i))
    print("DONE", flush=True)
    sys.stdin.read()  # block until killed; never close the store
    """
)


@pytest.mark.e2e
def test_rocks_store_keeps_every_record_after_kill_9_of_the_writer(tmp_path):
    path = str(tmp_path / "db")
    n = 2000
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, path, str(n)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
    )
    try:
        # Bounded wait for the DONE line, so a wedged writer fails the test, not the run.
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "writer printed nothing within 60 s"
        line = proc.stdout.readline()
        assert line == b"DONE\n", (line, proc.stderr.read() if proc.poll() is not None else b"")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            pipe.close()

    s = RocksStore(path)
    try:
        assert len(s) == n
        for i in range(n):
            assert s.get(f"k{i}") == Record(Version(i + 1, 1), b"value-%d" % i, i % 2 == 0,
                                            b"r%d" % i)
    finally:
        s.close()
