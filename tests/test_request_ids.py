"""The request ids a node applied (a retried put applies once): bounded, persisted, and
handed on with a range copy."""

from __future__ import annotations

from chainreaction.request_ids import RequestIds
from chainreaction.ring import RangeSet, hash_point
from chainreaction.storage import MemoryStore
from chainreaction.versions import Version


def test_the_oldest_are_forgotten_in_memory_and_in_the_store():
    store = MemoryStore()
    rids = RequestIds(store, limit=2)
    for i in range(3):
        rids.remember(b"r%d" % i, f"k{i}", Version(i + 1, 0))
    assert b"r0" not in rids and rids.get(b"r2") == ("k2", Version(3, 0))
    assert sorted(rid for rid, _, _ in store.rids()) == [b"r1", b"r2"]


def test_a_restarted_node_loads_what_the_store_kept():
    store = MemoryStore()
    RequestIds(store, limit=10).remember(b"r", "k", Version(7, 1))
    again = RequestIds(store, limit=10)
    again.load()
    assert again.get(b"r") == ("k", Version(7, 1))


def test_a_copy_takes_the_ids_of_its_ranges_only():
    rids = RequestIds(MemoryStore(), limit=10)
    rids.remember(b"a", "a", Version(1, 0))
    rids.remember(b"b", "b", Version(2, 0))
    point = hash_point("a")
    assert rids.within(RangeSet([(point - 1, point)])) == [(b"a", "a", Version(1, 0))]
